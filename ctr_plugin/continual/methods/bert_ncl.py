"""BERT NCL: the whole encoder fine-tuned task after task (no plugin), nothing against forgetting.

The encoder trains at ``encoder_lr`` (full fine-tuning needs a far smaller rate than the plugins'
and heads' ``lr``); checkpoints hold the fine-tuned encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.base import ContinualMethod
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option
from ctr_plugin.plugins import PluginConfig
from ctr_plugin.search_space import LogUniform


@dataclass
class BertNCL(ContinualMethod):
    name = "bert_ncl"
    search_space = {"encoder_lr": LogUniform(1e-5, 3e-4)}
    one_reference = "bert_one"
    plugin_type = "none"

    encoder_lr: float = option(
        1e-4,
        "learning rate of the encoder's weights (the heads use the loop's lr)",
        Range("float", 0, 10, low_open=True),
    )

    def build_model(self, encoder, tokenizer, plugin_config: PluginConfig, encoder_name: str | None) -> ContinualModel:
        return ContinualModel(encoder, tokenizer, self.plugin_config(plugin_config), encoder_name, train_encoder=True)

    def learning_rates(self, model: ContinualModel, lr: float) -> dict[int, float]:
        return {id(p): self.encoder_lr for p in model.encoder.parameters() if p.requires_grad}
