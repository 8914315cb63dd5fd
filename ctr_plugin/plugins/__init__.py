"""CL-plugins: modules injected into every layer of a frozen encoder, one registered kind each
(``registry.py``), registered beside its class: ``ctr``, ``hat_adapter`` (``ctr.py``), ``adapter``,
``adapter_per_task`` (``adapter.py``), ``lora``, ``lora_per_task`` (``lora.py``) and ``none``."""

from ctr_plugin.plugins.adapter import AdapterPlugin, PerTaskAdapterPlugin
from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.ctr_layer import CTRPlugin
from ctr_plugin.plugins.lora import LoraKind, LoraPerTaskKind
from ctr_plugin.plugins.plugin import Plugin, PluginConfig
from ctr_plugin.plugins.registry import (
    PLUGIN_KINDS,
    PluginKind,
    SublayerKind,
    build_plugin,
    plugin_kind,
    register_kind,
    register_plugin_kind,
)

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
