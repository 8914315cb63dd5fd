"""LoRA (Hu et al. 2022) through peft, as two plugin kinds: ``lora`` (one set of LoRA weights on
every attention query and value projection, trained task after task: ``lora_ncl``) and
``lora_per_task`` (one named LoRA adapter per task, each example through its own: ``lora_one``;
an adapter is added per task, and a forward pre-hook on each LoRA layer chooses them per example).

Unlike the sublayer plugins, LoRA is no :class:`~ctr_plugin.plugins.Plugin` module: peft wraps the
projections in place.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from torch import nn

from ctr_plugin.errors import CTRError
from ctr_plugin.plugins.base import PluginConfig
from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.registry import PluginKind, register_kind

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel


def inject_lora(encoder: nn.Module, config: PluginConfig, adapter_name: str = "default") -> None:
    """LoRA (Hu et al. 2022) of rank ``config.lora_rank`` on every attention query and value
    projection, in place, through peft, as the adapter ``adapter_name`` (another name adds one
    more adapter beside the first); everything else in the encoder stays frozen."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    targets = [
        n
        for n, m in encoder.named_modules()
        if n.rsplit(".", 1)[-1] in ("query", "value") and isinstance(m, (nn.Linear, LoraLayer))
    ]
    if not targets:
        raise CTRError(
            f"LoRA goes on the attention `query` and `value` projections, and the encoder {type(encoder).__name__} "
            f"({encoder.config.model_type}) has no modules of those names (DistilBERT, for one, calls them q_lin / "
            f"v_lin). Use a BERT-like encoder (BERT, RoBERTa, ELECTRA, MiniLM, ...) or another method."
        )
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=["query", "value"]
    )
    inject_adapter_in_model(lora, encoder, adapter_name=adapter_name)


def lora_layers(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's peft LoRA layers (none unless ``plugin_type`` is "lora" or "lora_per_task")."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    return [m for m in encoder.modules() if isinstance(m, LoraLayer)]


class LoraKind(PluginKind):
    """peft LoRA on the attention query and value projections, one set shared by all tasks."""

    placement: ClassVar[str] = "lora"

    def inject(self, model: ContinualModel) -> None:
        inject_lora(model.encoder, model.plugin_config)

    def saved_prefixes(self, model: ContinualModel) -> list[str]:
        names = {id(m): n for n, m in model.named_modules()}
        return [f"{names[id(m)]}.{part}." for m in lora_layers(model.encoder) for part in ("lora_A", "lora_B")]


class LoraPerTaskKind(LoraKind):
    """One peft LoRA adapter per task, named ``task_<id>``, added when the task is; earlier tasks'
    adapters are frozen. Each LoRA layer learns, through a forward pre-hook, which adapter each
    example of a batch takes (peft's per-example ``adapter_names``), so one batch may mix tasks."""

    placement: ClassVar[str] = "lora_per_task"

    def inject(self, model: ContinualModel) -> None:
        """Nothing yet: each task brings its adapter."""

    def add_task(self, model: ContinualModel, task: int) -> None:
        with warnings.catch_warnings():  # peft warns that a second adapter makes several: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject_lora(model.encoder, model.plugin_config, adapter_name=f"task_{task}")
        for layer in lora_layers(model.encoder):
            for adapters in (layer.lora_A, layer.lora_B):
                for name, module in adapters.items():
                    module.requires_grad_(name == f"task_{task}")
                    module.to(model.device)
            if not getattr(layer, "_ctr_adapter_hook", False):
                layer.register_forward_pre_hook(partial(_choose_adapters, model.context), with_kwargs=True)
                layer._ctr_adapter_hook = True


def _choose_adapters(context: PluginContext, _module, args, kwargs):
    if context.task_ids is not None:
        kwargs["adapter_names"] = [f"task_{t}" for t in context.task_ids.tolist()]
    return args, kwargs


register_kind(
    LoraKind(
        "lora",
        "peft LoRA on the attention query and value projections, shared by all tasks",
        default_method="lora_ncl",
    )
)
register_kind(
    LoraPerTaskKind(
        "lora_per_task",
        "one peft LoRA adapter per task on query and value, chosen per example",
        default_method="lora_one",
    )
)
