"""What the loop offers the methods: its batching, with the run's settings, so that a method
that needs more passes over a task's data (EWC's Fisher information) makes them exactly as the
loop does.

The loop gives each method a :class:`LoopServices` (``method.services``) before the first task.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ctr_plugin.continual.batching import batches, encode_batch
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.types import Split
from ctr_plugin.modeling.model import ContinualModel


@dataclass
class LoopServices:
    training: TrainingConfig  # the run's options (batch size, maximum length, ...)

    def training_batches(
        self, model: ContinualModel, split: Split, idx: list[int], task_id: int
    ) -> Iterator[tuple[dict, torch.Tensor, torch.Tensor]]:
        """Examples ``idx`` of ``split`` (of task ``task_id``) as the loop batches them for training:
        ``(model inputs, task ids, labels)`` per batch of ``training.batch_size``."""
        for batch_idx in batches(split, self.training.batch_size, idx):
            inputs, task_ids, labels, _ = encode_batch(model, split, batch_idx, task_id, self.training.max_length)
            yield inputs, task_ids, labels
