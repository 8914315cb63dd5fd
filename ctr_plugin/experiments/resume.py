"""Where a run starts: a fresh model, the interrupted run it resumes, or the checkpoint it continues.

``ctr_plugin.experiments.run`` asks :func:`starting_point` for the model and the results a run
starts from. This module owns the resume and continuation policy:

* ``--resume``: the model and results come from the checkpoint the interrupted run wrote after its
  last completed task, refused for another task sequence (:func:`_resume_state`) or for other
  options than the completed tasks were trained with (:func:`check_resumed_options`,
  :data:`RESUME_MUST_MATCH`);
* ``--from-checkpoint``: a continued run keeps the checkpoint's method, names the checkpoint's
  tasks first (with their labels) and adds at least one new one (:func:`_initial_model`); the
  earlier tasks it is given are re-tested before training (:func:`_retest_earlier_tasks`), and
  results.json says which were and which could not be (:func:`earlier_tasks`).

:func:`directory_bytes` measures a checkpoint (the per-task cost a run records).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import ctr_plugin.reporting.results as results_file
from ctr_plugin.checkpoint.atomic import restore_interrupted_save
from ctr_plugin.continual.evaluation import evaluate
from ctr_plugin.continual.learner import get_continual_model
from ctr_plugin.continual.progress import ContinualResults
from ctr_plugin.encoders.loading import BUNDLED_ENCODER, recorded_encoder_name
from ctr_plugin.errors import CheckpointError, CTRError
from ctr_plugin.experiments.output_dir import CHECKPOINT_DIR
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import check_max_length
from ctr_plugin.reporting.metrics import empty_matrix
from ctr_plugin.reporting.results import RESULTS_FILE

if TYPE_CHECKING:  # run.py imports this module: the settings' type only, never at run time
    from ctr_plugin.experiments.run import RunSettings

log = logging.getLogger(__name__)

__all__ = [
    "RESUME_MUST_MATCH",
    "changed_data",
    "changed_options",
    "check_reused_run",
    "check_resumed_data",
    "check_resumed_options",
    "check_vocabulary",
    "data_fingerprints",
    "directory_bytes",
    "earlier_tasks",
    "starting_point",
]


def starting_point(
    tasks, settings: RunSettings, method, accelerator, output_dir: Path
) -> tuple[ContinualModel, ContinualResults | None]:
    """The model a run trains and the results it starts from: those of the interrupted run it
    resumes, or a fresh model or the checkpoint it continues (with its earlier tasks re-tested);
    the maximum length checked against them, and the model on the run's device."""
    model, results = _resume_state(output_dir, tasks, settings) if settings.resume else (None, None)
    if model is None:
        model = _initial_model(tasks, settings, method)
        if settings.from_checkpoint:
            results = _retest_earlier_tasks(model, method, tasks, settings, accelerator)
    check_vocabulary(model)
    pair = any(t.train.pairs is not None for t in tasks)
    check_max_length(
        settings.training.max_length,
        model.tokenizer,
        model.encoder.config,
        pair=pair,
        option="Training option `max_length` (--max-length, or `max_length:` under `training:`)",
    )
    model.to(accelerator.device)
    return model, results


def check_vocabulary(model: ContinualModel) -> None:
    """Refuse an encoder whose tokenizer gives ids its embedding has no row for: training would
    stop at the first such token with an index error, after the run had started writing."""
    rows = model.encoder.get_input_embeddings().num_embeddings
    ids = len(model.tokenizer)
    if ids > rows:
        raise CTRError(
            f"The encoder {model.encoder_name} does not fit its tokenizer: the tokenizer has {ids} token ids, but the "
            f"embedding has only {rows} rows, so a text with a token id >= {rows} cannot be encoded. Use the "
            "tokenizer saved with the encoder, or resize the encoder's embedding to the tokenizer "
            "(model.resize_token_embeddings(len(tokenizer)), then save both) and train again."
        )


