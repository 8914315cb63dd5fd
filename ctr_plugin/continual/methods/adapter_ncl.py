"""Adapter-BERT NCL (naive continual learning): one Houlsby adapter per sublayer, trained on task
after task with nothing against forgetting. The lower bound of the adapter methods."""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.base import ContinualMethod


@dataclass
class AdapterNCL(ContinualMethod):
    name = "adapter_ncl"
    plugin_type = "adapter"
