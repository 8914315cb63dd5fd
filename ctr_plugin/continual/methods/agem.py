"""A-GEM (Chaudhry, Ranzato, Rohrbach and Elhoseiny, "Efficient Lifelong Learning with A-GEM",
ICLR 2019) on the adapter model: an episodic memory of earlier tasks' training examples, and a
gradient step that never increases the memory's loss to first order.

At every step, with g the gradient of the current batch's loss and g_ref the gradient of the
loss on a batch drawn from the memory, the paper's projection:

    g <- g - (g . g_ref / g_ref . g_ref) g_ref     if g . g_ref < 0,    else g unchanged

The vectors run over the parameters the current loss trains (those with a gradient: the shared
adapters and LayerNorms, and the current task's head, or a shared head). In Task-IL each memory
example is scored by its own task's head (the memory keeps its task id), so g_ref reaches the
earlier heads too; the current loss does not, so those heads keep no gradient and stay as they
are, and the projected step satisfies the paper's constraint g . g_ref >= 0 with them held.

The memory holds at most ``memory_size`` examples, shared equally among the tasks learned so far:
after each task, a seeded random sample of its training set joins it and every task is cut down
to the same quota (the paper keeps a fixed number per task; a total budget keeps the method
comparable with ``replay`` at equal memory).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ctr_plugin.continual.methods.base import ContinualMethod, Step
from ctr_plugin.continual.methods.replay import sample_memory
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option
from ctr_plugin.search_space import Choice

Example = tuple[str, str | None, int]  # text, second text (or None), label


class EpisodicMemory:
    """At most ``size`` training examples of the tasks learned so far, an equal share per task,
    each task's share a seeded random sample of its training set."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.rng = random.Random(seed)
        self.examples: dict[int, list[Example]] = {}

    def __len__(self) -> int:
        return sum(len(examples) for examples in self.examples.values())

    def add_task(self, task: int, train: Split) -> None:
        """Sample task ``task``'s share of ``train`` and cut every task down to the new quota."""
        quota = self.size // (len(self.examples) + 1)
        chosen = self.rng.sample(range(len(train)), min(quota, len(train)))
        self.examples[task] = [
            (train.texts[i], train.pairs[i] if train.pairs else None, train.labels[i]) for i in chosen
        ]
        for examples in self.examples.values():
            del examples[quota:]

    def sample(self, n: int) -> Split | None:
        """``n`` examples drawn without replacement (all of them if fewer), with their task ids;
        None while the memory is empty (replay's draw)."""
        return sample_memory(self.examples, self.rng, n)


def projected(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's projection of the flat gradient ``g`` against the flat reference gradient
    ``g_ref`` (same shape): ``g`` itself where ``g . g_ref >= 0`` (no conflict) or ``g_ref`` is 0,
    else ``g - (g . g_ref / g_ref . g_ref) g_ref``, which is orthogonal to ``g_ref``."""
    dot = torch.dot(g, g_ref)
    norm = torch.dot(g_ref, g_ref)
    if dot >= 0 or norm == 0:
        return g
    return g - (dot / norm) * g_ref


@dataclass
class AGEM(ContinualMethod):
    name = "agem"
    plugin_type = "adapter"
    search_space = {"memory_size": Choice((100, 200, 400)), "memory_batch_size": Choice((8, 16, 32))}
    resumable = False  # the memory is not in the checkpoint
    needs_task_data = True  # the memory is drawn from each task's training examples
    # Domain-/Class-IL: one shared head, the memory's examples scored by it with class-space labels
    when_task_unknown = "shared_head"
    scenarios = ("task", "domain", "class")

    memory_size: int = option(200, "most examples the memory holds, over all earlier tasks", Range("int", 0, None))
    memory_batch_size: int = option(
        16, "memory examples whose loss gives the reference gradient g_ref at each step", Range("int", 1, None)
    )
    seed: int = option(0, "seed of the memory's sampling", Range("int", 0, 2**32 - 1))

    def __post_init__(self):
        self.memory = EpisodicMemory(self.memory_size, self.seed)
        self.projected_steps = 0  # steps whose gradient conflicted with the memory's and was projected
        self.reference_steps = 0  # steps that had a reference gradient (every step after the first task)

    def before_step(self, model: ContinualModel, step: Step) -> None:
        drawn = self.memory.sample(self.memory_batch_size)
        if drawn is None:  # the first task: nothing to protect
            return
        trained = [p for _, p in model.trainable_parameters() if p.grad is not None]
        g = torch.cat([p.grad.reshape(-1) for p in trained])
        g_ref = torch.cat([r.reshape(-1) for r in self.reference_gradient(model, drawn, trained, step.task)])
        new = projected(g, g_ref)
        self.reference_steps += 1
        if new is g:  # no conflict: the step stands as it is
            return
        self.projected_steps += 1
        for p, part in zip(trained, new.split([p.numel() for p in trained])):
            p.grad.copy_(part.view_as(p.grad))

    def reference_gradient(
        self, model: ContinualModel, drawn: Split, params: list[torch.nn.Parameter], task: int
    ) -> list[torch.Tensor]:
        """The gradient of the mean loss on the memory examples ``drawn`` (each with its own task id,
        so its own task's head) with respect to ``params``, zeros where it does not reach. Taken in
        evaluation mode (no dropout), so that every process of a data-parallel run, holding the same
        weights and drawing the same examples, projects alike."""
        grads = [torch.zeros_like(p) for p in params]
        batches = self.services.training_batches(model, drawn, list(range(len(drawn))), task)
        with model.evaluating():
            for inputs, task_ids, labels in batches:
                logits = model(**inputs, task_ids=task_ids).logits.float()
                targets = model.scenario.class_labels(task_ids, labels)  # class-space ids under a shared head
                loss = F.cross_entropy(logits, targets) * (len(labels) / len(drawn))
                parts = torch.autograd.grad(loss, params, allow_unused=True)
                for total, part in zip(grads, parts):
                    if part is not None:
                        total += part
        return grads

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        self.memory.add_task(task, data.train)