def _resume_state(output_dir: Path, tasks, settings: RunSettings):
    """The model and results after the last task an interrupted run completed (None, None if none).

    Both come from the checkpoint directory, which is replaced atomically after every task: the
    results saved inside it always belong to exactly the weights beside them.
    """
    checkpoint = output_dir / CHECKPOINT_DIR
    restore_interrupted_save(checkpoint)  # a save cut between its two renames left it aside
    if not checkpoint.is_dir():
        log.info("No task of the interrupted run was completed: starting from the first task.")
        return None, None
    progress = ContinualModel.read_config(checkpoint).get("progress")
    names = [t.name for t in tasks]
    if not progress or progress.get("tasks") != names:
        raise CTRError(
            f"Cannot resume {output_dir}: its checkpoint was made for the task sequence "
            f"{(progress or {}).get('tasks')}, but this command gives {names}. Resume with the same "
            f"config, order and datasets as the interrupted run, or start a new --output-dir."
        )
    check_resumed_data(output_dir, ContinualModel.read_config(checkpoint).get("data_fingerprints"), tasks)
    model = ContinualModel.from_pretrained(checkpoint, encoder=settings.encoder)
    results = ContinualResults.from_dict(progress)
    if len(results.checkpoint_bytes) == results.completed_tasks - 1:  # measured after the checkpoint was written
        results.checkpoint_bytes.append(directory_bytes(checkpoint))
    log.info("Resuming %s after %d of %d tasks.", output_dir, results.completed_tasks, len(tasks))
    return model, results


SPLITS = ("train", "validation", "test")


