"""LoRA NCL: LoRA (Hu et al. 2022, through peft) on the frozen encoder's attention projections
(peft's targets for the architecture: query and value for BERT), one set trained task after task
with nothing against forgetting.

The parameter-efficient method users reach for today (the CTR paper predates it). The base
encoder's weights never change; checkpoints hold the LoRA weights and the heads. The LoRA's rank
and scaling are plugin options (``lora_rank``, ``lora_alpha``: ``--lora-rank``, ``--lora-alpha``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.base import ContinualMethod
from ctr_plugin.search_space import Choice


@dataclass
class LoraNCL(ContinualMethod):
    name = "lora_ncl"
    search_space = {"lora_rank": Choice((4, 8, 16))}
    one_reference = "lora_one"
    plugin_type = "lora"
