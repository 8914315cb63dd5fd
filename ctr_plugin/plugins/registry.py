"""The plugin kinds by name: what a :class:`~ctr_plugin.plugins.config.PluginConfig`'s
``plugin_type`` names (a kind is an object with behaviour: ``kinds.py``).

:data:`PLUGIN_KINDS` maps each name to its kind. The shipped kinds are named in the table
:data:`SHIPPED_KINDS` with the module that defines each and the kind's name there, and a kind's
module is imported on the first lookup of that kind, as transformers' auto mappings import a model's
module by its ``model_type``. So this module imports no torch: a ``PluginConfig`` checks its
``plugin_type`` against the names (:func:`check_plugin_type`), and a command builds its flags,
without loading a model library. The table is this module's only dependency on the kinds' modules,
and those never import it back (``tests/test_house.py`` counts a module named by a string as an
import, so a kind module that did would be an import circle).

A kind of your own is one registration::

    register_plugin_kind("scale", "sublayer", "halves every sublayer's output", Scale)

(or ``register_kind(SublayerKind(...))`` with a kind object of your own).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ctr_plugin.errors import CTRError

if TYPE_CHECKING:
    from ctr_plugin.plugins.config import PluginConfig
    from ctr_plugin.plugins.context import PluginContext
    from ctr_plugin.plugins.kinds import PluginKind
    from ctr_plugin.plugins.plugin import Plugin

# name -> (the module that defines the kind, the kind's name there); the order is the one the kinds
# are listed in
SHIPPED_KINDS: dict[str, tuple[str, str]] = {
    "none": ("ctr_plugin.plugins.kinds", "NO_PLUGINS"),
    "adapter": ("ctr_plugin.plugins.adapter", "ADAPTER_KIND"),
    "adapter_per_task": ("ctr_plugin.plugins.adapter", "ADAPTER_PER_TASK_KIND"),
    "ctr": ("ctr_plugin.plugins.ctr_layer", "CTR_KIND"),
    "hat_adapter": ("ctr_plugin.plugins.ctr_layer", "HAT_ADAPTER_KIND"),
    "lora": ("ctr_plugin.plugins.lora", "LORA_KIND"),
    "lora_per_task": ("ctr_plugin.plugins.lora", "LORA_PER_TASK_KIND"),
}


class KindTable(Mapping[str, "PluginKind"]):
    """Name -> :class:`~ctr_plugin.plugins.kinds.PluginKind`: the shipped kinds (each loaded from
    its module when first looked up), then the kinds registered at run time. Knowing a name
    (``in``, iteration) loads nothing; reading a kind loads its module."""

    def __init__(self, shipped: dict[str, tuple[str, str]]) -> None:
        self._shipped = dict(shipped)
        self._kinds: dict[str, PluginKind] = {}

    def __getitem__(self, name: str) -> PluginKind:
        if name not in self._kinds:
            module, attribute = self._shipped[name]  # a KeyError for a name it does not know, as a dict's
            self._kinds[name] = getattr(importlib.import_module(module), attribute)
        return self._kinds[name]

    def __setitem__(self, name: str, kind: PluginKind) -> None:
        self._kinds[name] = kind

    def __contains__(self, name: object) -> bool:
        return name in self._shipped or name in self._kinds

    def __iter__(self) -> Iterator[str]:
        return iter(self._shipped | self._kinds)

    def __len__(self) -> int:
        return len(self._shipped | self._kinds)


PLUGIN_KINDS = KindTable(SHIPPED_KINDS)


def register_kind(kind: PluginKind) -> PluginKind:
    """Register ``kind`` under its name (a second registration of a name is a mistake)."""
    if kind.name in PLUGIN_KINDS:
        raise ValueError(f"plugin kind {kind.name!r} is registered twice")
    PLUGIN_KINDS[kind.name] = kind
    return kind


def register_plugin_kind(
    name: str,
    placement: str,
    description: str,
    build=None,
    default_method: str | None = None,
    hat_masked: bool = False,
) -> PluginKind:
    """Register a plugin kind ``name`` placed as one of the kinds there are (``"none"``,
    ``"sublayer"``, ``"lora"``, ``"lora_per_task"``; ``"sublayer"``: ``build`` makes its module for
    one sublayer, ``build(config, hidden_size, context)``)."""
    from ctr_plugin.plugins.kinds import SublayerKind

    placements: dict[str, type[PluginKind]] = {}
    for kind in PLUGIN_KINDS.values():  # the placements of the kinds there are (this loads them)
        placements.setdefault(kind.placement, type(kind))
    if placement not in placements:
        raise ValueError(f"plugin kind {name!r}: placement must be one of {tuple(placements)}, not {placement!r}")
    cls = placements[placement]
    if (build is None) == issubclass(cls, SublayerKind):
        raise ValueError(f"plugin kind {name!r}: a sublayer plugin needs `build`, and only a sublayer plugin has one")
    args = (name, description, build) if build is not None else (name, description)
    return register_kind(cls(*args, default_method=default_method, hat_masked=hat_masked))


def check_plugin_type(name: str) -> None:
    """Nothing if ``name`` is a kind (shipped or registered; its module is not loaded), else a
    CTRError listing the kinds with what each does (loading them to say so)."""
    if name not in PLUGIN_KINDS:
        kinds = "; ".join(f"{k.name} ({k.description})" for k in PLUGIN_KINDS.values())
        raise CTRError(f"Unknown plugin_type {name!r}. The plugin kinds are: {kinds}.")


def plugin_kind(name: str) -> PluginKind:
    """The kind ``name`` (its module loaded); a CTRError listing the kinds if there is none."""
    check_plugin_type(name)
    return PLUGIN_KINDS[name]


def build_plugin(config: PluginConfig, hidden_size: int, context: PluginContext) -> Plugin:
    """The plugin module of kind ``config.plugin_type`` for one sublayer of width ``hidden_size``."""
    kind = plugin_kind(config.plugin_type)
    if kind.build is None:
        raise CTRError(
            f"plugin_type {kind.name!r} is not a sublayer plugin (its placement is {kind.placement!r}): "
            "nothing to build per sublayer."
        )
    return kind.build(config, hidden_size, context)
