"""Frozen BERT with per-task heads only: no plugin, nothing shared is trained, so no forgetting.

A strong Task-IL baseline: what the frozen encoder's features give without any continual learning.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.base import ContinualMethod


@dataclass
class FrozenHeads(ContinualMethod):
    name = "frozen_heads"
    plugin_type = "none"
    when_task_unknown = "infer_task"  # per-task modules: Domain-/Class-IL infer the task (task_inference.py)
