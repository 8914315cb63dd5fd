"""Houlsby bottleneck adapters (Adapter-BERT): the same place and width as CTR's task-specific module.

    y = x + W_up act(W_down x)

``AdapterPlugin`` is one such adapter, task-agnostic: it serves every task it is trained on
(``adapter_ncl`` and the classic methods). ``PerTaskAdapterPlugin`` holds one ``AdapterPlugin``
per task and runs each example through its own task's adapter (``adapter_one``); an adapter is
frozen once a later task is added, so a learned task's outputs never change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ctr_plugin.plugins.context import PluginContext, rows_by_task
from ctr_plugin.plugins.kinds import SublayerKind
from ctr_plugin.plugins.plugin import Plugin

if TYPE_CHECKING:  # hints only: PluginConfig checks its kind against the registry, which names this module
    from ctr_plugin.plugins.config import PluginConfig


class AdapterPlugin(Plugin):
    """y = x + W_up gelu(W_down x), starting near the identity (Houlsby et al. 2019), so the
    frozen encoder's behaviour is kept at first."""

    def __init__(self, config: PluginConfig, hidden_size: int, context: PluginContext):
        super().__init__(context)
        self.down = nn.Linear(hidden_size, config.adapter_size)
        self.up = nn.Linear(config.adapter_size, hidden_size)
        nn.init.normal_(self.up.weight, std=1e-2)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(x)))


class PerTaskAdapterPlugin(Plugin):
    """One :class:`AdapterPlugin` per task, each example through its own task's."""

    def __init__(self, config: PluginConfig, hidden_size: int, context: PluginContext):
        super().__init__(context)
        self.config, self.hidden_size = config, hidden_size
        self.adapters = nn.ModuleList()

    def add_task(self) -> None:
        for old in self.adapters:
            old.requires_grad_(False)
        self.adapters.append(AdapterPlugin(self.config, self.hidden_size, self.context))
        super().add_task()

    def remove_task(self, task: int) -> None:
        del self.adapters[task]  # the later tasks' adapters move down one place, as their task ids do
        super().remove_task(task)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d) -> (B, L, d): example b through the adapter of task ``task_ids[b]``."""
        task_ids, _ = self.context.require()
        tasks, _ = self.context.tasks()
        return rows_by_task(task_ids, x, lambda t, rows: self.adapters[t](rows), tasks=tasks)


# the kinds "adapter" and "adapter_per_task" (named in plugins/registry.py's SHIPPED_KINDS)
ADAPTER_KIND = SublayerKind(
    "adapter", "a Houlsby adapter shared by all tasks", AdapterPlugin, default_method="adapter_ncl"
)
ADAPTER_PER_TASK_KIND = SublayerKind(
    "adapter_per_task",
    "one Houlsby adapter per task, chosen by the task id",
    PerTaskAdapterPlugin,
    default_method="adapter_one",
)
