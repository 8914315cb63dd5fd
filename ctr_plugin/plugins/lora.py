"""LoRA (Hu et al. 2022) through peft, as two plugin kinds: ``lora`` (one set of LoRA weights on
the attention projections peft targets for the architecture, trained task after task:
``lora_ncl``) and ``lora_per_task`` (one named LoRA adapter per task, each example through its own:
``lora_one``; an adapter is added per task, and a forward pre-hook on each LoRA layer chooses them
per example).

Which modules LoRA goes on is peft's own fact, ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``
by the encoder's ``config.model_type`` (``query``/``value`` for BERT and RoBERTa,
``query_proj``/``value_proj`` for DeBERTa-v2), unless ``PluginConfig.lora_target_modules`` names
them; an architecture peft has no entry for (DistilBERT, ModernBERT) needs them named.

Unlike the sublayer plugins, LoRA is no :class:`~ctr_plugin.plugins.Plugin` module: peft wraps the
projections in place. :func:`lora_disabled` bypasses the LoRA layers for a while and
:func:`remove_lora` puts the encoder's own projections back (peft's ``disable_adapter`` and
``unload``); :func:`delete_lora_task` deletes one task's adapter of ``lora_per_task``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from torch import nn

from ctr_plugin.errors import CTRError
from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.kinds import PluginKind

if TYPE_CHECKING:  # hints only: PluginConfig checks its kind against the registry, which names this module
    from ctr_plugin.modeling.model import ContinualModel
    from ctr_plugin.plugins.config import PluginConfig


def inject_lora(encoder: nn.Module, config: PluginConfig, adapter_name: str = "default") -> None:
    """LoRA (Hu et al. 2022) of rank ``config.lora_rank`` on the modules :func:`lora_target_modules`
    names, in place, through peft, as the adapter ``adapter_name`` (another name adds one more
    adapter beside the first); everything else in the encoder stays frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    if missing := missing_lora_targets(encoder, config):
        raise CTRError(f"The encoder {type(encoder).__name__} has no {missing}.")
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules=lora_target_modules(encoder, config),
    )
    inject_adapter_in_model(lora, encoder, adapter_name=adapter_name)


def lora_target_modules(encoder: nn.Module, config: PluginConfig) -> list[str]:
    """The names (or name suffixes) of the modules LoRA goes on: ``config.lora_target_modules``
    if given, else peft's targets for the encoder's ``model_type`` (none if peft has no entry)."""
    if config.lora_target_modules:
        return list(config.lora_target_modules)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(encoder, "config", None), "model_type", None)
    return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type, []))


def lora_targets(encoder: nn.Module, config: PluginConfig) -> list[str]:
    """The full names of the encoder's modules LoRA goes on (matched as peft matches
    ``target_modules``: the whole name or its last dotted parts)."""
    targets = lora_target_modules(encoder, config)
    return [
        n
        for n, m in encoder.named_modules()
        if any(n == t or n.endswith(f".{t}") for t in targets) and (isinstance(m, nn.Linear) or _is_lora(m))
    ]


def missing_lora_targets(encoder: nn.Module, config: PluginConfig) -> str | None:
    """What ``encoder`` lacks for LoRA as ``config`` places it (a phrase), or None."""
    if lora_targets(encoder, config):
        return None
    model_type = getattr(getattr(encoder, "config", None), "model_type", None)
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in encoder.named_modules() if isinstance(m, nn.Linear)})
    own = f"its linear layers are named {', '.join(linear)}" if linear else "it has no linear layers"
    targets = lora_target_modules(encoder, config)
    if targets:
        source = "PluginConfig.lora_target_modules" if config.lora_target_modules else "peft's LoRA targets"
        return f"linear modules named {', '.join(map(repr, targets))} ({source}) for LoRA to go on ({own})"
    return (
        f"LoRA targets: peft's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING has no entry for model type "
        f"{model_type!r} and PluginConfig.lora_target_modules names none ({own}: name the attention projections, "
        f"e.g. PluginConfig(lora_target_modules=[...]))"
    )


def _is_lora(module: nn.Module) -> bool:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return False
    return isinstance(module, LoraLayer)


