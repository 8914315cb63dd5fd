"""LoRA NCL: LoRA (Hu et al. 2022, through peft) on the frozen encoder's attention query and value
projections, one set trained task after task with nothing against forgetting.

The parameter-efficient method users reach for today (the CTR paper predates it). The base
encoder's weights never change; checkpoints hold the LoRA weights and the heads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.base import ContinualMethod, option
from ctr_plugin.experiments.search_space import Choice


@dataclass
class LoraNCL(ContinualMethod):
    name = "lora_ncl"
    search_space = {"rank": Choice((4, 8, 16))}
    one_reference = "lora_one"
    plugin_type = "lora"
    plugin_options_from = {"lora_rank": "rank", "lora_alpha": "alpha"}

    rank: int = option(8, "r: rank of the LoRA update of each query / value projection")
    alpha: float = option(16.0, "LoRA scaling: the update is (alpha / r) B A")
