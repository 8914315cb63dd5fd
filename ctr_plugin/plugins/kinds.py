"""What a plugin kind is: an object with behaviour (peft's tuner classes, in small), which the
registry (``registry.py``) finds by the name a :class:`~ctr_plugin.plugins.config.PluginConfig`'s
``plugin_type`` gives.

A kind knows

* how it is put into a ``ContinualModel``'s encoder (:meth:`PluginKind.inject`),
* what it does when the model takes one more task (:meth:`PluginKind.add_task`),
* which parts of the model a checkpoint holds for it (:meth:`PluginKind.saved_prefixes`),
* what the encoder must have for it (:meth:`PluginKind.missing`), and how it is bypassed
  (:meth:`PluginKind.disabled`), taken out again (:meth:`PluginKind.remove`) and how one task's
  parts are deleted (:meth:`PluginKind.delete_task`, after :meth:`PluginKind.delete_task_refused`),
* whether HAT masks it (``hat_masked``: training it outside HAT's rules forgets, and warns),
* and the method that trains it when none is named (``default_method``).

The classes by placement: :class:`PluginKind` itself injects nothing (:data:`NO_PLUGINS`, ``"none"``:
heads only, or full fine-tuning); :class:`SublayerKind` puts a :class:`~ctr_plugin.plugins.plugin.Plugin`
module into every output sublayer (``injection.py``); the LoRA kinds (``lora.py``) wrap the attention
projections through peft. Each shipped kind is an object beside its class (``CTR_KIND`` and
``HAT_ADAPTER_KIND`` in ``ctr_layer.py``, and so on), named in the registry's table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from torch import nn

from ctr_plugin.plugins.injection import (
    inject_plugins,
    places_wanted,
    plugged_places,
    plugin_places,
    plugins_disabled,
    remove_plugins,
)

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel
    from ctr_plugin.plugins.config import PluginConfig
    from ctr_plugin.plugins.context import PluginContext
    from ctr_plugin.plugins.plugin import Plugin


class PluginKind:
    """A plugin kind that injects nothing: the task heads read the encoder as it is."""

    placement: ClassVar[str] = "none"
    build: Callable[[PluginConfig, int, PluginContext], Plugin] | None = None  # a sublayer kind's plugin module

    def __init__(self, name: str, description: str, default_method: str | None = None, hat_masked: bool = False):
        self.name = name
        self.description = description
        self.default_method = (
            default_method  # the method (a name in continual.methods.METHODS) that trains it by default
        )
        self.hat_masked = hat_masked

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, placement={self.placement!r}, "
            f"default_method={self.default_method!r})"
        )

    def inject(self, model: ContinualModel) -> None:
        """Put this kind's modules into ``model.encoder`` (once, when the model is built)."""

    def add_task(self, model: ContinualModel, task: int) -> None:
        """Grow for the model's new task ``task`` (called before its head is added)."""

    def saved_prefixes(self, model: ContinualModel) -> list[str]:
        """Prefixes of the ``model.state_dict()`` keys a checkpoint holds for this kind (the heads
        and a fine-tuned encoder are the model's own)."""
        return []

    def missing(self, encoder: nn.Module, hidden_size: int, config: PluginConfig) -> str | None:
        """What ``encoder`` lacks for this kind's modules as ``config`` sizes them (a phrase), or
        None if it can carry them."""
        return None

    def delete_task_refused(self, model: ContinualModel, task: int) -> str | None:
        """Why deleting task ``task``'s parts would change the other tasks' outputs or cannot be
        done (a sentence), or None when :meth:`delete_task` may."""
        return None

    def delete_task(self, model: ContinualModel, task: int) -> None:
        """Remove task ``task``'s parts; the later tasks' parts take the ids one lower."""

    def disabled(self, model: ContinualModel) -> contextlib.AbstractContextManager:
        """A context inside which the encoder runs as if this kind had put nothing into it."""
        return contextlib.nullcontext()

    def remove(self, model: ContinualModel) -> None:
        """Take this kind's modules out of ``model.encoder`` again, leaving the encoder's own modules."""


class SublayerKind(PluginKind):
    """A :class:`~ctr_plugin.plugins.Plugin` module at every place of the encoder (the end of
    each attention and feed-forward sublayer: ``injection.py``), built by
    ``build(config, hidden_size, context)``; the norm of each place is trained with
    ``train_layernorm``."""

    placement: ClassVar[str] = "sublayer"

    def __init__(
        self,
        name: str,
        description: str,
        build: Callable[[PluginConfig, int, PluginContext], Plugin],
        default_method: str | None = None,
        hat_masked: bool = False,
    ):
        super().__init__(name, description, default_method, hat_masked)
        self.build = build

    def inject(self, model: ContinualModel) -> None:
        config = model.plugin_config
        norms = inject_plugins(
            model.encoder, model.hidden_size, lambda: self.build(config, model.hidden_size, model.context)
        )
        for norm in norms:
            norm.requires_grad_(config.train_layernorm or model.train_encoder)

    def add_task(self, model: ContinualModel, task: int) -> None:
        for plugin in model.plugins:
            plugin.add_task()
            plugin.to(model.device)

    def missing(self, encoder: nn.Module, hidden_size: int, config: PluginConfig) -> str | None:
        if plugin_places(encoder, hidden_size):
            return None
        return f"{places_wanted(encoder, hidden_size)}, where the {self.name!r} plugins go"

    def delete_task_refused(self, model: ContinualModel, task: int) -> str | None:
        return next(filter(None, (plugin.task_removal_refused(task) for plugin in model.plugins)), None)

    def delete_task(self, model: ContinualModel, task: int) -> None:
        for plugin in model.plugins:
            plugin.remove_task(task)

    def disabled(self, model: ContinualModel) -> contextlib.AbstractContextManager:
        return plugins_disabled(model.encoder)

    def remove(self, model: ContinualModel) -> None:
        remove_plugins(model.encoder)

    def saved_prefixes(self, model: ContinualModel) -> list[str]:
        prefixes = []
        for place in plugged_places(model.encoder, model.hidden_size):
            prefixes.append(f"encoder.{place.output}.plugin.")
            if model.plugin_config.train_layernorm:
                prefixes.append(f"encoder.{place.norm}.")
        return prefixes


NO_PLUGINS = PluginKind(
    "none", "nothing injected: the task heads on the encoder, frozen or fine-tuned", default_method="frozen_heads"
)
