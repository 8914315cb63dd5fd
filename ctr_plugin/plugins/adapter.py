"""Houlsby bottleneck adapter (Adapter-BERT): the same place and width as CTR's task-specific module.

    y = x + W_up act(W_down x)

Task-agnostic: one adapter serves every task it is trained on. Baselines that need one adapter per
task (``adapter_one``) keep one model per task instead of growing this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Plugin, PluginConfig
from .context import PluginContext


class AdapterPlugin(Plugin):
    def __init__(self, config: PluginConfig, hidden_size: int, context: PluginContext):
        super().__init__(context)
        self.down = nn.Linear(hidden_size, config.adapter_size)
        self.up = nn.Linear(config.adapter_size, hidden_size)
        # Near-identity start (Houlsby et al. 2019): the frozen encoder's behaviour is kept.
        nn.init.normal_(self.up.weight, std=1e-2)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(x)))
