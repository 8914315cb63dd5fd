"""LoRA (Hu et al. 2022) through peft, as two plugin kinds: ``lora`` (one set of LoRA weights on
every attention query and value projection, trained task after task: ``lora_ncl``) and
``lora_per_task`` (one named LoRA adapter per task, each example through its own: ``lora_one``;
the model adds an adapter per task and chooses them per example, see ``ContinualModel``).

Unlike the sublayer plugins, LoRA is no :class:`~ctr_plugin.plugins.Plugin` module: peft wraps the
projections in place.
"""

from __future__ import annotations

from torch import nn

from ctr_plugin.errors import CTRError
from ctr_plugin.plugins.base import PluginConfig
from ctr_plugin.plugins.registry import register_plugin_kind


def inject_lora(encoder: nn.Module, config: PluginConfig, adapter_name: str = "default") -> None:
    """LoRA (Hu et al. 2022) of rank ``config.lora_rank`` on every attention query and value
    projection, in place, through peft, as the adapter ``adapter_name`` (another name adds one
    more adapter beside the first); everything else in the encoder stays frozen."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    targets = [n for n, m in encoder.named_modules() if n.rsplit(".", 1)[-1] in ("query", "value") and isinstance(m, (nn.Linear, LoraLayer))]
    if not targets:
        raise CTRError(
            f"LoRA goes on the attention `query` and `value` projections, and the encoder {type(encoder).__name__} "
            f"({encoder.config.model_type}) has no modules of those names (DistilBERT, for one, calls them q_lin / "
            f"v_lin). Use a BERT-like encoder (BERT, RoBERTa, ELECTRA, MiniLM, ...) or another method."
        )
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=["query", "value"])
    inject_adapter_in_model(lora, encoder, adapter_name=adapter_name)


def lora_layers(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's peft LoRA layers (none unless ``plugin_type`` is "lora" or "lora_per_task")."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    return [m for m in encoder.modules() if isinstance(m, LoraLayer)]


register_plugin_kind("lora", "lora", "peft LoRA on the attention query and value projections, shared by all tasks")
register_plugin_kind("lora_per_task", "lora_per_task", "one peft LoRA adapter per task on query and value, chosen per example")
