"""Experience replay on the adapter model: a bounded memory of earlier tasks' training examples,
a few of which are mixed into every training batch (each with its own task id and head).

The memory holds at most ``memory_size`` examples, shared equally among the tasks learned so far:
after each task, the new task gets a random sample of its training set and every task is cut
down to the same quota.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ctr_plugin.continual.methods.base import ContinualMethod, Step
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option
from ctr_plugin.search_space import Choice

Example = tuple[str, str | None, int]  # text, second text (or None), label


@dataclass
class Replay(ContinualMethod):
    name = "replay"
    search_space = {"memory_size": Choice((100, 200, 400)), "replay_batch_size": Choice((4, 8, 16))}
    plugin_type = "adapter"
    resumable = False  # the memory is not in the checkpoint
    needs_task_data = True  # the memory is drawn from each task's training examples

    memory_size: int = option(200, "most examples the memory holds, over all earlier tasks", Range("int", 0, None))
    replay_batch_size: int = option(8, "memory examples mixed into every training batch", Range("int", 1, None))
    seed: int = option(0, "seed of the memory's sampling", Range("int", 0, 2**32 - 1))

    def __post_init__(self):
        self.memory: dict[int, list[Example]] = {}
        self.rng = random.Random(self.seed)

    def extra_examples(self, model: ContinualModel, step: Step) -> Split | None:
        return sample_memory(self.memory, self.rng, self.replay_batch_size)

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        remember(self.memory, self.rng, task, data.train, self.memory_size)


def remember(memory: dict[int, list[Example]], rng: random.Random, task: int, train: Split, size: int) -> None:
    """Add task ``task``'s share of ``size`` examples, a sample of ``train`` drawn with ``rng``, to
    ``memory``, and cut every task down to the same share."""
    quota = size // (len(memory) + 1)
    chosen = rng.sample(range(len(train)), min(quota, len(train)))
    memory[task] = [(train.texts[i], train.pairs[i] if train.pairs else None, train.labels[i]) for i in chosen]
    for t in memory:
        del memory[t][quota:]


def sample_memory(memory: dict[int, list[Example]], rng: random.Random, n: int) -> Split | None:
    """``n`` examples of ``memory`` (task id -> examples) drawn without replacement with ``rng``
    (all of them if fewer), with their task ids; None while the memory is empty."""
    pool = [(t, ex) for t, examples in memory.items() for ex in examples]
    if not pool:
        return None
    drawn = rng.sample(pool, min(n, len(pool)))
    pairs = [ex[1] for _, ex in drawn]
    return Split(
        texts=[ex[0] for _, ex in drawn],
        labels=[ex[2] for _, ex in drawn],
        pairs=None if all(p is None for p in pairs) else pairs,
        task_ids=[t for t, _ in drawn],
    )
