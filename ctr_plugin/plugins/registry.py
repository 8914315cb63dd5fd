"""The plugin kinds: each registers itself here with how it is placed in the encoder, and a
:class:`~ctr_plugin.plugins.PluginConfig` names one (``plugin_type``), checked on construction.

Placements:

* ``"sublayer"``: a :class:`~ctr_plugin.plugins.Plugin` module in every output sublayer
  (``ctr_plugin/modeling/injection.py``), built by the kind's ``build(config, hidden_size, context)``;
* ``"lora"``: peft LoRA on the attention query and value projections, one set for all tasks;
* ``"lora_per_task"``: one such LoRA adapter per task, chosen per example (``plugins/lora.py``);
* ``"none"``: nothing is injected (heads only, or full fine-tuning).

A new kind is one module that calls :func:`register_plugin_kind`, and one import in
``plugins/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctr_plugin.errors import CTRError

if TYPE_CHECKING:
    from ctr_plugin.plugins.base import Plugin, PluginConfig
    from ctr_plugin.plugins.context import PluginContext

PLACEMENTS = ("sublayer", "lora", "lora_per_task", "none")


@dataclass(frozen=True)
class PluginKind:
    name: str
    placement: str
    description: str
    build: Callable[[PluginConfig, int, PluginContext], Plugin] | None = None  # for placement "sublayer"

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"plugin kind {self.name!r}: placement must be one of {PLACEMENTS}, not {self.placement!r}")
        if (self.build is None) == (self.placement == "sublayer"):
            raise ValueError(f"plugin kind {self.name!r}: a sublayer plugin needs `build`, and only a sublayer plugin has one")


PLUGIN_KINDS: dict[str, PluginKind] = {}


def register_plugin_kind(name: str, placement: str, description: str, build=None) -> PluginKind:
    """Register a plugin kind under ``name`` (a second registration of a name is a mistake)."""
    if name in PLUGIN_KINDS:
        raise ValueError(f"plugin kind {name!r} is registered twice")
    PLUGIN_KINDS[name] = PluginKind(name, placement, description, build)
    return PLUGIN_KINDS[name]


def plugin_kind(name: str) -> PluginKind:
    """The registered kind ``name``; a CTRError listing the kinds if there is none."""
    if name not in PLUGIN_KINDS:
        kinds = "; ".join(f"{k.name} ({k.description})" for k in PLUGIN_KINDS.values())
        raise CTRError(f"Unknown plugin_type {name!r}. The plugin kinds are: {kinds}.")
    return PLUGIN_KINDS[name]


def build_plugin(config: PluginConfig, hidden_size: int, context: PluginContext) -> Plugin:
    """The plugin module of kind ``config.plugin_type`` for one sublayer of width ``hidden_size``."""
    kind = plugin_kind(config.plugin_type)
    if kind.build is None:
        raise CTRError(f"plugin_type {kind.name!r} is not a sublayer plugin (its placement is {kind.placement!r}): nothing to build per sublayer.")
    return kind.build(config, hidden_size, context)


register_plugin_kind("none", "none", "nothing injected: the task heads on the encoder, frozen or fine-tuned")
