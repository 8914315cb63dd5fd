"""The frozen encoder: where it is found, how it is loaded, and how two encoders are told apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from ctr_plugin.data.packages import bundled_model_dir, hub_offline
from ctr_plugin.errors import CTRError

BUNDLED_ENCODER = "bundled:all-MiniLM-L6-v2"


def resolve_encoder(name_or_path: str | None) -> str:
    """Where ``from_pretrained`` finds the encoder: the bundled MiniLM (its pip package's model
    directory, ``data/packages.py``), a local directory or a hub name."""
    if name_or_path in (None, "", BUNDLED_ENCODER):
        return str(bundled_model_dir())
    return name_or_path


def load_encoder(name_or_path: str | None):
    """(encoder, tokenizer) for a hub name, a local directory, or None for the bundled MiniLM."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as err:
        hint = (
            "HF_HUB_OFFLINE=1 is set, so hub names cannot be downloaded: use a local directory"
            if hub_offline()
            else "if it is a hub name, this machine needs access to huggingface.co"
        )
        raise CTRError(
            f"Could not load the encoder {name_or_path!r} ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"Pass --encoder with a local directory holding config.json and the weights, or a hub "
            f"name such as bert-base-uncased ({hint})."
        ) from None
    return encoder, tokenizer


def encoder_fingerprint(encoder: nn.Module) -> str:
    """A short hash of the encoder's (always frozen) input embeddings: tells two encoders apart."""
    weight = encoder.get_input_embeddings().weight.detach()
    rows = weight[: min(2048, weight.shape[0])].float().contiguous().cpu()
    return hashlib.sha256(rows.numpy().tobytes()).hexdigest()[:16]


def recorded_encoder_name(encoder: str | None) -> str | None:
    """The name a checkpoint records for ``encoder``: a local directory as an absolute path (the
    checkpoint must find it from anywhere); hub names and None (the bundled MiniLM) unchanged."""
    if encoder and Path(encoder).expanduser().is_dir():
        return str(Path(encoder).expanduser().resolve())
    return encoder
