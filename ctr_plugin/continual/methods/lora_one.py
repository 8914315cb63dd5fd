"""LoRA ONE: a fresh LoRA per task on the frozen encoder (one model per task).

Each task gets its own peft LoRA adapter (named ``task_<id>``); earlier adapters are frozen when
a task is added, and every example goes through its own task's adapter, chosen per example, so a
batch may mix tasks and a checkpoint serves every task as the run tested it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.lora_ncl import LoraNCL


@dataclass
class LoraONE(LoraNCL):
    name = "lora_one"
    table_group = "non-continual"
    plugin_type = "lora_per_task"
    when_task_unknown = "infer_task"  # per-task modules: Domain-/Class-IL infer the task (task_inference.py)
