"""CL-plugins: modules injected into every layer of a frozen encoder, one kind each, named in the
registry (``registry.py``) and defined beside its class: ``ctr``, ``hat_adapter`` (``ctr_layer.py``),
``adapter``, ``adapter_per_task`` (``adapter.py``), ``lora``, ``lora_per_task`` (``lora.py``) and
``none`` (``kinds.py``). ``PluginConfig`` (``config.py``) says which one a model carries.

The names below load on first use (PEP 562, as the package's face does), so that importing
``PluginConfig`` or the registry imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> the module that defines it
_DEFINED_IN = {
    "AdapterPlugin": "ctr_plugin.plugins.adapter",
    "PerTaskAdapterPlugin": "ctr_plugin.plugins.adapter",
    "PluginConfig": "ctr_plugin.plugins.config",
    "PluginContext": "ctr_plugin.plugins.context",
    "CTRPlugin": "ctr_plugin.plugins.ctr_layer",
    "PluginKind": "ctr_plugin.plugins.kinds",
    "SublayerKind": "ctr_plugin.plugins.kinds",
    "LoraKind": "ctr_plugin.plugins.lora",
    "LoraPerTaskKind": "ctr_plugin.plugins.lora",
    "Plugin": "ctr_plugin.plugins.plugin",
    "PLUGIN_KINDS": "ctr_plugin.plugins.registry",
    "build_plugin": "ctr_plugin.plugins.registry",
    "plugin_kind": "ctr_plugin.plugins.registry",
    "register_kind": "ctr_plugin.plugins.registry",
    "register_plugin_kind": "ctr_plugin.plugins.registry",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from ctr_plugin.plugins.adapter import AdapterPlugin, PerTaskAdapterPlugin
    from ctr_plugin.plugins.config import PluginConfig
    from ctr_plugin.plugins.context import PluginContext
    from ctr_plugin.plugins.ctr_layer import CTRPlugin
    from ctr_plugin.plugins.kinds import PluginKind, SublayerKind
    from ctr_plugin.plugins.lora import LoraKind, LoraPerTaskKind
    from ctr_plugin.plugins.plugin import Plugin
    from ctr_plugin.plugins.registry import (
        PLUGIN_KINDS,
        build_plugin,
        plugin_kind,
        register_kind,
        register_plugin_kind,
    )


def __getattr__(name: str):
    if name not in _DEFINED_IN:
        raise AttributeError(f"module 'ctr_plugin.plugins' has no attribute {name!r}")
    value = getattr(importlib.import_module(_DEFINED_IN[name]), name)
    globals()[name] = value  # imported once; later lookups find it in the module's namespace
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_DEFINED_IN))


__all__ = [
    "PLUGIN_KINDS",
    "AdapterPlugin",
    "CTRPlugin",
    "LoraKind",
    "LoraPerTaskKind",
    "PerTaskAdapterPlugin",
    "Plugin",
    "PluginConfig",
    "PluginContext",
    "PluginKind",
    "SublayerKind",
    "build_plugin",
    "plugin_kind",
    "register_kind",
    "register_plugin_kind",
]
