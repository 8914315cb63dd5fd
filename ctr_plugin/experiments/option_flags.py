"""The options of a run, and one command-line flag each: the fields of ``TrainingConfig`` and
``PluginConfig``, typed, described and ranged by their dataclass fields (``ctr_plugin.options``).

The commands build their parsers from here, and ``settings.py`` merges the values given. Neither
dataclass imports torch, and nor does this module, so a command's ``--help`` loads no model
library. A method's own options are no flags (``--method-arg KEY=VALUE``: the method reads them).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.options import kind_of, rule_of
from ctr_plugin.plugins.config import PluginConfig

TRAINING_FIELDS = {f.name: f for f in dataclasses.fields(TrainingConfig)}
PLUGIN_FIELDS = {f.name: f for f in dataclasses.fields(PluginConfig)}
# Fields that are no settings of a run's numbers: which plugin the method uses, and progress
# bars (--no-progress); they have no flag of their own.
NOT_OPTIONS = {name for name, f in (TRAINING_FIELDS | PLUGIN_FIELDS).items() if not f.metadata.get("flag", True)}
TRAINING_OPTIONS = [f for f in TRAINING_FIELDS.values() if f.name not in NOT_OPTIONS]
PLUGIN_OPTIONS = [f for f in PLUGIN_FIELDS.values() if f.name not in NOT_OPTIONS]
OPTION_NAMES = {f.name for f in TRAINING_OPTIONS + PLUGIN_OPTIONS}
TRAINING_NAMES = {f.name for f in TRAINING_OPTIONS}
PLUGIN_NAMES = {f.name for f in PLUGIN_OPTIONS}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_option_flags(
    parser: argparse.ArgumentParser,
    only: set[str] | None = None,
    default_training: dict[str, Any] | None = None,
    default_config: str = "",
) -> None:
    """One flag per training and plugin option (``--warmup-ratio``, ``--train-layernorm`` /
    ``--no-train-layernorm``, ...), typed, described and ranged by the dataclass field; none has
    a default, so a flag that was not given leaves the option to the config. ``only`` restricts
    the flags added. ``default_training``: the ``training:`` block of ``default_config``, the
    config a command reads when none is named; the help then shows, per option, the value such a
    run uses (that block's, else the dataclass default), and the dataclass default beside it where
    they differ (what another config that sets nothing gets)."""
    hints = typing.get_type_hints(TrainingConfig) | typing.get_type_hints(PluginConfig)
    default_training = default_training or {}
    where = (
        f"the value shown: without --config, the `training:` block of {default_config} "
        "where it names one, else the built-in value; under --config FILE, that file's `training:` block, "
        "else the built-in value"
        if default_training
        else "the config's `training:` block, else the value shown"
    )
    for title, options in (("training options", TRAINING_OPTIONS), ("plugin options", PLUGIN_OPTIONS)):
        group = parser.add_argument_group(f"{title} (default: {where})")
        for f in options:
            if only is not None and f.name not in only:
                continue
            rule = rule_of(f)
            if f.name in default_training and default_training[f.name] != f.default:
                default = f"Default {default_training[f.name]!r} (from {default_config}; built-in {f.default!r})"
            else:
                default = f"Default {f.default!r}"
            help_text = f"{f.metadata['help']}. {default}" + (f"; {rule.describe()}" if rule else "")
            help_text = help_text.replace("%", "%%")
            kind, choices = kind_of(f), f.metadata.get("choices")
            if kind == "bool":
                group.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
            elif kind == "ints":
                group.add_argument(flag(f.name), type=int, nargs="+", metavar="N", help=help_text)
            else:
                hint = hints[f.name]
                group.add_argument(
                    flag(f.name),
                    type=hint if hint in (int, float) else str,
                    choices=choices,
                    metavar=None if choices else f.name.upper(),
                    help=help_text,
                )


def option_flags_given(args: argparse.Namespace) -> dict[str, Any]:
    """The training and plugin options given as flags (those not given are left out)."""
    given = {name: getattr(args, name) for name in sorted(OPTION_NAMES) if getattr(args, name, None) is not None}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
