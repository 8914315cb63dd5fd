"""For ONE variants that swap weights (bert_one): a separate copy of the shared weights per task.

Every task starts from the same initial weights (a fresh copy) and, once learned, keeps its own
copy in ``model.task_weights`` (``modeling/task_weights.py``), which puts a task's copy in place
before the model classifies that task's examples, so a checkpoint serves every task as the run
tested it. The cost: a checkpoint holds one copy per task (for bert_one a whole encoder per task,
about 90 MB for the bundled MiniLM and 440 MB for bert-base). lora_one needs no swapping: it holds
one peft adapter per task.
"""

from __future__ import annotations

import torch

from ctr_plugin.continual.methods.base import shared_parameters
from ctr_plugin.modeling.model import ContinualModel


class SeparateWeightsPerTask:
    resumable = False  # the initial weights every task starts from are not in the checkpoint

    def before_sequence(self, model: ContinualModel, tasks, cfg) -> None:
        super().before_sequence(model, tasks, cfg)
        self._initial = self._snapshot(model)

    def before_task(self, model: ContinualModel, task: int, data) -> None:
        model.task_weights.put_in_place(self._initial)
        super().before_task(model, task, data)

    def after_task(self, model: ContinualModel, task: int, data) -> None:
        super().after_task(model, task, data)
        model.task_weights.keep(task, self._snapshot(model))

    @staticmethod
    def _snapshot(model: ContinualModel) -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu", copy=True) for n, p in shared_parameters(model).items()}
