"""Continual-learning methods, one file each, all run by ``ctr_plugin.continual.loop``."""

from .base import ContinualMethod, Step
from .ctr import CTR, AdapterHAT

METHODS: dict[str, type[ContinualMethod]] = {m.name: m for m in (CTR, AdapterHAT)}


def get_method(name: str) -> ContinualMethod:
    from ...errors import CTRError

    if name not in METHODS:
        raise CTRError(f"Unknown method {name!r}. Available methods: {', '.join(sorted(METHODS))}.")
    return METHODS[name]()


__all__ = ["METHODS", "ContinualMethod", "Step", "get_method"]
