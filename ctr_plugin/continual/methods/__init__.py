"""Continual-learning methods, one file each, all run by ``ctr_plugin.continual.loop``."""

from __future__ import annotations

from typing import Any

from ctr_plugin.continual.methods.adapter_ncl import AdapterNCL
from ctr_plugin.continual.methods.adapter_one import AdapterONE
from ctr_plugin.continual.methods.agem import AGEM
from ctr_plugin.continual.methods.base import COMPARED_GROUP, TABLE_GROUPS, ContinualMethod, Step
from ctr_plugin.continual.methods.bert_mtl import BertMTL
from ctr_plugin.continual.methods.bert_ncl import BertNCL
from ctr_plugin.continual.methods.bert_one import BertONE
from ctr_plugin.continual.methods.ctr import CTR, AdapterHAT, CTRLinearUp
from ctr_plugin.continual.methods.ewc import EWC
from ctr_plugin.continual.methods.frozen_heads import FrozenHeads
from ctr_plugin.continual.methods.l2 import L2
from ctr_plugin.continual.methods.lora_ncl import LoraNCL
from ctr_plugin.continual.methods.lora_one import LoraONE
from ctr_plugin.continual.methods.lwf import LwF
from ctr_plugin.continual.methods.prototypes import NCM, SLDA
from ctr_plugin.continual.methods.replay import Replay
from ctr_plugin.errors import CTRError

METHODS: dict[str, type[ContinualMethod]] = {
    m.name: m
    for m in (
        CTR,
        CTRLinearUp,
        AdapterHAT,
        AdapterNCL,
        AdapterONE,
        BertNCL,
        BertONE,
        BertMTL,
        FrozenHeads,
        EWC,
        L2,
        Replay,
        LwF,
        LoraNCL,
        LoraONE,
        AGEM,
        NCM,
        SLDA,
    )
}


def method_class(name: str) -> type[ContinualMethod]:
    """The method class registered as ``name``; an unknown name gets the list of methods."""
    if name not in METHODS:
        raise CTRError(f"Unknown method {name!r}. Available methods: {', '.join(sorted(METHODS))}.")
    return METHODS[name]


def get_method(name: str, options: dict[str, Any] | None = None) -> ContinualMethod:
    """The method registered as ``name``, with ``options`` (strings are converted; see base.py)."""
    return method_class(name).from_options(options)


__all__ = ["COMPARED_GROUP", "METHODS", "TABLE_GROUPS", "ContinualMethod", "Step", "get_method", "method_class"]
