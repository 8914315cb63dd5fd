"""The checkpoint format: what ``ContinualModel.save_pretrained`` writes and ``from_pretrained``
reads back.

A checkpoint is one directory:

* ``ctr_config.json``: the format's name and version, the plugin config, the encoder it was
  trained on (name, architecture and a fingerprint of its embeddings), the tasks (names, labels,
  whether they read text pairs, their data's source), the tasks with their own copy of the shared
  weights, the scenario (``{"name": "task" | "domain" | "class", "shared_head": bool}``; a
  checkpoint without it loads as Task-IL with per-task heads), the SHA-256 of the weights file
  and those of the config's parts that change a prediction (``digest.py``), and what a learner
  adds (method, options, progress);
* ``plugins.safetensors``: what training changed (plugins, heads, trained LayerNorms, HAT masks;
  the encoder only where it was fine-tuned), never the frozen encoder; each task's own copy of
  the shared weights under ``task_weights.<task>.<parameter name>``;
* the tokenizer's files, and ``README.md``, the model card (``model_card.py``).

Older formats are converted when they are read (``legacy.py``). Writing is atomic
(``atomic.py``): a failed or interrupted save leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ctr_plugin.checkpoint.atomic import restore_interrupted_save, save_directory
from ctr_plugin.checkpoint.digest import check_digests, config_digests
from ctr_plugin.checkpoint.hub import checkpoint_directory
from ctr_plugin.checkpoint.legacy import join_format1_tensors, refuse_tasks_without_weights
from ctr_plugin.checkpoint.model_card import model_card
from ctr_plugin.encoders.loading import encoder_fingerprint, load_encoder
from ctr_plugin.errors import CheckpointError
from ctr_plugin.plugins.config import PluginConfig

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel

FORMAT_NAME = "ctr_plugin"
# 2: a CTR plugin's task capsules and routes are one tensor per kind, not one per task and kind
# 3: ctr_config.json records the digests of its prediction parts (`config_sha256`, digest.py), and a
#    format-3 config without them is refused; the weights file is laid out as in format 2
FORMAT_VERSION = 3
CONFIG_FILE = "ctr_config.json"
WEIGHTS_FILE = "plugins.safetensors"
CARD_FILE = "README.md"
TASK_WEIGHTS_PREFIX = "task_weights."  # + "<task id>.<parameter name>": one task's own copy


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_identity(encoder: nn.Module, fingerprint: str | None = None) -> dict:
    """What tells the encoder a checkpoint was trained on from another: its architecture and the
    fingerprint of its embeddings (``fingerprint``: taken before training, else computed now)."""
    cfg = encoder.config
    return {
        "model_type": cfg.model_type,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "vocab_size": cfg.vocab_size,
        "fingerprint": fingerprint or encoder_fingerprint(encoder),
    }


def config_dict(model: ContinualModel) -> dict:
    """The checkpoint's config for ``model`` (without the weights' digest and a learner's fields)."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "plugin": model.plugin_config.to_dict(),
        "head_dropout": model.head_dropout.p,
        "train_encoder": model.train_encoder,
        "encoder": {"name_or_path": model.encoder_name} | encoder_identity(model.encoder, model.encoder_fingerprint),
        "tasks": [
            {"name": n, "labels": labels, "pair": pair} | ({"source": source} if source is not None else {})
            for n, labels, pair, source in zip(
                model.task_names, model.label_names, model.task_pairs, model.task_sources
            )
        ],
        "task_weights": sorted(model.task_weights),  # tasks with their own copy of the shared weights
        # task / domain / class, and whether one head is shared (modeling/scenario_heads.py); absent: Task-IL
        "scenario": model.scenario.to_config(),
    } | ({"method": model.method_name} if model.method_name else {})


def saved_state_dict(model: ContinualModel) -> dict[str, torch.Tensor]:
    """The part of ``model``'s state a checkpoint holds: the plugin kind's (plugins, trained norms,
    LoRA weights) and the heads, or the fine-tuned encoder and the heads."""
    prefixes = ("encoder.", "heads.") if model.train_encoder else (*model.kind.saved_prefixes(model), "heads.")
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k.startswith(prefixes)}


def save_checkpoint(model: ContinualModel, directory: str | os.PathLike, extra: dict | None = None) -> None:
    """Write ``model``'s checkpoint into ``directory`` atomically (``atomic.py``): a complete new
    directory replaces the old one, so a failure or a crash at any moment leaves either the old or
    the new checkpoint, never a mix; a failure is a CheckpointError saying which. ``extra`` adds
    fields to the config."""

    def write(staging: Path, doing) -> None:
        doing("collecting the weights")
        state = saved_state_dict(model)
        for task, weights in model.task_weights.items():
            state |= {
                f"{TASK_WEIGHTS_PREFIX}{task}.{name}": value.detach().contiguous().cpu()
                for name, value in weights.items()
            }
        doing(f"writing {WEIGHTS_FILE}")
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
        doing(f"reading back {WEIGHTS_FILE} for its SHA-256")
        config = config_dict(model) | (extra or {}) | {"weights_sha256": sha256(staging / WEIGHTS_FILE)}
        # after `extra`, which may name the method; of the config as JSON gives it back (tuples as lists)
        config["config_sha256"] = config_digests(json.loads(json.dumps(config)))
        doing(f"writing {CONFIG_FILE}")
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        doing("writing the tokenizer's files")
        model.tokenizer.save_pretrained(str(staging))
        doing(f"writing {CARD_FILE} (the model card)")
        (staging / CARD_FILE).write_text(model_card(config), encoding="utf-8")

    save_directory(directory, write)


