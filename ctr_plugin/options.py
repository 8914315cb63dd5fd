"""Type and range checks of option values, with one message format for all of them.

Every option a user can set (command line, a YAML ``training:`` block, the Python API) is checked
here before anything runs, and a bad value gets one paragraph naming the option, the value and
the range it must lie in. Numbers written as strings are read as the numbers they spell: YAML 1.1
(PyYAML) reads ``1e-3`` as the string "1e-3", because it wants a dot in the mantissa (``1.0e-3``).
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any

from ctr_plugin.errors import CTRError

log = logging.getLogger(__name__)

# The loop seeds numpy with seed * 1000 + task index, and numpy takes seeds below 2**32.
MAX_SEED = (2**32 - 1) // 1000 - 1
MANY_EPOCHS = 100  # more epochs per task than this gets a warning (a typo is likelier than a plan)


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


TRAINING_RANGES = {
    "epochs": Range("int", 1, 10_000),
    "batch_size": Range("int", 1, 1_000_000),
    "eval_batch_size": Range("int", 1, 1_000_000),
    "lr": Range("float", 0, 10, low_open=True),
    "weight_decay": Range("float", 0, 10),
    "warmup_ratio": Range("float", 0, 1),
    "max_grad_norm": Range("float", 0, None, low_open=True),
    "max_length": Range("int", 1, 1_000_000),
    "seed": Range("int", 0, MAX_SEED),
    "progress": Range("bool"),
}

PLUGIN_RANGES = {
    "adapter_size": Range("int", 1, 1_000_000),
    "capsule_size": Range("int", 1, 100_000),
    "num_transfer_capsules": Range("int", 1, 100_000),
    "task_capsule_hidden": Range("int", 1, 100_000),
    "routing_filters": Range("int", 1, 100_000),
    "s_max": Range("float", 0, None, low_open=True),
    "train_layernorm": Range("bool"),
    "freeze_old_capsules": Range("bool"),
    "mask_init_mean": Range("float", -6, 6),  # HAT clamps the embeddings to [-6, 6]
    "mask_init_std": Range("float", 0, 10),
    "lora_rank": Range("int", 1, 100_000),
    "lora_alpha": Range("float", 0, None, low_open=True),
}


# Method options (--method-arg key=value) by name; any other numeric option must at least be finite.
METHOD_RANGES = {
    "encoder_lr": Range("float", 0, 10, low_open=True),
    "strength": Range("float", 0, None),
    "fisher_samples": Range("int", 1, None),
    "rank": Range("int", 1, 100_000),
    "alpha": Range("float", 0, None, low_open=True),
    "temperature": Range("float", 0, None, low_open=True),
    "memory_size": Range("int", 0, None),
    "replay_batch_size": Range("int", 1, None),
    "seed": Range("int", 0, 2**32 - 1),
    "mask_lambda": Range("float", 0, None),
    "mask_lr_scale": Range("float", 0, None, low_open=True),
}


def _as_number(value: Any, kind: str) -> Any:
    """``value`` as an int or float where it spells one (strings, numpy scalars, 3.0 for an int);
    unchanged where it does not (the range check then names it)."""
    if isinstance(value, bool):
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


def _as_bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    return value


def checked(option: str, value: Any, rule: Range, where: str = "Option", hint: str = "") -> Any:
    """``value`` converted to ``rule.kind`` if it lies in the range; else a CTRError naming the
    option (``where`` says whose, ``hint`` where it is set), the value and the range."""
    converted = _as_bool(value) if rule.kind == "bool" else _as_number(value, rule.kind)
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


def check_fields(config: Any, ranges: dict[str, Range], where: str) -> None:
    """Check (and convert in place) every field of dataclass ``config`` that ``ranges`` names;
    fields it does not name are left to their owner."""
    for name, rule in ranges.items():
        if hasattr(config, name):
            flag = f"--{name.replace('_', '-')} on the command line, " if name != "progress" else ""  # every option has a flag (settings.py)
            hint = f" ({flag}`{name}:` under `training:` in a config)"
            setattr(config, name, checked(name, getattr(config, name), rule, where, hint))


def check_training_config(config: Any) -> None:
    """The checks of :class:`~ctr_plugin.continual.loop.TrainingConfig` (called on construction)."""
    check_fields(config, TRAINING_RANGES, "Training option")
    if config.epochs > MANY_EPOCHS:
        log.warning("epochs = %d per task is unusually many (a run takes epochs x tasks passes over the data); "
                    "check that this is what you meant.", config.epochs)


def check_plugin_config(config: Any) -> None:
    """The checks of :class:`~ctr_plugin.plugins.PluginConfig` (called on construction)."""
    check_fields(config, PLUGIN_RANGES, "Plugin option")
    sizes = getattr(config, "routing_kernel_sizes", None)
    if sizes is not None:
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise CTRError(f"Plugin option `routing_kernel_sizes` is {sizes!r}; it must be a list of whole numbers >= 1, e.g. [3, 4, 5].")
        config.routing_kernel_sizes = tuple(checked("routing_kernel_sizes", k, Range("int", 1, 10_000), "An entry of plugin option") for k in sizes)
        if not config.routing_kernel_sizes:
            raise CTRError("Plugin option `routing_kernel_sizes` is empty; give at least one kernel size, e.g. [3, 4, 5].")


def check_method_options(method: Any) -> None:
    """The checks of a continual-learning method's options (after ``from_options`` set them)."""
    from dataclasses import fields

    for f in fields(method):
        value = getattr(method, f.name)
        rule = METHOD_RANGES.get(f.name)
        if rule is None and isinstance(value, float) and not isinstance(value, bool):
            rule = Range("float")
        if rule is not None:
            setattr(method, f.name, checked(f.name, value, rule, f"Option of method {method.name!r}", f" (--method-arg {f.name}=...)"))


def convert_option_strings(options: dict[str, Any], ranges: dict[str, Range]) -> dict[str, Any]:
    """``options`` with numbers that YAML left as strings (``1e-3``) read as numbers."""
    out = dict(options)
    for key, value in options.items():
        rule = ranges.get(key)
        if rule is not None and isinstance(value, str):
            out[key] = _as_bool(value) if rule.kind == "bool" else _as_number(value, rule.kind)
    return out


def check_max_length(max_length: int, tokenizer, encoder_config, pair: bool = False, option: str = "`max_length`") -> None:
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
