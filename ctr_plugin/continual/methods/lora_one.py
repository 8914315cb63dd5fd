"""LoRA ONE: a fresh LoRA per task on the frozen encoder (one model per task).

The per-task LoRA weights are kept in memory and swapped in before a task is tested
(``SeparateWeightsPerTask``); the checkpoint holds every task's LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lora_ncl import LoraNCL
from .per_task_weights import SeparateWeightsPerTask


@dataclass
class LoraONE(SeparateWeightsPerTask, LoraNCL):
    name = "lora_one"
