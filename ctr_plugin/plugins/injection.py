"""Put a plugin into every Houlsby place of an encoder, without touching its code.

A layer has two places: the end of its attention sublayer and the end of its feed-forward
sublayer, after the sublayer's output projection (and its dropout), before the residual add. The
module that ends the sublayer there is replaced by a wrapper that keeps it and applies the plugin
to its output. In a BERT-like post-norm sublayer (``BertSelfOutput``, ``BertOutput``; RoBERTa,
ELECTRA, DeBERTa-v2 share the shape), ``LayerNorm(dropout(dense(x)) + residual)``, the wrapped
module is the ``dropout``, which gives exactly

    h = plugin(dropout(dense(x)));  out = LayerNorm(h + residual)

Each place also names the norm that trains with its plugin (``train_layernorm``). Where the
places are is read from :data:`PLACES` by the encoder's ``config.model_type``; an architecture
not listed there is searched for BERT-like sublayers (a module with ``dense``, ``dropout`` and
``LayerNorm``). :func:`plugins_disabled` bypasses the plugins for a while (peft's
``disable_adapter``) and :func:`remove_plugins` undoes the wrappers, giving each place its own
module back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ctr_plugin.errors import CTRError

if TYPE_CHECKING:
    from ctr_plugin.plugins.plugin import Plugin


@dataclass(frozen=True)
class Place:
    """Where one plugin goes: ``output``, the module whose output it takes (the sublayer's last
    module before the residual add), and ``norm``, the norm that trains with it; both are paths
    of submodules (of a layer in :data:`PLACES`, of the encoder in what :func:`plugin_places` returns)."""

    output: str
    norm: str


# config.model_type -> (the path of the encoder's list of layers, the places in each layer), as
# transformers' modelling files build them. An architecture not listed is read as a BERT-like.
PLACES: dict[str, tuple[str, tuple[Place, ...]]] = {
    # Post-norm, as BERT, but the attention ends in `out_lin` with no dropout after it; the
    # feed-forward ends in `lin2` and its dropout; the layer adds the residual and normalises.
    "distilbert": (
        "transformer.layer",
        (Place("attention.out_lin", norm="sa_layer_norm"), Place("ffn.dropout", norm="output_layer_norm")),
    ),
    # Pre-norm: the layer adds each sublayer's output to the residual stream itself. The attention
    # ends in `Wo` and `out_drop`, the GLU feed-forward in `Wo`. Each sublayer's own norm (on its
    # input) trains with its plugin; layer 0's attention norm is an Identity, with nothing to train.
    "modernbert": (
        "layers",
        (Place("attn.out_drop", norm="attn_norm"), Place("mlp.Wo", norm="mlp_norm")),
    ),
}


class PluggedOutput(nn.Module):
    """The encoder's own module at a place (``base_layer``) followed by a plugin (bypassed while
    ``active`` is False)."""

    def __init__(self, base_layer: nn.Module, plugin: Plugin):
        super().__init__()
        self.base_layer = base_layer
        self.plugin = plugin
        self.active = True

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.base_layer(hidden_states)
        return self.plugin(hidden_states) if self.active else hidden_states


def _is_bert_like_sublayer(module: nn.Module, hidden_size: int) -> bool:
    dense, dropout = getattr(module, "dense", None), getattr(module, "dropout", None)
    return (
        isinstance(dense, nn.Linear)
        and dense.out_features == hidden_size
        and isinstance(dropout, (nn.Dropout, PluggedOutput))
        and isinstance(getattr(module, "LayerNorm", None), nn.LayerNorm)
    )


def _listed_places(encoder: nn.Module, layers_path: str, places: tuple[Place, ...]) -> list[Place]:
    try:
        layers = encoder.get_submodule(layers_path)
        found = [
            Place(f"{layers_path}.{i}.{p.output}", f"{layers_path}.{i}.{p.norm}")
            for i in range(len(layers))
            for p in places
        ]
        for path in (path for place in found for path in (place.output, place.norm)):
            encoder.get_submodule(path)
    except (AttributeError, TypeError):
        return []  # another version of the architecture: refused, naming the places looked for
    return found


def plugin_places(encoder: nn.Module, hidden_size: int) -> list[Place]:
    """Every place of ``encoder`` where a plugin goes, paths from the encoder, in layer order
    (none found: an empty list). The same before and after :func:`inject_plugins`."""
    model_type = getattr(getattr(encoder, "config", None), "model_type", None)
    if model_type in PLACES:
        return _listed_places(encoder, *PLACES[model_type])
    return [
        Place(f"{name}.dropout", f"{name}.LayerNorm")
        for name, module in encoder.named_modules()
        if _is_bert_like_sublayer(module, hidden_size)
    ]


def plugged_places(encoder: nn.Module, hidden_size: int) -> list[Place]:
    """The places of ``encoder`` that carry a plugin now."""
    return [
        p for p in plugin_places(encoder, hidden_size) if isinstance(encoder.get_submodule(p.output), PluggedOutput)
    ]


def places_wanted(encoder: nn.Module, hidden_size: int) -> str:
    """What :func:`plugin_places` looks for in ``encoder``, in words (for a refusal)."""
    model_type = getattr(getattr(encoder, "config", None), "model_type", None)
    if model_type in PLACES:
        layers, places = PLACES[model_type]
        names = ", ".join(f"`{layers}.<i>.{p.output}`" for p in places)
        return f"the modules {names} where a {model_type} layer's sublayers end, as transformers builds them"
    return (
        f"BERT-style output sublayers (a module with `dense`, `dropout` and `LayerNorm` mapping to hidden size "
        f"{hidden_size}); the architectures with places of their own are {', '.join(sorted(PLACES))}"
    )


def injected_plugins(encoder: nn.Module) -> list[Plugin]:
    """The plugins injected into ``encoder``, in the order of its places."""
    return [m.plugin for m in encoder.modules() if isinstance(m, PluggedOutput)]


def inject_plugins(encoder: nn.Module, hidden_size: int, make_plugin: Callable[[], Plugin]) -> list[nn.Module]:
    """Insert ``make_plugin()`` at every place of ``encoder``; return the norms that train with them."""
    places = plugin_places(encoder, hidden_size)
    if not places:
        raise CTRError(
            f"The encoder {type(encoder).__name__} has no {places_wanted(encoder, hidden_size)}, so there is "
            f"nowhere to put the plugins. Use a BERT-like encoder (BERT, RoBERTa, ELECTRA, DeBERTa-v2, MiniLM, ...), "
            f"DistilBERT or ModernBERT."
        )
    for place in places:
        parent, _, child = place.output.rpartition(".")
        module = encoder.get_submodule(place.output)
        if isinstance(module, PluggedOutput):
            raise CTRError("This encoder already carries plugins: build the model from a fresh encoder.")
        setattr(encoder.get_submodule(parent), child, PluggedOutput(module, make_plugin()))
    return [encoder.get_submodule(place.norm) for place in places]


@contextlib.contextmanager
def plugins_disabled(encoder: nn.Module) -> Iterator[None]:
    """Inside the block every plugin of ``encoder`` is bypassed (each place's own module only);
    each is as it was after the block, also when the block raises."""
    wrappers = [m for m in encoder.modules() if isinstance(m, PluggedOutput)]
    before = [w.active for w in wrappers]
    for wrapper in wrappers:
        wrapper.active = False
    try:
        yield
    finally:
        for wrapper, active in zip(wrappers, before):
            wrapper.active = active


def remove_plugins(encoder: nn.Module) -> None:
    """Undo :func:`inject_plugins`: every place gets its own module back."""
    for name, wrapper in [(n, m) for n, m in encoder.named_modules() if isinstance(m, PluggedOutput)]:
        parent, _, child = name.rpartition(".")
        setattr(encoder.get_submodule(parent), child, wrapper.base_layer)
