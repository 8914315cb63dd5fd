"""Batches as the loop feeds them to the model: index batches in a given order, examples
tokenized into one batch (with the examples a method mixes in, and each process's share of them),
and the evaluation mode a pass that trains nothing runs the model in."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from accelerate import Accelerator

from ctr_plugin.continual.parallel import shard
from ctr_plugin.data.types import Split
from ctr_plugin.modeling.model import ContinualModel


def batches(split: Split, batch_size: int, order: list[int]) -> Iterator[list[int]]:
    """The indices ``order`` of ``split`` in consecutive batches of ``batch_size`` (the last may be smaller)."""
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def encode_batch(
    model: ContinualModel,
    split: Split,
    idx: list[int],
    task_id: int,
    max_length: int,
    extra: Split | None = None,
    accelerator: Accelerator | None = None,
):
    """Tokenize examples ``idx`` of ``split`` (and every example of ``extra``) into one batch.

    The task of an example is ``split.task_ids[i]`` where the split is mixed-task, else ``task_id``.
    Where some examples are text pairs and others not, the others get an empty second text.
    With an ``accelerator`` of several processes, the batch is this process's share of them;
    returns the tensors and the weight of this share's loss (``parallel.shard``).
    """
    examples = [
        (
            split.texts[i],
            split.pairs[i] if split.pairs else None,
            split.labels[i],
            split.task_ids[i] if split.task_ids else task_id,
        )
        for i in idx
    ]
    if extra is not None and len(extra):
        examples += zip(extra.texts, extra.pairs or [None] * len(extra), extra.labels, extra.task_ids)
    weight = 1.0
    if accelerator is not None:
        examples, weight = shard(examples, accelerator)
    texts, pairs, labels, example_tasks = (list(column) for column in zip(*examples))
    if all(p is None for p in pairs):
        pairs = None
    elif any(p is None for p in pairs):
        pairs = ["" if p is None else p for p in pairs]
    batch = model.tokenize(texts, pairs, max_length)
    task_ids = torch.tensor(example_tasks, dtype=torch.long, device=model.device)
    return batch, task_ids, torch.tensor(labels, dtype=torch.long, device=model.device), weight
