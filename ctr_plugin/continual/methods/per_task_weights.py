"""Shared by the ONE variants that swap weights: a separate copy of the shared weights per task.

Every task starts from the same initial weights (a fresh copy) and, once learned, keeps its own
copy, which is loaded before the task is tested. The model object holds one copy at a time: a
checkpoint holds the last task's, so it serves that task only (``adapter_one`` instead holds all
tasks' adapters in the model).
"""

from __future__ import annotations

import torch

from ...model import ContinualModel
from .base import shared_parameters


class SeparateWeightsPerTask:
    resumable = False  # the per-task copies live in memory, not in the checkpoint

    def before_sequence(self, model: ContinualModel, tasks, cfg) -> None:
        super().before_sequence(model, tasks, cfg)
        self._initial = self._snapshot(model)
        self._per_task: dict[int, dict[str, torch.Tensor]] = {}

    def before_task(self, model: ContinualModel, task: int, data) -> None:
        self._load(model, self._initial)
        super().before_task(model, task, data)

    def after_task(self, model: ContinualModel, task: int, data) -> None:
        super().after_task(model, task, data)
        self._per_task[task] = self._snapshot(model)

    def before_evaluate(self, model: ContinualModel, task: int) -> None:
        super().before_evaluate(model, task)
        if task in self._per_task:
            self._load(model, self._per_task[task])

    @staticmethod
    def _snapshot(model: ContinualModel) -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu", copy=True) for n, p in shared_parameters(model).items()}

    @staticmethod
    @torch.no_grad()
    def _load(model: ContinualModel, state: dict[str, torch.Tensor]) -> None:
        for n, p in shared_parameters(model).items():
            p.copy_(state[n])