def split_fingerprint(split) -> str:
    """SHA-256 over a split's texts, second texts and labels, example by example, in order."""
    digest = hashlib.sha256()
    pairs = split.pairs if split.pairs is not None else [None] * len(split.texts)
    for text, pair, label in zip(split.texts, pairs, split.labels, strict=True):
        digest.update(json.dumps([text, pair, int(label)], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def data_fingerprints(tasks) -> dict[str, dict[str, str]]:
    """Per task, the fingerprint of each split (:func:`split_fingerprint`): what results.json and
    the checkpoint record, so that a resumed run or a grid reusing a run can tell the data changed."""
    return {t.name: {name: split_fingerprint(getattr(t, name)) for name in SPLITS} for t in tasks}


def changed_data(recorded: dict, tasks) -> list[str]:
    """The splits whose data differs from ``recorded`` (:func:`data_fingerprints`), each as
    "task 'NAME' split (source)"; recorded tasks missing here are left to the task-name checks."""
    now = data_fingerprints(tasks)
    by_name = {t.name: t for t in tasks}
    changed = []
    for name, splits in recorded.items():
        if name not in now:
            continue
        source = f" (from {by_name[name].source})" if by_name[name].source else ""
        changed += [f"task {name!r} {split}{source}" for split in SPLITS if splits.get(split) != now[name][split]]
    return changed


def check_resumed_data(output_dir: Path, recorded: dict | None, tasks) -> None:
    """Refuse to resume with data other than the interrupted run's: its completed tasks' rows of
    the matrix were tested on the old test sets, so new ones would mix two test sets in one matrix."""
    if recorded is None:
        log.warning(
            "The checkpoint in %s records no data fingerprints (an older version wrote it): whether the "
            "data changed since the interrupted run cannot be checked.",
            output_dir,
        )
        return
    changed = changed_data(recorded, tasks)
    if changed:
        raise CTRError(
            f"Cannot resume {output_dir}: the data changed since the interrupted run started "
            f"({'; '.join(changed)}): its completed tasks were trained and tested on the old data, so the "
            f"matrix would mix two data sets. Restore the data files, or start a new --output-dir. Nothing in "
            f"{output_dir} was changed."
        )


RESUME_MUST_MATCH = ("method", "method_options", "encoder", "seed", "training")


def check_resumed_options(output_dir: Path, run: dict) -> None:
    """Refuse to resume with options other than those the interrupted run trained its tasks with.

    A resumed run re-derives its options from the command it recorded, so a config or tuned-options
    file edited since would otherwise change the method half-way through a sequence, silently.
    Only the progress bars may differ.
    """
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        return
    changed = changed_options(results_file.read(path), run, RESUME_MUST_MATCH)
    if changed:
        raise CTRError(
            f"Cannot resume {output_dir}: its completed tasks were trained with other options than this command "
            f"now gives ({'; '.join(changed)}), e.g. because a config or tuned-options file changed since. "
            "Restore that file to continue the run as it started, or start a new --output-dir. "
            f"Nothing in {output_dir} was changed."
        )


def changed_options(recorded: dict, now: dict, keys) -> list[str]:
    """Each option under ``keys`` whose value in the run record ``now`` differs from ``recorded``
    (a results.json), as "key.option: OLD then, NEW now"; the progress bars are not compared."""
    now = json.loads(json.dumps({k: now.get(k) for k in keys}))  # tuples as lists, as recorded
    changed = []
    for key in keys:
        old, new = recorded.get(key), now[key]
        if key == "training":
            old, new = ({k: v for k, v in (d or {}).items() if k != "progress"} for d in (old, new))
        if key == "method_options" and isinstance(old, dict) and isinstance(new, dict):
            new = {k: v for k, v in new.items() if k in old or not _added_at_default(recorded.get("method"), k, v)}
        if isinstance(old, dict) and isinstance(new, dict):
            changed += [
                f"{key}.{k}: {old.get(k)!r} then, {new.get(k)!r} now"
                for k in sorted(old.keys() | new.keys())
                if old.get(k) != new.get(k)
            ]
        elif old != new:
            changed.append(f"{key}: {old!r} then, {new!r} now")
    return changed


def _added_at_default(method: str | None, option: str, value) -> bool:
    """Whether ``option`` of ``method``, absent from a run's record, is at its declared default:
    an option added to the method since the run was made (its default keeps the behaviour the
    run had, e.g. ``ood_replay=0``), which is no change."""
    from ctr_plugin.continual.methods import METHODS

    declared = {f.name: f.default for f in dataclasses.fields(METHODS[method])} if method in METHODS else {}
    return option in declared and json.loads(json.dumps(declared[option])) == value


GRID_MUST_MATCH = (*RESUME_MUST_MATCH, "plugin")


def settings_record(settings: RunSettings) -> dict:
    """What a run made with ``settings`` records under :data:`GRID_MUST_MATCH` in its results.json,
    known without loading the model: to compare with a run already on disk."""
    method = settings.method
    return {
        "method": method.name,
        "method_options": method.options(),
        "encoder": recorded_encoder_name(settings.encoder) or BUNDLED_ENCODER,
        "seed": settings.training.seed,
        "training": settings.training.to_dict(),
        "plugin": method.plugin_config(settings.plugin).to_dict(),
    }


def check_reused_run(run_dir: Path, recorded: dict, settings: RunSettings, tasks=None) -> None:
    """Refuse to count the finished run in ``run_dir`` (its results.json ``recorded``) as this
    command's when it was made with other options, or (``tasks`` given) on other data: a grid
    would otherwise table the old runs under the new command."""
    changed = changed_options(recorded, settings_record(settings), GRID_MUST_MATCH)
    if tasks is not None:
        fingerprints = (recorded.get("data") or {}).get("fingerprints")
        if fingerprints is not None:
            changed += [f"the data of {c}" for c in changed_data(fingerprints, tasks)]
        else:  # written before fingerprints: the sizes at least
            sizes = {
                t.name: {"train": len(t.train), "validation": len(t.validation), "test": len(t.test)} for t in tasks
            }
            if recorded.get("task_sizes") != sizes:
                changed.append(f"task_sizes: {recorded.get('task_sizes')} then, {sizes} now")
    if changed:
        raise CTRError(
            f"{run_dir} holds a finished run made with other options or data than this command gives "
            f"({'; '.join(changed)}): it would be counted as done and tabled under this command. Give the options "
            f"it was made with, use another --output-dir for the new ones, or delete {run_dir} (or the whole grid's "
            "runs/) to make it again with them."
        )


def _initial_model(tasks, settings: RunSettings, method) -> ContinualModel:
    """A fresh model, or the checkpoint a continued run starts from. A continued run keeps the
    checkpoint's method; the checkpoint's tasks it names come first (they are re-tested, not
    trained), with the labels the checkpoint knows them by, and at least one new task follows."""
    encoder_name = recorded_encoder_name(settings.encoder)
    if not settings.from_checkpoint:
        return get_continual_model(encoder_name, method.plugin_config(settings.plugin), method=method)
    config = ContinualModel.read_config(settings.from_checkpoint)
    trained_by = config.get("method")
    if trained_by is not None and trained_by != method.name:
        raise CTRError(
            f"The checkpoint {settings.from_checkpoint} was trained with method {trained_by!r}, "
            f"but this run asks for {method.name!r}. A continued run keeps the checkpoint's method: "
            f"drop --method, or pass --method {trained_by}."
        )
    if not (method.resumable if method.continuable is None else method.continuable):
        raise CTRError(
            f"Method {method.name!r} keeps state across tasks that a checkpoint does not hold (see its file in "
            f"ctr_plugin/continual/methods/), so it cannot go on from a checkpoint without silently losing it: train "
            f"all tasks in one run instead."
        )
    model = ContinualModel.from_pretrained(settings.from_checkpoint, encoder=encoder_name)
    names = [t.name for t in tasks]
    known = [n for n in names if n in model.task_names]
    if names[: len(known)] != known:
        raise CTRError(
            f"The checkpoint {settings.from_checkpoint} already learned {known}. Tasks it knows are re-tested, "
            "not trained again, and must come before the new ones: "
            f"order the tasks as {known + [n for n in names if n not in known]}."
        )
    if len(known) == len(names):
        raise CTRError(
            f"Every task given ({', '.join(names)}) is already in the checkpoint {settings.from_checkpoint}: "
            "add at least one new task."
        )
    for task in tasks[: len(known)]:
        stored = model.label_names[model.task_id(task.name)]
        if list(task.label_names) != list(stored):
            raise CTRError(
                f"Task {task.name!r} has labels {task.label_names} here, "
                f"but the checkpoint {settings.from_checkpoint} learned it with labels {stored}: "
                "its test data would be scored against the wrong classes. "
                "Give the task's original data (or `labels:` in the checkpoint's order)."
            )
        carved = any(note.startswith("test: carved") for note in task.notes)
        if carved and config.get("seed") is not None and config["seed"] != settings.training.seed:
            raise CTRError(
                f"Task {task.name!r}'s test split is carved from its data with the run's seed, "
                f"and the checkpoint was trained with seed {config['seed']}, not {settings.training.seed}: "
                "with another seed its test split would hold examples it was trained on. "
                f"Pass --seed {config['seed']}, or give the task a test file."
            )
    return model


def _retest_earlier_tasks(
    model: ContinualModel, method, tasks, settings: RunSettings, accelerator
) -> ContinualResults | None:
    """For a continued run that names some of the checkpoint's tasks first: their scores before
    this run, in the rows of those tasks (as if learned in this run: the diagonal holds the
    starting point their forgetting is measured from), and the run continues after them."""
    k = sum(t.name in model.task_names for t in tasks)
    if k == 0:
        return None
    names = [t.name for t in tasks]
    results = ContinualResults(
        names,
        empty_matrix(len(tasks)),
        empty_matrix(len(tasks)),
        completed_tasks=k,
        epochs_kept=[0] * k,
        continuing_checkpoint=True,
    )
    for j, task in enumerate(tasks[:k]):
        task_id = model.task_id(task.name)
        method.before_evaluate(model, task_id)
        scores = evaluate(
            model, task.test, task_id, settings.training, desc=f"test {task.name}", accelerator=accelerator
        )
        for i in range(j, k):
            results.acc_matrix[i][j], results.f1_matrix[i][j] = round(scores["acc"], 2), round(scores["mf1"], 2)
    log.info(
        "Re-tested the checkpoint's tasks %s before training: accuracy %s.",
        names[:k],
        [results.acc_matrix[k - 1][j] for j in range(k)],
    )
    return results


def earlier_tasks(checkpoint, tasks) -> dict:
    """What results.json says about the checkpoint a run continued: which of its tasks were
    re-tested (those whose data came with the run) and which could not be."""
    try:
        earlier = [t["name"] for t in ContinualModel.read_config(checkpoint)["tasks"]]
    except CheckpointError:  # a resumed run whose source checkpoint has gone since
        return {"tasks": None, "note": f"the checkpoint {checkpoint} could no longer be read when this run resumed"}
    given = {t.name for t in tasks}
    retested = [n for n in earlier if n in given]
    untested = [n for n in earlier if n not in given]
    notes = []
    if retested:
        notes.append(
            "the rows of the re-tested tasks hold the checkpoint's scores before this run: "
            "their forgetting is measured from there"
        )
    if untested:
        log.warning(
            "Continuing %s: its tasks %s are not re-tested, because their data is not part of this run, "
            "so their forgetting is not measured (give them first, before the new tasks, to measure it).",
            checkpoint,
            ", ".join(untested),
        )
        notes.append(
            f"not re-tested, because their data was not given: {', '.join(untested)}; their forgetting is not measured"
        )
    return {"tasks": earlier, "retested": retested, "not_retested": untested, "note": "; ".join(notes)}


def directory_bytes(directory: Path) -> int:
    """The size of the files under ``directory`` (a checkpoint), in bytes."""
    return sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())
