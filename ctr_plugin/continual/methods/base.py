"""What a continual-learning method is: a model recipe plus hooks into the one training loop.

The loop (``ctr_plugin.continual.loop``) owns batching, optimisation, validation, best-epoch
selection and evaluation, identically for every method. A method only says which model it trains
and what happens at a few points:

    before_task -> [loss -> backward -> before_step -> optimizer step -> after_step]* -> after_task
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ...data.types import TaskData
from ...model import ContinualModel
from ...plugins import PluginConfig


@dataclass
class Step:
    """Where the loop is: used by methods whose behaviour changes within an epoch (HAT's s)."""

    task: int
    epoch: int
    batch: int
    num_batches: int


class ContinualMethod:
    name: ClassVar[str]
    scenario: ClassVar[str] = "task-il"  # the task id is known at training and at test time
    plugin_type: ClassVar[str]

    def build_model(self, encoder, tokenizer, plugin_config: PluginConfig, encoder_name: str | None) -> ContinualModel:
        config = PluginConfig(**{**plugin_config.to_dict(), "plugin_type": self.plugin_type})
        return ContinualModel(encoder, tokenizer, config, encoder_name)

    def before_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        pass

    def forward_kwargs(self, model: ContinualModel, step: Step) -> dict:
        """Extra keyword arguments of the model's forward pass during training."""
        return {}

    def loss(self, model: ContinualModel, logits: torch.Tensor, labels: torch.Tensor, step: Step) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def before_step(self, model: ContinualModel, step: Step) -> None:
        pass

    def after_step(self, model: ContinualModel, step: Step) -> None:
        pass

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        pass

    def no_weight_decay(self, model: ContinualModel) -> set[int]:
        """ids of trainable parameters that must not be weight-decayed (beyond biases and norms)."""
        return set()
