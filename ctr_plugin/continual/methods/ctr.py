"""CTR (Ke et al., NeurIPS 2021): knowledge sharing by capsules and transfer routing, forgetting
prevention by HAT masks on the task-specific module. ``hat_adapter`` is the same without the
knowledge sharing module (the paper's "Adapter-BERT + HAT" / B-CL's TSM alone).

The defaults are the paper's. The options expose the HAT knobs that ``docs/ctr_diagnosis.md``
ablates: the mask regulariser's weight, the span the temperature anneals over, and the mask
embeddings' own learning rate (the plugin's architecture knobs, such as ``tsm_activation`` and the
mask embeddings' initialisation, are ``PluginConfig`` fields). In Domain-IL and Class-IL,
``ood_replay`` adds Kim et al.'s out-of-distribution replay for the task inference
(``outlier_replay.py``; off by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ctr_plugin.continual import hat
from ctr_plugin.continual.methods.base import ContinualMethod, Step
from ctr_plugin.continual.methods.outlier_replay import OutlierReplay
from ctr_plugin.data.types import TaskData
from ctr_plugin.errors import CTRError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option
from ctr_plugin.search_space import Uniform

ANNEAL_SPANS = ("epoch", "task")


@dataclass
class CTR(OutlierReplay, ContinualMethod):
    name = "ctr"
    table_group = "CTR"
    plugin_type = "ctr"
    search_space = {"mask_lambda": Uniform(0.0, 1.5)}
    when_task_unknown = "infer_task"  # per-task modules: Domain-/Class-IL infer the task (task_inference.py)

    mask_lambda: float = option(
        0.75, "weight of HAT's mask regulariser in the loss (paper: 0.75)", Range("float", 0, None)
    )
    anneal: str = option(
        "epoch", "HAT's temperature s anneals 1/s_max -> s_max over each 'epoch' (paper) or over the whole 'task'"
    )
    mask_lr_scale: float = option(
        1.0,
        "learning rate of the HAT mask embeddings, as a multiple of --lr (paper: 1)",
        Range("float", 0, None, low_open=True),
    )

    def __post_init__(self):
        super().__post_init__()
        if self.anneal not in ANNEAL_SPANS:
            raise CTRError(
                f"Option anneal={self.anneal!r} of method {self.name!r} must be one of {', '.join(ANNEAL_SPANS)}."
            )

    def temperature(self, model: ContinualModel, step: Step) -> float:
        s_max = model.plugin_config.s_max
        if self.anneal == "task":
            return hat.temperature(
                step.epoch * step.num_batches + step.batch, step.num_epochs * step.num_batches, s_max
            )
        return hat.temperature(step.batch, step.num_batches, s_max)

    def plugin_inputs(self, model: ContinualModel, step: Step) -> dict:
        return {"s": self.temperature(model, step)}

    def loss(self, model, logits, labels, step: Step) -> torch.Tensor:
        ce = super().loss(model, logits, labels, step)
        if self.mask_lambda == 0:
            return ce
        return ce + self.mask_lambda * hat.mask_regulariser(model, step.task, self.temperature(model, step))

    def before_step(self, model: ContinualModel, step: Step) -> None:
        if step.task > 0:
            hat.protect_previous_tasks(model)
        hat.compensate_embedding_gradients(model, step.task, self.temperature(model, step), model.plugin_config.s_max)

    def after_step(self, model: ContinualModel, step: Step) -> None:
        hat.clamp_embeddings(model, step.task)

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        super().after_task(model, task, data)  # the OOD replay's memory, where on
        hat.accumulate_masks(model, task, model.plugin_config.s_max)

    def no_weight_decay(self, model: ContinualModel) -> set[int]:
        return hat.hat_parameters(model)

    def learning_rates(self, model: ContinualModel, lr: float) -> dict[int, float]:
        if self.mask_lr_scale == 1.0:
            return {}
        return {id(p): lr * self.mask_lr_scale for p in hat.mask_embeddings(model)}


@dataclass
class AdapterHAT(CTR):
    name = "adapter_hat"
    table_group = "continual baselines"
    plugin_type = "hat_adapter"


@dataclass
class CTRLinearUp(CTR):
    """A variant, not the paper's method: CTR whose task-specific module has no ReLU on its
    up-projection (``tsm_activation: none``), as in Houlsby adapters.

    Why: when HAT's masks stay near their random initialisation (short training, as at this
    package's CPU sizing), the module writes only through a random half of its units, and with
    the paper's ReLU it can only *add* non-negative values there. HAT's protection is unchanged:
    the masks, gradient masking and the regulariser are the paper's. The measurements behind it
    are in docs/ctr_diagnosis.md; the tables keep both rows.
    """

    name = "ctr_linear_up"
    fixed_plugin_options = {"tsm_activation": "none"}
