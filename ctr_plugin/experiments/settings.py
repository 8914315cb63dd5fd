"""One path from what a user wrote to a run's settings: every command builds them here.

A training or plugin option (the fields of ``TrainingConfig`` and ``PluginConfig``) may come
from four places; each overrides the ones before it:

1. the dataclass default;
2. the sequence config's ``training:`` block;
3. the tuned-options file (``--tuned``), for the method being run;
4. the command line: one flag per option, generated from the dataclasses (``option_flags.py``).

A method's own options (``--method-arg key=value``) come from their defaults, then the tuned file,
then ``--method-arg``. Every value is read by the type its field declares and checked once, when
the configs and the method are built (``ctr_plugin.options``).

Overriding is meant in that order, with three exceptions, where two sources giving different
values for one setting is an error naming both (a silent choice would mislabel the run):

* a flag or ``--method-arg`` that contradicts the tuned value it would replace;
* a plugin option the method fixes (``adapter_one``: ``train_layernorm`` false; ``ctr_linear_up``:
  ``tsm_activation`` none) set otherwise by the config, the tuned file or a flag;
* a plugin flag that contradicts the checkpoint a run continues (``--from-checkpoint``): the
  checkpoint's plugins were built with its own options.

:func:`select_tasks` applies the task order and the caps the commands take (``--order``,
``--max-train-per-task``, ``--max-test-per-task``) to a sequence.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ctr_plugin.continual.methods import get_method, method_class
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.config import SequenceConfig, sequence_orders
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.option_flags import (
    OPTION_NAMES,
    PLUGIN_FIELDS,
    PLUGIN_NAMES,
    TRAINING_FIELDS,
    TRAINING_NAMES,
    flag,
)
from ctr_plugin.experiments.run import RunSettings
from ctr_plugin.options import kind_of, parse
from ctr_plugin.plugins.config import PluginConfig


class _Layers:
    """Values by option, each with the source that gave it, merged in order of precedence. Each
    value is read by its field's type (``fields``) as it comes in, so "1e-3" and 0.001 agree."""

    def __init__(self, fields: dict[str, dataclasses.Field]) -> None:
        self.fields = fields
        self.values: dict[str, tuple[Any, str]] = {}

    def add(self, values: dict[str, Any], source: str, contradicts: tuple[str, ...] = ()) -> None:
        """``values`` from ``source`` override what is there, except a value from one of the
        sources in ``contradicts``: a different value replacing it is an error."""
        for key, value in values.items():
            if key in self.fields:
                value = parse(value, kind_of(self.fields[key]))
            if key in self.values:
                old, old_source = self.values[key]
                if old_source in contradicts and old != value:
                    raise CTRError(
                        f"{source} sets {key}={value}, which contradicts the tuned value {key}={old} ({old_source}). "
                        f"Drop one of them: the flag to use the tuned value, or --tuned to set it yourself."
                    )
            self.values[key] = (value, source)

    def plain(self) -> dict[str, Any]:
        return {k: v for k, (v, _) in self.values.items()}


def _resolve(
    method_class,
    config_training: dict | None,
    config_name: str,
    flags: dict | None,
    method_args: dict | None,
    tuned: str | None,
    extra_training: dict,
):
    """(TrainingConfig, PluginConfig, method options) by the order and rules of the module doc;
    ``method_class`` None: the options every method starts from (no tuned file, no method)."""
    unknown = sorted(set(config_training or {}) - OPTION_NAMES)
    if unknown:
        raise CTRError(
            f"Unknown training option(s) {unknown} in {config_name}. Valid options: {', '.join(sorted(OPTION_NAMES))}."
        )
    options = _Layers(TRAINING_FIELDS | PLUGIN_FIELDS)
    own = _Layers({f.name: f for f in dataclasses.fields(method_class)} if method_class is not None else {})
    options.add(config_training or {}, f"{config_name} (`training:`)")
    tuned_source = f"the tuned options in {tuned}"
    if tuned and method_class is not None:
        from ctr_plugin.experiments.tuning import tuned_options

        tuned_training, tuned_method = tuned_options(tuned, method_class.name)
        options.add(tuned_training, tuned_source)
        own.add(tuned_method, tuned_source)
    options.add(
        {k: v for k, v in (flags or {}).items() if k in OPTION_NAMES}, "The command line", contradicts=(tuned_source,)
    )
    own.add(method_args or {}, "--method-arg", contradicts=(tuned_source,))
    if method_class is not None:
        _fix_plugin_options(method_class, options)
    values = options.plain()
    training = TrainingConfig(**{k: v for k, v in values.items() if k in TRAINING_NAMES} | extra_training)
    plugin = PluginConfig(**{k: v for k, v in values.items() if k not in TRAINING_NAMES})
    return training, plugin, own.plain()


