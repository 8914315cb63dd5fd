"""Adapter-BERT ONE: a fresh adapter per task (one model per task, sharing the frozen encoder).

Each example goes through its own task's adapter (``PerTaskAdapterPlugin``); earlier adapters are
frozen when a task is added, and the LayerNorms stay frozen (trained ones would be shared by all
tasks), so a learned task's predictions never change: no forgetting, and no transfer. The
reference that knowledge transfer is measured against. ``ood_replay``: out-of-distribution
replay for the task inference in Domain-IL and Class-IL (``outlier_replay.py``; off by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.base import ContinualMethod
from ctr_plugin.continual.methods.outlier_replay import OutlierReplay


@dataclass
class AdapterONE(OutlierReplay, ContinualMethod):
    name = "adapter_one"
    table_group = "non-continual"
    plugin_type = "adapter_per_task"
    when_task_unknown = "infer_task"  # per-task modules: Domain-/Class-IL infer the task (task_inference.py)
    fixed_plugin_options = {"train_layernorm": False}  # trained LayerNorms would be shared by all tasks