def lora_layers(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's peft LoRA layers (none unless ``plugin_type`` is "lora" or "lora_per_task")."""
    return [m for m in encoder.modules() if _is_lora(m)]


@contextlib.contextmanager
def lora_disabled(encoder: nn.Module) -> Iterator[None]:
    """Inside the block every LoRA layer of ``encoder`` runs its base layer alone (peft's
    ``enable_adapters(False)``); afterwards each is enabled again with the trainability it had."""
    layers = lora_layers(encoder)
    trainable = [(p, p.requires_grad) for layer in layers for p in layer.parameters()]
    enabled = [not layer.disable_adapters for layer in layers]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer, was_enabled in zip(layers, enabled):
            layer.enable_adapters(was_enabled)
        for param, flag in trainable:
            param.requires_grad_(flag)


def remove_lora(encoder: nn.Module) -> None:
    """Put the encoder's own projection back in the place of every LoRA layer (peft's ``unload``,
    without merging) and forget peft's config on the encoder."""
    for name, layer in [(n, m) for n, m in encoder.named_modules() if _is_lora(m)]:
        parent, _, child = name.rpartition(".")
        setattr(encoder.get_submodule(parent), child, layer.get_base_layer())
    if "peft_config" in vars(encoder):
        del encoder.peft_config


def delete_lora_task(encoder: nn.Module, task: int, num_tasks: int) -> None:
    """Delete the adapter ``task_<task>`` of every LoRA layer and give each later task's adapter
    the name of its new task id (``task_<id - 1>``), everywhere peft keeps adapters by name."""
    names = {f"task_{t}": (f"task_{t - 1}" if t > task else f"task_{t}") for t in range(num_tasks) if t != task}

    def renamed(container) -> None:
        items = [(names[k], v) for k, v in container.items() if k in names]
        container.clear()
        container.update(items)

    merged = sorted({a for layer in lora_layers(encoder) for a in layer.merged_adapters})
    if merged:
        raise CTRError(f"LoRA adapters {merged} are merged into the encoder: unmerge them before deleting a task.")
    for layer in lora_layers(encoder):
        for attr in (*layer.adapter_layer_names, *layer.other_param_names):
            container = getattr(layer, attr, None)
            if hasattr(container, "items") and len(container):
                renamed(container)
        active = [names[a] for a in layer.active_adapters if a in names] or list(layer.lora_A)[-1:]
        layer._active_adapter = active  # peft's own attribute; set_adapter would change what trains
    if isinstance(getattr(encoder, "peft_config", None), dict):
        renamed(encoder.peft_config)


class LoraKind(PluginKind):
    """peft LoRA on the attention projections peft targets for the architecture, one set shared by all tasks."""

    placement: ClassVar[str] = "lora"

    def inject(self, model: ContinualModel) -> None:
        inject_lora(model.encoder, model.plugin_config)

    def missing(self, encoder: nn.Module, hidden_size: int, config: PluginConfig) -> str | None:
        return missing_lora_targets(encoder, config)

    def disabled(self, model: ContinualModel) -> contextlib.AbstractContextManager:
        return lora_disabled(model.encoder)

    def remove(self, model: ContinualModel) -> None:
        remove_lora(model.encoder)

    def saved_prefixes(self, model: ContinualModel) -> list[str]:
        names = {id(m): n for n, m in model.named_modules()}
        return [f"{names[id(m)]}.{part}." for m in lora_layers(model.encoder) for part in ("lora_A", "lora_B")]


class LoraPerTaskKind(LoraKind):
    """One peft LoRA adapter per task, named ``task_<id>``, added when the task is; earlier tasks'
    adapters are frozen. Each LoRA layer learns, through a forward pre-hook, which adapter each
    example of a batch takes (peft's per-example ``adapter_names``), so one batch may mix tasks."""

    placement: ClassVar[str] = "lora_per_task"

    def inject(self, model: ContinualModel) -> None:
        """Nothing yet: each task brings its adapter."""

    def delete_task(self, model: ContinualModel, task: int) -> None:
        delete_lora_task(model.encoder, task, model.num_tasks)

    def add_task(self, model: ContinualModel, task: int) -> None:
        with warnings.catch_warnings():  # peft warns that a second adapter makes several: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject_lora(model.encoder, model.plugin_config, adapter_name=f"task_{task}")
        for layer in lora_layers(model.encoder):
            for adapters in (layer.lora_A, layer.lora_B):
                for name, module in adapters.items():
                    module.requires_grad_(name == f"task_{task}")
                    module.to(model.device)
            if not getattr(layer, "_ctr_adapter_hook", False):
                layer.register_forward_pre_hook(partial(_choose_adapters, model.context), with_kwargs=True)
                layer._ctr_adapter_hook = True


def _choose_adapters(context: PluginContext, _module, args, kwargs):
    if context.task_ids is not None:
        kwargs["adapter_names"] = [f"task_{t}" for t in context.task_ids.tolist()]
    return args, kwargs


# the kinds "lora" and "lora_per_task" (named in plugins/registry.py's SHIPPED_KINDS)
LORA_KIND = LoraKind(
    "lora",
    "peft LoRA on the attention projections (peft's targets for the architecture), shared by all tasks",
    default_method="lora_ncl",
)
LORA_PER_TASK_KIND = LoraPerTaskKind(
    "lora_per_task",
    "one peft LoRA adapter per task on the attention projections, chosen per example",
    default_method="lora_one",
)
