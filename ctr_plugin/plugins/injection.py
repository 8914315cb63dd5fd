"""Put a plugin into every Houlsby place of a BERT-like encoder, without touching its code.

The two places per layer are the attention output and the feed-forward output sublayers
(``BertSelfOutput`` and ``BertOutput`` in HF BERT; RoBERTa, ELECTRA and other BERT-likes share the
shape): ``LayerNorm(dropout(dense(x)) + residual)``. The sublayer's ``dropout`` module is replaced
by a wrapper that keeps it and applies the plugin to its output, which gives exactly

    h = plugin(dropout(dense(x)));  out = LayerNorm(h + residual)

:func:`plugins_disabled` bypasses the plugins for a while (peft's ``disable_adapter``) and
:func:`remove_plugins` undoes the wrappers, giving the sublayers their own dropout back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from ctr_plugin.errors import CTRError

if TYPE_CHECKING:
    from ctr_plugin.plugins.plugin import Plugin


class PluggedDropout(nn.Module):
    """The sublayer's own dropout followed by a plugin (bypassed while ``active`` is False)."""

    def __init__(self, dropout: nn.Module, plugin: Plugin):
        super().__init__()
        self.dropout = dropout
        self.plugin = plugin
        self.active = True

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(hidden_states)
        return self.plugin(hidden_states) if self.active else hidden_states


def _is_output_sublayer(module: nn.Module, hidden_size: int) -> bool:
    dense, dropout = getattr(module, "dense", None), getattr(module, "dropout", None)
    return (
        isinstance(dense, nn.Linear)
        and dense.out_features == hidden_size
        and isinstance(dropout, (nn.Dropout, PluggedDropout))
        and isinstance(getattr(module, "LayerNorm", None), nn.LayerNorm)
    )


def output_sublayers(encoder: nn.Module, hidden_size: int) -> list[tuple[str, nn.Module]]:
    """The (name, module) of every sublayer of the form LayerNorm(dropout(dense(x)) + residual)."""
    return [(n, m) for n, m in encoder.named_modules() if _is_output_sublayer(m, hidden_size)]


def plugged_sublayers(encoder: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) of every sublayer that carries a plugin."""
    return [(n, m) for n, m in encoder.named_modules() if isinstance(getattr(m, "dropout", None), PluggedDropout)]


def injected_plugins(encoder: nn.Module) -> list[Plugin]:
    """The plugins injected into ``encoder``, in the order of its sublayers."""
    return [m.plugin for m in encoder.modules() if isinstance(m, PluggedDropout)]


def inject_plugins(encoder: nn.Module, hidden_size: int, make_plugin: Callable[[], Plugin]) -> list[nn.Module]:
    """Insert ``make_plugin()`` into every output sublayer; return those sublayers' LayerNorms."""
    sublayers = output_sublayers(encoder, hidden_size)
    if not sublayers:
        raise CTRError(
            f"The encoder {type(encoder).__name__} has no BERT-style output sublayers (a module with "
            f"`dense`, `dropout` and `LayerNorm` mapping to hidden size {hidden_size}), so there is "
            f"nowhere to put the plugins. Use a BERT-like encoder (BERT, RoBERTa, ELECTRA, MiniLM, ...)."
        )
    for _, module in sublayers:
        if isinstance(module.dropout, PluggedDropout):
            raise CTRError("This encoder already carries plugins: build the model from a fresh encoder.")
        module.dropout = PluggedDropout(module.dropout, make_plugin())
    return [module.LayerNorm for _, module in sublayers]


@contextlib.contextmanager
def plugins_disabled(encoder: nn.Module) -> Iterator[None]:
    """Inside the block every plugin of ``encoder`` is bypassed (the sublayer's own dropout only);
    each is as it was after the block, also when the block raises."""
    wrappers = [m for m in encoder.modules() if isinstance(m, PluggedDropout)]
    before = [w.active for w in wrappers]
    for wrapper in wrappers:
        wrapper.active = False
    try:
        yield
    finally:
        for wrapper, active in zip(wrappers, before):
            wrapper.active = active


def remove_plugins(encoder: nn.Module) -> None:
    """Undo :func:`inject_plugins`: every plugged sublayer gets its own dropout module back."""
    for _, module in plugged_sublayers(encoder):
        module.dropout = module.dropout.dropout
