"""The encoder a user hands in, as users load them.

A transformers task model (``AutoModelForSequenceClassification``, any ``*For*`` class) is
unwrapped to its base model (``model.base_model``, the attribute named by
``base_model_prefix``), and the log says which head was dropped: the model brings one head per
task of its own. An encoder the plugin kind cannot serve is refused before any work is done on
it, with a message naming what it lacks.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING

from torch import nn

from ctr_plugin.errors import CTRError
from ctr_plugin.plugins.registry import plugin_kind

if TYPE_CHECKING:
    from ctr_plugin.plugins.config import PluginConfig

log = logging.getLogger(__name__)


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features} -> {module.out_features}"
    return type(module).__name__


def unwrap_encoder(model):
    """``model``'s base model when ``model`` is a task model wrapping one (logged, with the parts
    dropped); ``model`` itself otherwise."""
    base = getattr(model, "base_model", model) if isinstance(model, nn.Module) else model
    if base is model or not isinstance(base, nn.Module):
        return model
    prefix = getattr(model, "base_model_prefix", "base_model")
    dropped = [f"{name} ({_describe(m)})" for name, m in model.named_children() if m is not base]
    log.warning(
        "%s is a task model: its base model %s (`%s`) is the encoder, and the rest is dropped: %s. "
        "The continual model adds one head per task of its own.",
        type(model).__name__,
        type(base).__name__,
        prefix,
        ", ".join(dropped) or "nothing",
    )
    return base


def _takes(forward, *names: str) -> bool:
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return True  # no signature to read: let the first forward tell
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return all(name in params for name in names) or takes_any


def check_encoder(encoder, config: PluginConfig) -> None:
    """A CTRError naming what ``encoder`` lacks for a ContinualModel with the plugins ``config``
    describes (its ``plugin_type``); nothing when it has it all. Reads the encoder only: changes
    nothing."""
    kind = plugin_kind(config.plugin_type)
    lacks = [
        what
        for what, present in (
            ("a `config` (a transformers model's configuration)", hasattr(encoder, "config")),
            ("`get_input_embeddings()`", callable(getattr(encoder, "get_input_embeddings", None))),
        )
        if not present
    ]
    if not isinstance(encoder, nn.Module) or lacks:
        raise CTRError(
            "The encoder must be a transformers model (e.g. AutoModel.from_pretrained(...)), got "
            f"{type(encoder).__name__}, which has no {' and no '.join(lacks) or 'torch.nn.Module base'}."
        )
    model_type = getattr(encoder.config, "model_type", "?")
    if getattr(encoder.config, "is_encoder_decoder", False):
        raise CTRError(
            f"The encoder {type(encoder).__name__} ({model_type}) is an encoder-decoder model; a continual model "
            "needs an encoder alone (BERT, RoBERTa, DeBERTa-v2, DistilBERT, ModernBERT, ...) whose forward takes "
            "input_ids and attention_mask and returns last_hidden_state."
        )
    hidden_size = getattr(encoder.config, "hidden_size", None)
    if not isinstance(hidden_size, int):
        lacks.append("`config.hidden_size` (the width the heads and plugins read)")
    if not _takes(encoder.forward, "input_ids", "attention_mask"):
        lacks.append("forward taking `input_ids` and `attention_mask`")
    if isinstance(hidden_size, int) and (missing := kind.missing(encoder, hidden_size, config)):
        lacks.append(missing)
    if lacks:
        raise CTRError(
            f"The encoder {type(encoder).__name__} ({model_type}) cannot carry plugin kind {kind.name!r}: it has no "
            f"{'; no '.join(lacks)}. Use a BERT-like encoder (BERT, RoBERTa, ELECTRA, DeBERTa-v2, MiniLM, ...), "
            "DistilBERT or ModernBERT, or another method."
        )
