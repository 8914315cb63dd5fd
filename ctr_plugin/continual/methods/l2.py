"""L2: the adapter model, with a penalty on the distance to the weights left by the previous task.

    loss = CE + lambda * sum_i w_i (theta_i - theta*_i)^2

over the shared trainable weights (adapters and LayerNorms; not the heads), theta* = the weights
after the previous task, w_i = 1. EWC (``ewc.py``) is the same with w_i = the Fisher information.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ctr_plugin.continual.methods.base import ContinualMethod, Step, shared_parameters
from ctr_plugin.data.types import TaskData
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option
from ctr_plugin.search_space import LogUniform


@dataclass
class L2(ContinualMethod):
    name = "l2"
    search_space = {"strength": LogUniform(1e-2, 1e2)}
    plugin_type = "adapter"
    resumable = False  # the anchor weights are not in the checkpoint

    strength: float = option(1.0, "lambda: weight of the penalty", Range("float", 0, None))

    def __post_init__(self):
        self.anchor: dict[str, torch.Tensor] = {}
        self.importance: dict[str, torch.Tensor] = {}

    def penalty(self, model: ContinualModel) -> torch.Tensor:
        """sum_i w_i (theta_i - theta*_i)^2; 0 before the first task is learned."""
        total = torch.zeros((), device=model.device)
        for n, p in shared_parameters(model).items():
            if n in self.anchor:
                total = total + (self.importance[n] * (p - self.anchor[n]) ** 2).sum()
        return total

    def loss(self, model, logits, labels, step: Step) -> torch.Tensor:
        ce = super().loss(model, logits, labels, step)
        return ce + self.strength * self.penalty(model) if self.anchor else ce

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        self.importance = self.task_importance(model, task, data)
        self.anchor = {n: p.detach().clone() for n, p in shared_parameters(model).items()}

    def task_importance(self, model: ContinualModel, task: int, data: TaskData) -> dict[str, torch.Tensor]:
        """w_i after learning ``task``: 1 for every weight."""
        return {n: torch.ones_like(p) for n, p in shared_parameters(model).items()}
