"""Learning without Forgetting (Li & Hoiem 2017) on the adapter model: while a new task is
learned, the earlier tasks' heads are kept close to what the previous model output on the new
task's data (knowledge distillation with temperature T):

    loss = CE + lambda * sum_{j < t} T^2 KL(softmax(z_j^old / T) || softmax(z_j / T)) / t

The previous model is a frozen copy taken before the task; both models' heads read their own
pooled features of the same batch (the adapter is task-agnostic, so one forward pass each). With
one shared head (Domain-/Class-IL) the term is one KL over the earlier tasks' classes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ctr_plugin.continual.methods.base import ContinualMethod, Step
from ctr_plugin.data.types import TaskData
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option
from ctr_plugin.search_space import Choice, LogUniform


@dataclass
class LwF(ContinualMethod):
    name = "lwf"
    plugin_type = "adapter"
    resumable = False  # the previous model is not in the checkpoint
    search_space = {"strength": LogUniform(0.1, 10.0), "temperature": Choice((1.0, 2.0, 4.0))}
    continuable = True  # a continued run's previous model is the checkpoint itself (copied before each task)

    strength: float = option(1.0, "lambda: weight of the distillation term", Range("float", 0, None))
    temperature: float = option(
        2.0, "T: softmax temperature of the distillation", Range("float", 0, None, low_open=True)
    )

    def __post_init__(self):
        self.previous: ContinualModel | None = None
        self.last_distillation: float | None = None  # the term's value at the last step (logs, tests)

    def before_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        self.previous = copy.deepcopy(model).eval().requires_grad_(False) if task > 0 else None
        # The pooled features each model's heads read, kept by forward hooks on their dropout.
        self._features: dict[str, torch.Tensor] = {}
        self._hooks = [model.head_dropout.register_forward_hook(self._keep("new"))]
        if self.previous is not None:
            self._hooks.append(self.previous.head_dropout.register_forward_hook(self._keep("old")))

    def _keep(self, key: str):
        return lambda _module, _inputs, output: self._features.__setitem__(key, output)

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        for hook in self._hooks:
            hook.remove()
        self.previous = None

    def loss(self, model, logits, labels, step: Step) -> torch.Tensor:
        ce = super().loss(model, logits, labels, step)
        if self.previous is None:
            return ce
        with torch.no_grad():  # any task id: the adapter model's features do not depend on it
            self.previous(**(step.inputs | {"task_ids": torch.zeros_like(step.inputs["task_ids"])}))
        T, old_features, features = self.temperature, self._features["old"], self._features["new"]
        if model.scenario.shared_head:  # Domain-/Class-IL: the earlier tasks' classes, the head's first rows
            seen = len({c for ids in model.scenario.class_ids[: step.task] for c in ids})
            old = F.softmax(self.previous.heads[0](old_features)[:, :seen] / T, dim=-1)
            new = F.log_softmax(model.heads[0](features)[:, :seen] / T, dim=-1)
            distill = F.kl_div(new, old, reduction="batchmean") * T * T
            self.last_distillation = float(distill.detach())
            return ce + self.strength * distill
        distill = ce.new_zeros(())
        for j in range(step.task):
            old = F.softmax(self.previous.heads[j](old_features) / T, dim=-1)
            new = F.log_softmax(model.heads[j](features) / T, dim=-1)
            distill = distill + F.kl_div(new, old, reduction="batchmean") * T * T
        distill = distill / step.task
        self.last_distillation = float(distill.detach())
        return ce + self.strength * distill
