"""EWC (Kirkpatrick et al. 2017) on the adapter model: the L2 penalty weighted by the diagonal
Fisher information of the shared weights, so the weights earlier tasks rely on move least.

The Fisher of a task is estimated after it is learned, as in Avalanche's EWC: the squared
gradient of the training loss, per mini-batch, averaged over at most ``fisher_samples`` training
examples. Tasks add up (F = F_0 + ... + F_t) around one anchor, the weights after the last task
("online" EWC without decay: one penalty term however many tasks). ``fisher_merge: average``
instead keeps the running mean (F_t + t F_old) / (t + 1), as the CTR reference code's EWC does,
which weakens each earlier task's share as tasks accumulate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ctr_plugin.continual.methods.base import shared_parameters
from ctr_plugin.continual.methods.l2 import L2
from ctr_plugin.data.types import TaskData
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option
from ctr_plugin.search_space import LogUniform


@dataclass
class EWC(L2):
    name = "ewc"
    search_space = {"strength": LogUniform(1e2, 1e5)}
    needs_task_data = True  # the Fisher information is estimated on the task's training examples

    strength: float = option(5000.0, "lambda: weight of the Fisher-weighted penalty", Range("float", 0, None))
    fisher_samples: int = option(
        256, "training examples of a task used to estimate its Fisher information", Range("int", 1, None)
    )
    fisher_merge: str = option(
        "sum",
        "how tasks' Fisher information combine: 'sum' (F_0 + ... + F_t) or 'average' (the running mean, "
        "as the CTR reference code)",
        choices=("sum", "average"),
    )

    def task_importance(self, model: ContinualModel, task: int, data: TaskData) -> dict[str, torch.Tensor]:
        params = shared_parameters(model)
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        idx = sorted(random.Random(task).sample(range(len(data.train)), min(len(data.train), self.fisher_samples)))
        batches = list(self.services.training_batches(model, data.train, idx, task))  # batched as the loop does
        with model.evaluating():
            for inputs, task_ids, labels in batches:
                model.zero_grad(set_to_none=True)
                model(**inputs, task_ids=task_ids, labels=labels).loss.backward()
                for n, p in params.items():
                    if p.grad is not None:
                        fisher[n] += p.grad.detach() ** 2 / len(batches)
            model.zero_grad(set_to_none=True)
        return self.merged(fisher, task)

    def merged(self, fisher: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        """Task ``task``'s Fisher information combined with the earlier tasks' (``importance``)."""
        if self.fisher_merge == "average":  # task is the 0-based id t: (F_t + t F_old) / (t + 1)
            return {n: (fisher[n] + task * self.importance.get(n, 0.0)) / (task + 1) for n in fisher}
        return {n: fisher[n] + self.importance.get(n, 0.0) for n in fisher}
