"""Continual-learning methods, one file each, all run by ``ctr_plugin.continual.loop``."""

from __future__ import annotations

from typing import Any

from .adapter_ncl import AdapterNCL
from .adapter_one import AdapterONE
from .base import COMPARED_GROUP, TABLE_GROUPS, ContinualMethod, Step
from .bert_mtl import BertMTL
from .bert_ncl import BertNCL
from .bert_one import BertONE
from .ctr import CTR, AdapterHAT, CTRLinearUp
from .ewc import EWC
from .frozen_heads import FrozenHeads
from .l2 import L2
from .lora_ncl import LoraNCL
from .lora_one import LoraONE
from .lwf import LwF
from .replay import Replay

METHODS: dict[str, type[ContinualMethod]] = {
    m.name: m
    for m in (CTR, CTRLinearUp, AdapterHAT, AdapterNCL, AdapterONE, BertNCL, BertONE, BertMTL, FrozenHeads, EWC, L2, Replay, LwF, LoraNCL, LoraONE)
}


def get_method(name: str, options: dict[str, Any] | None = None) -> ContinualMethod:
    """The method registered as ``name``, with ``options`` (strings are converted; see base.py)."""
    from ...errors import CTRError

    if name not in METHODS:
        raise CTRError(f"Unknown method {name!r}. Available methods: {', '.join(sorted(METHODS))}.")
    return METHODS[name].from_options(options)


__all__ = ["COMPARED_GROUP", "METHODS", "TABLE_GROUPS", "ContinualMethod", "Step", "get_method"]
