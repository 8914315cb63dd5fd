"""Renaming or reordering a task's labels on purpose: the one edit of ``ctr_config.json`` that a
checkpoint accepts, because it rewrites the config's digest (``digest.py``) with the labels.

A task's head has one output per label, in the order of its label list: output ``i`` is reported
as ``labels[i]``. Relabelling changes the names the outputs are reported by, never the weights,
so every prediction of the task changes meaning: ``relabel_task`` returns a message that says so.
``ctr-relabel`` (``commands/relabel.py``) is the command.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ctr_plugin.checkpoint.atomic import ordinary_mode
from ctr_plugin.checkpoint.digest import CONFIG_DIGEST_SINCE, WEIGHTS_DIGEST_SINCE, config_digests
from ctr_plugin.checkpoint.format import CARD_FILE, CONFIG_FILE, FORMAT_VERSION, read_config
from ctr_plugin.checkpoint.model_card import model_card
from ctr_plugin.errors import CheckpointError, TaskError


def _task_index(tasks: list[dict], task: str | int) -> int:
    names = [t["name"] for t in tasks]
    if task in names:
        return names.index(task)
    if (isinstance(task, int) or str(task).isdigit()) and 0 <= int(task) < len(tasks):
        return int(task)
    raise TaskError(f"Unknown task {task!r}: this checkpoint has the tasks {', '.join(map(repr, names))}.")


def _write_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, with ordinary permissions."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, ordinary_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def relabel_task(directory: str | os.PathLike, task: str | int, labels: Sequence[str]) -> str:
    """Give task ``task`` (name or id) of the checkpoint in ``directory`` the label list ``labels``
    (new names, or the old ones in another order; as many as the task has outputs), rewriting
    ``ctr_config.json`` with its digest and the model card. Returns the message that says how its
    predictions change meaning. A checkpoint whose config does not match its digest is refused
    (restore it first): relabelling never blesses an unexplained edit."""
    directory = Path(directory)
    config = read_config(directory)
    tasks = config["tasks"]
    i = _task_index(tasks, task)
    old, new = list(tasks[i]["labels"]), list(labels)
    name = tasks[i]["name"]
    if len(new) != len(old):
        raise CheckpointError(
            f"Task {name!r} has {len(old)} outputs ({', '.join(map(repr, old))}), but "
            f"{len(new)} {'label was' if len(new) == 1 else 'labels were'} given: "
            "give one label per output, in output order."
        )
    blank = [j for j, label in enumerate(new) if not isinstance(label, str) or not label.strip()]
    twice = sorted({label for label in new if new.count(label) > 1})
    if blank or twice:
        raise CheckpointError(
            f"The new labels of task {name!r} must be distinct, non-empty strings; "
            + (f"positions {blank} are empty" if blank else f"{', '.join(map(repr, twice))} appear more than once")
            + "."
        )
    if new == old:
        return f"Task {name!r} of {directory} already has the labels {old}: nothing was changed."
    tasks[i]["labels"] = new
    if config["format_version"] >= WEIGHTS_DIGEST_SINCE:  # same weights layout: now a format that requires digests
        config["format_version"] = max(config["format_version"], CONFIG_DIGEST_SINCE, FORMAT_VERSION)
    config["config_sha256"] = config_digests(config)
    try:
        _write_file(directory / CONFIG_FILE, json.dumps(config, indent=2))
    except Exception as err:
        raise CheckpointError(
            f"Relabelling task {name!r} failed while writing {directory / CONFIG_FILE} ({type(err).__name__}: {err}): "
            "the checkpoint is unchanged."
        ) from err
    try:
        _write_file(directory / CARD_FILE, model_card(config))
    except Exception as err:
        raise CheckpointError(
            f"Task {name!r} of {directory} was relabelled (ctr_config.json holds the new labels), but its model card "
            f"{CARD_FILE} could not be rewritten ({type(err).__name__}: {err}) and still shows the old ones: run the "
            "same command again once the cause is fixed."
        ) from err
    changes = [(j, a, b) for j, (a, b) in enumerate(zip(old, new)) if a != b]
    j, a, b = changes[0]
    return (
        f"Task {name!r} of {directory} relabelled: {', '.join(f'output {j} {a!r} -> {b!r}' for j, a, b in changes)}. "
        f"Its predictions change meaning: the weights are unchanged, so a text predicted {a!r} before (output {j}) "
        f"is now reported as {b!r}. Results recorded before (results.json, the accuracy matrix, the model card's "
        "metrics) were measured with the old labels."
    )