def _fix_plugin_options(method_class, options: _Layers) -> None:
    """Put the plugin options the method fixes into ``options``; a contradiction is an error."""
    name = method_class.name
    for key, value in method_class.fixed_plugin_options.items():
        if key in options.values and options.values[key][0] != value:
            given, source = options.values[key]
            raise CTRError(
                f"Method {name!r} runs with the plugin option {key}={value} "
                f"(see its file in ctr_plugin/continual/methods/), but {source} sets {key}={given}. "
                "Drop that setting, or choose another method."
            )
        options.values[key] = (value, f"method {name!r}")


def base_options(
    config_training: dict | None = None, config_name: str = "the config", flags: dict | None = None, **training: Any
) -> tuple[TrainingConfig, PluginConfig]:
    """The training and plugin options every method starts from (config, then flags, then
    ``training`` keyword values such as ``seed`` and ``progress``): what tuning and validation
    sweeps vary per method or trial."""
    train, plugin, _ = _resolve(None, config_training, config_name, flags, None, None, training)
    return train, plugin


def build_settings(
    method: str | None,
    *,
    config_training: dict | None = None,
    config_name: str = "the config",
    flags: dict | None = None,
    method_args: dict | None = None,
    tuned: str | None = None,
    progress: bool = True,
    **run: Any,
) -> RunSettings:
    """A run's :class:`RunSettings` from the config's ``training:`` block, the tuned-options file,
    the command-line flags and ``--method-arg`` values, in the order and with the conflicts of the
    module doc; every value is checked here, and the method is built with its options. ``method``
    None: the method of the checkpoint ``run["from_checkpoint"]`` continues, else ``ctr``.
    ``run``: the other fields of RunSettings (encoder, device, output choices ...)."""
    if run.get("from_checkpoint"):
        method = _continued_method(run["from_checkpoint"], method, flags or {})
    method = method or "ctr"
    training, plugin, method_options = _resolve(
        method_class(method), config_training, config_name, flags, method_args, tuned, {"progress": progress}
    )
    return RunSettings(method=get_method(method, method_options), training=training, plugin=plugin, **run)


def _continued_method(checkpoint: str, method: str | None, flags: dict) -> str | None:
    """The method of a run continuing ``checkpoint``: ``method``, else the checkpoint's. A plugin
    flag that contradicts the checkpoint is refused (its plugins were built with its own); the
    run checks the method against the checkpoint's."""
    from ctr_plugin.modeling.model import ContinualModel

    config = ContinualModel.read_config(checkpoint)
    stored = config.get("plugin") or {}
    conflicts = [
        f"{flag(key)} {value} (the checkpoint has {stored[key]})"
        for key, value in sorted(flags.items())
        if key in PLUGIN_NAMES and key in stored and parse(stored[key], kind_of(PLUGIN_FIELDS[key])) != value
    ]
    if conflicts:
        raise CTRError(
            f"--from-checkpoint {checkpoint} continues a model built with other settings: {'; '.join(conflicts)}. "
            f"A continued run keeps the checkpoint's method and plugin sizes: drop those flags, or train from scratch."
        )
    return method or config.get("method")


def select_tasks(
    sequence: SequenceConfig,
    order: int | None = None,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
    test_cap_from_config: bool = True,
    max_validation: int | None = None,
) -> SequenceConfig:
    """``sequence`` with its tasks in permutation ``order`` of its orders file (None: as listed),
    capped at ``max_train``, ``max_validation`` and ``max_test`` examples per task (None: the
    config's caps; with ``test_cap_from_config`` False, a test split is not capped unless
    ``max_test`` says so)."""
    for name, cap in (
        ("--max-train-per-task", max_train),
        ("--max-validation-per-task", max_validation),
        ("--max-test-per-task", max_test),
    ):
        if cap is not None and cap < 2:
            raise CTRError(f"{name} must be at least 2 (a task needs both classes), got {cap}.")
    caps = {"max_train": max_train, "max_validation": max_validation, "max_test": max_test}
    caps = {k: v for k, v in caps.items() if v is not None or (k == "max_test" and not test_cap_from_config)}
    tasks = [dataclasses.replace(spec, **caps) for spec in sequence.tasks]
    if order is not None:
        orders = sequence_orders(sequence, "--order")
        if not 0 <= order < len(orders):
            raise CTRError(f"--order {order} is out of range: {sequence.orders_file} has orders 0..{len(orders) - 1}.")
        tasks = [tasks[i] for i in orders[order]]
    return dataclasses.replace(sequence, tasks=tasks)
