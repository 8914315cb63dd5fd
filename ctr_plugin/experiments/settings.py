"""One path from what a user wrote to a run's settings: every command builds them here.

A training or plugin option (the fields of ``TrainingConfig`` and ``PluginConfig``) may come
from four places; each overrides the ones before it:

1. the dataclass default;
2. the sequence config's ``training:`` block;
3. the tuned-options file (``--tuned``), for the method being run;
4. the command line: one flag per option, generated from the dataclasses (:func:`add_option_flags`).

A method's own options (``--method-arg key=value``) come from their defaults, then the tuned file,
then ``--method-arg``.

Overriding is meant in that order, with three exceptions, where two sources giving different
values for one setting is an error naming both (a silent choice would mislabel the run):

* a flag or ``--method-arg`` that contradicts the tuned value it would replace;
* a plugin option the method fixes (``adapter_one``: ``train_layernorm`` false; ``ctr_linear_up``:
  ``tsm_activation`` none) set otherwise by the config, the tuned file or a flag;
* a plugin option one of the method's options sets (``lora_*``: ``lora_rank`` is ``rank``,
  ``lora_alpha`` is ``alpha``) given both ways with different values; given one way, it sets both.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from typing import Any

from ctr_plugin.continual.loop import TrainingConfig
from ctr_plugin.continual.methods import METHODS, get_method
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.run import RunSettings
from ctr_plugin.options import PLUGIN_RANGES, TRAINING_RANGES, convert_option_strings
from ctr_plugin.plugins import PluginConfig

# Options that are no settings of a run's numbers: which plugin the method uses, and progress
# bars (--no-progress).
NOT_OPTIONS = {"plugin_type", "progress"}
TRAINING_OPTIONS = [f for f in dataclasses.fields(TrainingConfig) if f.name not in NOT_OPTIONS]
PLUGIN_OPTIONS = [f for f in dataclasses.fields(PluginConfig) if f.name not in NOT_OPTIONS]
OPTION_NAMES = {f.name for f in TRAINING_OPTIONS + PLUGIN_OPTIONS}
TRAINING_NAMES = {f.name for f in TRAINING_OPTIONS}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_comments(cls) -> dict[str, str]:
    """The comment beside each field in the dataclass's source: its one-line help."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^=]+= .*?#\s*(.+)$", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def add_option_flags(parser: argparse.ArgumentParser, only: set[str] | None = None) -> None:
    """One flag per training and plugin option (``--warmup-ratio``, ``--train-layernorm`` /
    ``--no-train-layernorm``, ...), typed from the dataclass field; none has a default, so a flag
    that was not given leaves the option to the config. ``only`` restricts the flags added."""
    hints = typing.get_type_hints(TrainingConfig) | typing.get_type_hints(PluginConfig)
    comments = _field_comments(TrainingConfig) | _field_comments(PluginConfig)
    for title, options, defaults in (("training options", TRAINING_OPTIONS, TrainingConfig()), ("plugin options", PLUGIN_OPTIONS, PluginConfig())):
        group = parser.add_argument_group(f"{title} (default: the config's `training:` block, else the value shown)")
        for f in options:
            if only is not None and f.name not in only:
                continue
            default = getattr(defaults, f.name)
            rule = (TRAINING_RANGES | PLUGIN_RANGES).get(f.name)
            help_text = (f"{comments[f.name]}. " if f.name in comments else "") + f"Default {default!r}" + (f"; {rule.describe()}" if rule else "")
            help_text = help_text.replace("%", "%%")
            hint = hints[f.name]
            if hint is bool:
                group.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
            elif typing.get_origin(hint) is tuple:
                group.add_argument(flag(f.name), type=int, nargs="+", metavar="N", help=help_text)
            else:
                choices = _choices(f.name)
                group.add_argument(flag(f.name), type=hint if hint in (int, float) else str, choices=choices, metavar=None if choices else f.name.upper(), help=help_text)


def _choices(name: str) -> tuple[str, ...] | None:
    from ctr_plugin.plugins.base import POOLINGS, TSM_ACTIVATIONS

    return {"pooling": POOLINGS, "tsm_activation": TSM_ACTIVATIONS}.get(name)


def option_flags_given(args: argparse.Namespace) -> dict[str, Any]:
    """The training and plugin options given as flags (those not given are left out)."""
    given = {name: getattr(args, name) for name in sorted(OPTION_NAMES) if getattr(args, name, None) is not None}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return list(a) == list(b)
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a).lower() == str(b).lower()


