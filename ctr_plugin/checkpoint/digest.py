"""The digests that tie a checkpoint's config to what its weights were trained as.

``weights_sha256`` (format 2 on) is the SHA-256 of ``plugins.safetensors``. ``config_sha256``
(format 3 on) holds one SHA-256 per part of ``ctr_config.json`` that changes a prediction: each
task's name, label list (in id order: output ``i`` is the label ``labels[i]``) and pair flag, the
plugin config, the head dropout, ``train_encoder``, the method, the tasks with their own copy of
the shared weights, the scenario (where recorded) and the encoder's identity (architecture and
embedding fingerprint; not its ``name_or_path``, which only says where to find it, so a moved
encoder can be named anew). One digest per part lets a refusal name what was edited. The
progress, provenance, data sources and options a learner records change no prediction and stay
free to edit.

A format that requires a digest refuses a config without it, so deleting the field does not turn
the check off; an older format, written before the digest existed, loads without it (and checks it
when present). Renaming or reordering a task's labels on purpose is ``ctr-relabel``
(``checkpoint/relabelling.py``), which rewrites the digest with the labels.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ctr_plugin.errors import CheckpointError

# The first format version that requires each digest.
WEIGHTS_DIGEST_SINCE = 2
CONFIG_DIGEST_SINCE = 3
PREDICTION_FIELDS = ("plugin", "head_dropout", "train_encoder", "method", "task_weights")
ENCODER_IDENTITY = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "fingerprint")
TASK_FIELDS = ("name", "labels", "pair")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TASK_PART = re.compile(r"^tasks\.(\d+)\.(\w+)$")


def canonical_sha256(value) -> str:
    """The SHA-256 of ``value`` as canonical JSON (sorted keys, no spaces, UTF-8): the same for a
    value and for what ``json`` reads back of it."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prediction_parts(config: dict) -> dict[str, object]:
    """The parts of a checkpoint config that change a prediction, by name (``tasks.<i>.<field>``
    for a task's)."""
    parts: dict[str, object] = {k: config.get(k) for k in PREDICTION_FIELDS}
    encoder = config.get("encoder") if isinstance(config.get("encoder"), dict) else {}
    parts["encoder"] = {k: encoder.get(k) for k in ENCODER_IDENTITY}
    for i, task in enumerate(config.get("tasks") or []):
        for field in TASK_FIELDS:
            parts[f"tasks.{i}.{field}"] = task.get(field) if isinstance(task, dict) else task
    if "scenario" in config:  # recorded since the scenarios came; a config without it is Task-IL
        parts["scenario"] = config["scenario"]
    return parts


def config_digests(config: dict) -> dict[str, str]:
    """``config_sha256`` for ``config``: one SHA-256 per part that changes a prediction."""
    return {name: canonical_sha256(value) for name, value in prediction_parts(config).items()}


def _describe(names: list[str], config: dict, recorded: dict) -> list[str]:
    """What differs, in words: "the labels of task 1 ('colour')", "`plugin`", ..."""
    tasks = config.get("tasks") or []
    counted = {m[1] for m in map(_TASK_PART.match, recorded) if m}
    said = []
    if len(counted) != len(tasks):
        said.append(f"the number of tasks ({len(counted)} when saved, {len(tasks)} now)")
    words = {"name": "the name", "labels": "the labels (their names or order)", "pair": "the text-pair flag"}
    for name in names:
        match = _TASK_PART.match(name)
        if match is None:
            said.append(f"`{name}`")
            continue
        i, field = int(match[1]), match[2]
        if i < len(tasks) and name in recorded:
            task_name = tasks[i].get("name") if isinstance(tasks[i], dict) else None
            said.append(f"{words.get(field, field)} of task {i} ({task_name!r})")
    return list(dict.fromkeys(said)) or ["its digests"]


def check_digests(config: dict, path: Path) -> None:
    """Refuse ``config`` (read from ``path``) when a digest its format requires is missing or
    malformed, or when its prediction parts differ from those ``config_sha256`` records."""
    version = config.get("format_version")
    weights = config.get("weights_sha256")
    if (weights is None and version >= WEIGHTS_DIGEST_SINCE) or (weights is not None and not _is_hex64(weights)):
        raise CheckpointError(
            f"{path} (checkpoint format {version}) has no valid `weights_sha256`: the digest of the weights file was "
            "deleted or damaged, so nothing shows that plugins.safetensors is the file this config was saved with. "
            "Restore ctr_config.json from a copy, or re-run training."
        )
    recorded = config.get("config_sha256")
    if recorded is None:
        if version >= CONFIG_DIGEST_SINCE:
            raise CheckpointError(
                f"{path} (checkpoint format {version}) has no `config_sha256`: the digest of its tasks, labels and "
                "options was deleted, so nothing shows that they are the ones its weights were trained with (a "
                "reordered label list would flip every prediction silently). Restore ctr_config.json from a copy, "
                "or re-run training."
            )
        return  # an older format, written before the config had a digest
    if not isinstance(recorded, dict) or not all(isinstance(v, str) and _is_hex64(v) for v in recorded.values()):
        raise CheckpointError(
            f"{path} has a damaged `config_sha256` (it must map each part of the config to a SHA-256). Restore "
            "ctr_config.json from a copy, or re-run training."
        )
    now = config_digests(config)
    differ = [name for name in dict.fromkeys([*recorded, *now]) if recorded.get(name) != now.get(name)]
    if differ:
        said = _describe(differ, config, recorded)
        raise CheckpointError(
            f"{path} was edited after it was saved: {'; '.join(said)} {'differs' if len(said) == 1 else 'differ'} "
            "from what its weights were trained with (`config_sha256` records them). Loaded, its predictions would "
            "silently change meaning (a reordered label list swaps the answers). Restore ctr_config.json from a "
            "copy, or re-run training. To rename or reorder a task's labels on purpose, restore the file, then run "
            f"`ctr-relabel {path.parent} --task NAME --labels A,B,...`."
        )


def _is_hex64(value) -> bool:
    return isinstance(value, str) and _HEX64.match(value) is not None
