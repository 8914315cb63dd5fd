"""Houlsby bottleneck adapters (Adapter-BERT): the same place and width as CTR's task-specific module.

    y = x + W_up act(W_down x)

``AdapterPlugin`` is task-agnostic: one adapter serves every task it is trained on (``adapter_ncl``
and the classic methods). ``PerTaskAdapterPlugin`` holds one adapter per task and runs each
example through its own task's adapter (``adapter_one``); an adapter is frozen once a later task
is added, so a learned task's outputs never change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctr_plugin.plugins.base import Plugin, PluginConfig
from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.registry import register_plugin_kind


def _near_identity(up: nn.Linear) -> None:
    # Near-identity start (Houlsby et al. 2019): the frozen encoder's behaviour is kept.
    nn.init.normal_(up.weight, std=1e-2)
    nn.init.zeros_(up.bias)


class AdapterPlugin(Plugin):
    def __init__(self, config: PluginConfig, hidden_size: int, context: PluginContext):
        super().__init__(context)
        self.down = nn.Linear(hidden_size, config.adapter_size)
        self.up = nn.Linear(config.adapter_size, hidden_size)
        _near_identity(self.up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(x)))


class Bottleneck(nn.Module):
    """One task's adapter in a :class:`PerTaskAdapterPlugin`."""

    def __init__(self, hidden_size: int, adapter_size: int):
        super().__init__()
        self.down = nn.Linear(hidden_size, adapter_size)
        self.up = nn.Linear(adapter_size, hidden_size)
        _near_identity(self.up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(x)))


class PerTaskAdapterPlugin(Plugin):
    def __init__(self, config: PluginConfig, hidden_size: int, context: PluginContext):
        super().__init__(context)
        self.hidden_size, self.adapter_size = hidden_size, config.adapter_size
        self.adapters = nn.ModuleList()

    def add_task(self) -> None:
        for old in self.adapters:
            old.requires_grad_(False)
        self.adapters.append(Bottleneck(self.hidden_size, self.adapter_size))
        super().add_task()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d) -> (B, L, d): example b through the adapter of task ``task_ids[b]``."""
        task_ids, _ = self.context.require()
        tasks = task_ids.unique().tolist()
        if len(tasks) == 1:
            return self.adapters[tasks[0]](x)
        out = torch.empty_like(x)
        for t in tasks:
            rows = task_ids == t
            out[rows] = self.adapters[t](x[rows])
        return out


register_plugin_kind("adapter", "sublayer", "a Houlsby adapter shared by all tasks", AdapterPlugin)
register_plugin_kind("adapter_per_task", "sublayer", "one Houlsby adapter per task, chosen by the task id", PerTaskAdapterPlugin)
