"""CL-plugins: modules injected into every layer of a frozen encoder, one registered kind each
(``registry.py``): ``ctr``, ``hat_adapter`` (below), ``adapter``, ``adapter_per_task``
(``adapter.py``), ``lora``, ``lora_per_task`` (``lora.py``) and ``none``."""

from functools import partial

from ctr_plugin.plugins import lora  # noqa: F401  (registers the LoRA kinds)
from ctr_plugin.plugins.adapter import AdapterPlugin, PerTaskAdapterPlugin
from ctr_plugin.plugins.base import Plugin, PluginConfig
from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.ctr import CTRPlugin
from ctr_plugin.plugins.registry import PLUGIN_KINDS, PluginKind, build_plugin, plugin_kind, register_plugin_kind

register_plugin_kind("ctr", "sublayer", "CTR: knowledge sharing (task capsules, transfer routing) + the HAT-masked task-specific module",
                     partial(CTRPlugin, knowledge_sharing=True))
register_plugin_kind("hat_adapter", "sublayer", "CTR's HAT-masked task-specific module alone (Adapter-BERT + HAT)", partial(CTRPlugin, knowledge_sharing=False))

__all__ = ["PLUGIN_KINDS", "AdapterPlugin", "CTRPlugin", "PerTaskAdapterPlugin", "Plugin", "PluginConfig", "PluginContext", "PluginKind",
           "build_plugin", "plugin_kind", "register_plugin_kind"]