def read_config(directory: str | os.PathLike) -> dict:
    """The checkpoint's config, validated (its digests included: ``digest.py``); a clear
    CheckpointError when it is not one. A checkpoint an interrupted save left as ``.<name>.old``
    is moved back first."""
    restore_interrupted_save(directory)
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise CheckpointError(
            f"Checkpoint directory {str(directory)!r} does not exist. "
            "Pass the `checkpoint/` folder a training run wrote."
        )
    if not path.is_file():
        raise CheckpointError(
            f"{str(directory)!r} is not a ctr_plugin checkpoint: it has no {CONFIG_FILE}. Pass the "
            f"`checkpoint/` folder inside a training run's --output-dir."
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is corrupt ({err}). Re-run training, or restore the file from a copy."
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise CheckpointError(f'{path} is not a ctr_plugin checkpoint config (no "format": "{FORMAT_NAME}").')
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}, but this ctr_plugin reads versions up to "
            f"{FORMAT_VERSION}. Upgrade ctr_plugin to load it."
        )
    for key in ("plugin", "encoder", "tasks"):
        if key not in config:
            raise CheckpointError(f"{path} lacks the field {key!r}: the file is damaged. Re-run training.")
    check_digests(config, path)
    return config


def _read_weights(weights: Path, config: dict) -> dict[str, torch.Tensor]:
    if not weights.is_file():
        raise CheckpointError(
            f"{weights} is missing: the checkpoint is incomplete. Re-run training or restore the file."
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{weights} is corrupt or truncated ({err}). Re-run training or restore the file from a copy."
        ) from None
    recorded = config.get("weights_sha256")
    if recorded is not None and sha256(weights) != recorded:
        raise CheckpointError(
            f"{weights} is not the file this checkpoint was saved with (its SHA-256 differs from the one in "
            f"{CONFIG_FILE}): it was replaced or edited. Restore the original file, or re-run training."
        )
    return state


def load_checkpoint(
    cls: type[ContinualModel],
    directory_or_repo_id: str | os.PathLike,
    encoder: str | nn.Module | None = None,
    device: str | torch.device = "cpu",
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ContinualModel:
    """``ContinualModel.from_pretrained`` (its docstring says what it takes and refuses)."""
    restore_interrupted_save(directory_or_repo_id)  # before a missing local folder is taken for a repo id
    directory = checkpoint_directory(directory_or_repo_id, revision, token, cache_dir)
    config = read_config(directory)
    weights = Path(directory) / WEIGHTS_FILE
    state = _read_weights(weights, config)
    stored = config["encoder"]
    encoder_module = encoder if isinstance(encoder, nn.Module) else load_encoder(encoder or stored["name_or_path"])[0]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    differs = {k: (stored.get(k), v) for k, v in encoder_identity(encoder_module).items() if stored.get(k) != v}
    if differs:
        detail = "; ".join(f"{k}: checkpoint {a!r}, given {b!r}" for k, (a, b) in differs.items())
        raise CheckpointError(
            f"The checkpoint in {str(directory)!r} was trained on encoder {stored['name_or_path']!r}, "
            f"but the encoder given is different ({detail}). Load it with the encoder it was trained on."
        )
    model = cls(
        encoder_module,
        tokenizer,
        PluginConfig.from_dict(config["plugin"]),
        stored["name_or_path"],
        config.get("head_dropout", 0.1),
        config.get("train_encoder", False),
    )
    model.method_name = config.get("method")
    model.scenario.restore(config.get("scenario"))  # before the tasks: it decides their heads
    for task in config["tasks"]:
        model.add_task(task["name"], task["labels"], pair=task.get("pair"), source=task.get("source"))
    per_task = {k: v for k, v in state.items() if k.startswith(TASK_WEIGHTS_PREFIX)}
    state = {k: v for k, v in state.items() if k not in per_task}
    model.task_weights.replace_all(_task_weights(model, per_task, config.get("task_weights", []), weights))
    if config["format_version"] < 2:
        state = join_format1_tensors(state, model.plugin_config.freeze_old_capsules)
    expected = saved_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{weights} does not match its config ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} wrongly shaped tensors, e.g. {(missing + unexpected + wrong)[:3]}). The files "
            f"come from different runs or were edited; re-run training."
        )
    model.load_state_dict(state, strict=False)
    refuse_tasks_without_weights(model, model.method_name)
    return model.to(device).eval()


def _task_weights(
    model: ContinualModel, tensors: dict[str, torch.Tensor], tasks: list[int], weights_file: Path
) -> dict[int, dict[str, torch.Tensor]]:
    """``task_weights.<task>.<name>`` tensors sorted by task, checked against the parameters
    they stand for and the task list of the config."""
    params = dict(model.named_parameters())
    found: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        task, _, name = key[len(TASK_WEIGHTS_PREFIX) :].partition(".")
        if not task.isdigit() or name not in params or params[name].shape != value.shape:
            raise CheckpointError(
                f"{weights_file} holds a per-task tensor {key!r} that fits no parameter of this model: "
                "the files come from different runs or were edited; re-run training."
            )
        found.setdefault(int(task), {})[name] = value
    if sorted(found) != sorted(tasks):
        raise CheckpointError(
            f"{weights_file} holds per-task weights for tasks {sorted(found)}, but its config lists {sorted(tasks)}: "
            "the files do not belong together; re-run training."
        )
    return found
