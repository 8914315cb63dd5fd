"""Options with their type, range and help, and the one checker of their values.

Every option a user can set (a training or plugin option, a method's ``--method-arg``) is a
dataclass field declared with :func:`option`: its default, a one-line help and, where it has one,
its :class:`Range`; the field's annotation gives its type. :func:`check_fields` checks (and
converts) every field of such a dataclass from that declaration, and a bad value gets one
paragraph naming the option, the value and the range it must lie in.

Values written as strings (the command line, ``--method-arg``, YAML) are read by one function,
:func:`parse`. Numbers are read as the numbers they spell: YAML 1.1 (PyYAML) reads ``1e-3`` as the
string "1e-3", because it wants a dot in the mantissa (``1.0e-3``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ctr_plugin.errors import CTRError

log = logging.getLogger(__name__)

# The loop seeds numpy with seed * 1000 + task index, and numpy takes seeds below 2**32.
MAX_SEED = (2**32 - 1) // 1000 - 1
MANY_EPOCHS = 100  # more epochs per task than this gets a warning (a typo is likelier than a plan)
# The continual-learning scenarios (what each means and requires: ctr_plugin/data/scenarios.py).
SCENARIOS = ("task", "domain", "class")


@dataclass(frozen=True)
class Range:
    """What one option may be: a kind ("int", "float", "bool") and optional bounds."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: the value must be strictly above ``low``

    def describe(self) -> str:
        if self.kind == "bool":
            return "true or false"
        what = "a whole number" if self.kind == "int" else "a finite number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {_number(self.low)}")
        if self.high is not None:
            bounds.append(f"<= {_number(self.high)}")
        return what + (" " + " and ".join(bounds) if bounds else "")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def option(
    default: Any, help: str, range: Range | None = None, *, choices: tuple[str, ...] | None = None, flag: bool = True
) -> Any:
    """A dataclass field that is an option: its default, a one-line help, and its range (None:
    any value of the field's type). ``choices``: the values a text option takes; ``flag`` False:
    no command-line flag of its own."""
    return dataclasses.field(
        default=default, metadata={"help": help, "range": range, "choices": choices, "flag": flag}
    )


def kind_of(f: dataclasses.Field) -> str:
    """The kind of a field's values: "int", "float", "bool", "ints" (a tuple of whole numbers) or
    "str" (anything else), from its annotation."""
    annotation = str(getattr(f.type, "__name__", f.type)).replace(" ", "")
    if annotation.startswith("tuple[int"):
        return "ints"
    return annotation if annotation in ("int", "float", "bool") else "str"


def rule_of(f: dataclasses.Field) -> Range | None:
    """The range a field's values must lie in: its declared one, else any value of its type."""
    declared = f.metadata.get("range")
    if declared is not None:
        return declared
    kind = kind_of(f)
    return Range(kind) if kind in ("int", "float", "bool") else None


def parse(value: Any, kind: str) -> Any:
    """``value`` as a value of ``kind`` ("int", "float", "bool", "ints") where it spells one
    (strings, numpy scalars, 3.0 for an int, a list for "ints"); unchanged where it does not (the
    range check then names it)."""
    if kind == "ints":
        return tuple(parse(v, "int") for v in value) if isinstance(value, list | tuple) else value
    if kind == "bool":
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        return value
    if kind not in ("int", "float") or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if kind == "int" and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            return value
    if kind == "int" and isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return int(value) if math.isfinite(value) and float(value).is_integer() else value
    if kind == "int" and isinstance(value, numbers.Integral):
        return int(value)
    if kind == "float" and isinstance(value, numbers.Real):
        return float(value)
    return value


