"""CTR (Ke et al., NeurIPS 2021): knowledge sharing by capsules and transfer routing, forgetting
prevention by HAT masks on the task-specific module. ``hat_adapter`` is the same without the
knowledge sharing module (the paper's "Adapter-BERT + HAT" / B-CL's TSM alone)."""

from __future__ import annotations

import torch

from ...data.types import TaskData
from ...model import ContinualModel
from .. import hat
from .base import ContinualMethod, Step

MASK_REGULARISATION = 0.75  # lambda of CTR / HAT


class CTR(ContinualMethod):
    name = "ctr"
    table_group = "CTR"
    plugin_type = "ctr"

    def forward_kwargs(self, model: ContinualModel, step: Step) -> dict:
        return {"s": hat.temperature(step.batch, step.num_batches, model.plugin_config.s_max)}

    def loss(self, model, logits, labels, step: Step) -> torch.Tensor:
        s = self.forward_kwargs(model, step)["s"]
        ce = super().loss(model, logits, labels, step)
        return ce + MASK_REGULARISATION * hat.mask_regulariser(model, step.task, s)

    def before_step(self, model: ContinualModel, step: Step) -> None:
        if step.task > 0:
            hat.protect_previous_tasks(model)
        s = self.forward_kwargs(model, step)["s"]
        hat.compensate_embedding_gradients(model, step.task, s, model.plugin_config.s_max)

    def after_step(self, model: ContinualModel, step: Step) -> None:
        hat.clamp_embeddings(model, step.task)

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        hat.accumulate_masks(model, task, model.plugin_config.s_max)

    def no_weight_decay(self, model: ContinualModel) -> set[int]:
        return hat.hat_parameters(model)


class AdapterHAT(CTR):
    name = "adapter_hat"
    table_group = "continual baselines"
    plugin_type = "hat_adapter"
