"""CL-plugins: modules injected into every layer of a frozen encoder."""

from .adapter import AdapterPlugin, PerTaskAdapterPlugin
from .base import Plugin, PluginConfig
from .context import PluginContext
from .ctr import CTRPlugin

PLUGIN_TYPES = ("ctr", "hat_adapter", "adapter", "adapter_per_task", "lora", "lora_per_task", "none")  # "none": no plugin; "lora*": peft, not a Plugin


def build_plugin(config: PluginConfig, hidden_size: int, context: PluginContext) -> Plugin:
    """The plugin named by ``config.plugin_type`` for an encoder of width ``hidden_size``."""
    if config.plugin_type == "ctr":
        return CTRPlugin(config, hidden_size, context, knowledge_sharing=True)
    if config.plugin_type == "hat_adapter":
        return CTRPlugin(config, hidden_size, context, knowledge_sharing=False)
    if config.plugin_type == "adapter":
        return AdapterPlugin(config, hidden_size, context)
    if config.plugin_type == "adapter_per_task":
        return PerTaskAdapterPlugin(config, hidden_size, context)
    raise ValueError(f"unknown plugin_type {config.plugin_type!r}; expected one of {PLUGIN_TYPES}")


__all__ = ["AdapterPlugin", "PerTaskAdapterPlugin", "CTRPlugin", "PLUGIN_TYPES", "Plugin", "PluginConfig", "PluginContext", "build_plugin"]