def checked(option: str, value: Any, rule: Range, where: str = "Option", hint: str = "") -> Any:
    """``value`` converted to ``rule.kind`` if it lies in the range; else a CTRError naming the
    option (``where`` says whose, ``hint`` where it is set), the value and the range."""
    converted = parse(value, rule.kind)
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, float) and math.isfinite(v),
    }[rule.kind](converted)
    if ok and rule.low is not None:
        ok = converted > rule.low if rule.low_open else converted >= rule.low
    if ok and rule.high is not None:
        ok = converted <= rule.high
    if not ok:
        raise CTRError(f"{where} `{option}`{hint} is {value!r}; it must be {rule.describe()}.")
    return converted


def checked_field(f: dataclasses.Field, value: Any, where: str, hint: str = "") -> Any:
    """``value`` of field ``f``, converted and checked against the field's declaration."""
    rule = rule_of(f)
    if kind_of(f) == "ints":
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__") or not list(value):
            what = f"a non-empty list, each entry {rule.describe()}" if rule else "a non-empty list"
            raise CTRError(f"{where} `{f.name}`{hint} is {value!r}; it must be {what}, e.g. {list(f.default)}.")
        return (
            tuple(checked(f.name, v, rule, f"An entry of {where.lower()}", hint) for v in value)
            if rule
            else tuple(value)
        )
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise CTRError(f"{where} `{f.name}`{hint} is {value!r}; it must be one of {', '.join(map(repr, choices))}.")
    return checked(f.name, value, rule, where, hint) if rule is not None else value


def check_fields(config: Any, where: str, hint: Callable[[str], str] = lambda name: "") -> None:
    """Check (and convert in place) every field of dataclass ``config`` by its declaration
    (:func:`option`); ``hint(name)`` says where a user sets it."""
    for f in dataclasses.fields(config):
        setattr(config, f.name, checked_field(f, getattr(config, f.name), where, hint(f.name)))


def _config_hint(name: str) -> str:
    return f" (--{name.replace('_', '-')} on the command line, `{name}:` under `training:` in a config)"


def check_training_config(config: Any) -> None:
    """The checks of :class:`~ctr_plugin.continual.training_config.TrainingConfig` (called on construction)."""
    check_fields(
        config,
        "Training option",
        lambda name: _config_hint(name) if name != "progress" else " (`progress:` under `training:` in a config)",
    )
    if config.epochs > MANY_EPOCHS:
        log.warning(
            "epochs = %d per task is unusually many (a run takes epochs x tasks passes over the data); "
            "check that this is what you meant.",
            config.epochs,
        )


def check_plugin_config(config: Any) -> None:
    """The checks of :class:`~ctr_plugin.plugins.plugin.PluginConfig` (called on construction)."""
    check_fields(config, "Plugin option", _config_hint)


def check_max_length(
    max_length: int, tokenizer, encoder_config, pair: bool = False, option: str = "`max_length`"
) -> None:
    """Refuse a maximum length the tokenizer and the encoder cannot honour: at least the special
    tokens plus one token of text (of each text of a pair), at most the encoder's position limit."""
    if isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral):
        raise CTRError(f"{option} is {max_length!r}; it must be a whole number of tokens.")
    special = tokenizer.num_special_tokens_to_add(pair=pair)
    low = special + (2 if pair else 1)
    high = position_limit(tokenizer, encoder_config)
    if not low <= max_length <= (high if high is not None else max_length):
        kind = "text pairs" if pair else "single texts"
        upper = f" and at most {high}, the encoder's position limit" if high is not None else ""
        raise CTRError(
            f"{option} is {max_length}; for {kind} this tokenizer adds {special} special tokens, so it must be "
            f"at least {low}{upper}."
        )


def position_limit(tokenizer, encoder_config) -> int | None:
    """The most tokens the encoder takes (RoBERTa-style encoders reserve the positions up to the
    padding index); None if unknown."""
    positions = getattr(encoder_config, "max_position_embeddings", None)
    if positions is None or getattr(encoder_config, "position_embedding_type", "absolute") != "absolute":
        return None
    if getattr(encoder_config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= (getattr(encoder_config, "pad_token_id", 1) or 0) + 1
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and model_max < 1_000_000:
        positions = min(positions, model_max)
    return positions