class _Layers:
    """Values by option, each with the source that gave it, merged in order of precedence."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[Any, str]] = {}

    def add(self, values: dict[str, Any], source: str, contradicts: tuple[str, ...] = ()) -> None:
        """``values`` from ``source`` override what is there, except a value from one of the
        sources in ``contradicts``: a different value replacing it is an error."""
        for key, value in values.items():
            if key in self.values:
                old, old_source = self.values[key]
                if old_source in contradicts and not _same(old, value):
                    raise CTRError(
                        f"{source} sets {key}={value}, which contradicts the tuned value {key}={old} ({old_source}). "
                        f"Drop one of them: the flag to use the tuned value, or --tuned to set it yourself."
                    )
            self.values[key] = (value, source)

    def plain(self) -> dict[str, Any]:
        return {k: v for k, (v, _) in self.values.items()}


def _resolve(method_class, config_training: dict | None, config_name: str, flags: dict | None, method_args: dict | None, tuned: str | None, extra_training: dict):
    """(TrainingConfig, PluginConfig, method options) by the order and rules of the module doc;
    ``method_class`` None: the options every method starts from (no tuned file, no method)."""
    unknown = sorted(set(config_training or {}) - OPTION_NAMES)
    if unknown:
        raise CTRError(f"Unknown training option(s) {unknown} in {config_name}. Valid options: {', '.join(sorted(OPTION_NAMES))}.")
    options, own = _Layers(), _Layers()
    options.add(convert_option_strings(config_training or {}, TRAINING_RANGES | PLUGIN_RANGES), f"{config_name} (`training:`)")  # YAML 1.1 reads 1e-3 as a string
    tuned_source = f"the tuned options in {tuned}"
    if tuned and method_class is not None:
        from ctr_plugin.experiments.tuning import tuned_options

        tuned_training, tuned_method = tuned_options(tuned, method_class.name)
        options.add(tuned_training, tuned_source)
        own.add(tuned_method, tuned_source)
    options.add({k: v for k, v in (flags or {}).items() if k in OPTION_NAMES}, "The command line", contradicts=(tuned_source,))
    own.add(method_args or {}, "--method-arg", contradicts=(tuned_source,))
    if method_class is not None:
        _apply_method_decisions(method_class, options, own)
    values = options.plain()
    training = TrainingConfig(**{k: v for k, v in values.items() if k in TRAINING_NAMES} | extra_training)
    plugin = PluginConfig(**{k: v for k, v in values.items() if k not in TRAINING_NAMES})
    return training, plugin, own.plain()


def base_options(config_training: dict | None = None, config_name: str = "the config", flags: dict | None = None, **training: Any) -> tuple[TrainingConfig, PluginConfig]:
    """The training and plugin options every method starts from (config, then flags, then
    ``training`` keyword values such as ``seed`` and ``progress``): what tuning and validation
    sweeps vary per method or trial."""
    train, plugin, _ = _resolve(None, config_training, config_name, flags, None, None, training)
    return train, plugin


def build_settings(
    method: str,
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
    module doc. ``run``: the other fields of RunSettings (encoder, device, output choices ...)."""
    if method not in METHODS:
        get_method(method)  # the error that lists the methods
    training, plugin, method_options = _resolve(METHODS[method], config_training, config_name, flags, method_args, tuned, {"progress": progress})
    get_method(method, method_options)  # an unknown option or a bad value fails now
    return RunSettings(method=method, method_options=method_options, training=training, plugin=plugin, **run)


def _apply_method_decisions(method_class, options: _Layers, own: _Layers) -> None:
    """Put the plugin options the method decides into ``options``; a contradiction is an error."""
    name = method_class.name
    for key, value in method_class.fixed_plugin_options.items():
        if key in options.values and not _same(options.values[key][0], value):
            given, source = options.values[key]
            raise CTRError(
                f"Method {name!r} runs with the plugin option {key}={value} (see its file in ctr_plugin/continual/methods/), but "
                f"{source} sets {key}={given}. Drop that setting, or choose another method."
            )
        options.values[key] = (value, f"method {name!r}")
    defaults = {f.name: f.default for f in dataclasses.fields(method_class)}
    for key, mine in method_class.plugin_options_from.items():
        in_options, in_own = key in options.values, mine in own.values
        if in_options and in_own and not _same(options.values[key][0], own.values[mine][0]):
            raise CTRError(
                f"Method {name!r} takes `{key}` from its option `{mine}`: {own.values[mine][1]} sets {mine}={own.values[mine][0]}, "
                f"but {options.values[key][1]} sets {key}={options.values[key][0]}. Give one value, in one place."
            )
        if in_options and not in_own:
            own.values[mine] = options.values[key]
        elif not in_options:
            options.values[key] = own.values.get(mine, (defaults[mine], f"method {name!r}"))
