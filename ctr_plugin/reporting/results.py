"""The one place that knows ``results.json``: what a run writes there, how it is read back, and
what makes it valid.

A run (``ctr_plugin.experiments.run.run``) writes it after every task and at the end (:func:`assemble`,
:func:`write`); ``--resume`` asks whether a directory holds a finished run (:func:`finished`);
the tables read every run of a grid (:func:`read_complete`); the report prints one
(``run_report.format_summary``). The keys, in three parts:

* the progress of the loop (``continual.results.ContinualResults.to_dict``): ``tasks``,
  ``acc_matrix``, ``f1_matrix`` (row i = after task i, column j = task j, percent, ``null`` where
  not yet learned), ``completed_tasks``, ``train_seconds``, ``epochs_kept``, ``params_added``,
  ``checkpoint_bytes``, ``curves`` (per task trained: its name, the losses and validation accuracy per
  epoch, the steps), ``train_steps``, ``scenario`` (``task``, ``domain`` or ``class``: whether the
  tests gave the task id; in Domain-/Class-IL the matrices hold each task's accuracy among every
  class seen so far, without it), ``seen_acc`` (per row i, the accuracy over the test examples of
  tasks 0..i together: Class-IL accuracy after each task), ``task_id_acc`` and ``task_scores``
  (for models that infer the task: the task-id accuracy per row, and both rows per task-id score,
  ``msp`` and ``energy``; empty otherwise), and once every task is learned the headline
  metrics of ``metrics.summarize`` (``final_acc``, ``final_mf1``, ``forward_acc``, ...), or
  ``metrics_unavailable`` saying why not (a task learned without test data: a checkpoint's
  ``progress`` may say so, a results.json may not, every task of a run being tested);
* what the run was (:data:`RUN_KEYS`): method and options, encoder, seed, training and plugin
  options, processes, mixed precision, data source, task sizes, data notes, truncated texts,
  provenance, and for a continued run ``continued_from`` and ``earlier_tasks``;
* at the end, ``wall_seconds``: a run is *finished* when every task is learned and tested and it
  is there.

:func:`read` adds the progress keys that a file written by an earlier version lacks
(:func:`upgrade`; some committed runs under ``reproducibility/`` are such files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ctr_plugin.errors import CTRError
from ctr_plugin.options import SCENARIOS
from ctr_plugin.reporting.metrics import summarize

RESULTS_FILE = "results.json"
REQUIRED = ("tasks", "acc_matrix", "f1_matrix", "completed_tasks")
RUN_KEYS = (
    "method",
    "method_options",
    "encoder",
    "seed",
    "training",
    "plugin",
    "processes",
    "mixed_precision",
    "data",
    "task_sizes",
    "data_notes",
    "truncated_texts",
    "provenance",
    "continued_from",
    "earlier_tasks",
)


def upgrade(data: dict) -> dict:
    """``data`` (a results.json's content, or a checkpoint's ``progress``) with the keys a file
    written by an earlier version lacks: ``params_added``, ``checkpoint_bytes`` and ``curves`` empty
    (not recorded, so the cost columns of the tables leave such a run out) and ``train_steps``
    counted from the curves; ``scenario`` "task" (every run before the scenarios was
    task-incremental) with ``seen_acc``, ``task_id_acc`` and ``task_scores`` empty (not recorded)."""
    data = {"params_added": [], "checkpoint_bytes": [], "curves": []} | data
    data = {"scenario": "task", "seen_acc": [], "task_id_acc": [], "task_scores": {}} | data
    return {"train_steps": sum(curve.get("steps", 0) for curve in data["curves"])} | data


def assemble(progress: dict, run: dict, wall_seconds: float | None = None) -> dict:
    """The content of results.json: the loop's ``progress``, what the ``run`` was (keys of
    :data:`RUN_KEYS` only) and, once it has finished, its ``wall_seconds``."""
    unknown = sorted(set(run) - set(RUN_KEYS))
    if unknown:  # a new key belongs in RUN_KEYS and in the module doc
        raise ValueError(f"results.json has no key(s) {unknown}; declare them in ctr_plugin/reporting/results.py")
    data = progress | run
    if wall_seconds is not None:
        data["wall_seconds"] = round(wall_seconds, 1)
    problems = validate(data)
    if problems:
        raise ValueError(f"results.json would be invalid: {'; '.join(problems)}")
    return data


def write_json_atomic(path: Path, data: dict) -> None:
    """Write beside, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def write(output_dir: str | os.PathLike, data: dict) -> None:
    """Write ``output_dir/results.json`` atomically."""
    write_json_atomic(Path(output_dir) / RESULTS_FILE, data)


def validate(data: object) -> list[str]:
    """What is wrong with a results.json's content (empty: nothing): the required keys, their
    types, square matrices of the tasks' size with values only on and below the diagonal of the
    completed rows, curves of the run's tasks, and headline numbers that agree with the matrices."""
    if not isinstance(data, dict):
        return [f"it holds {type(data).__name__}, not a mapping"]
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        return [f"missing key(s) {missing}"]
    tasks, done = data["tasks"], data["completed_tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        return ["`tasks` must be a non-empty list of task names"]
    if not isinstance(done, int) or not 0 <= done <= len(tasks):
        return [f"`completed_tasks` must be a whole number from 0 to {len(tasks)}, got {done!r}"]
    problems = []
    T = len(tasks)
    for key in ("acc_matrix", "f1_matrix"):
        matrix = data[key]
        if (
            not isinstance(matrix, list)
            or len(matrix) != T
            or not all(isinstance(row, list) and len(row) == T for row in matrix)
        ):
            problems.append(f"`{key}` must be {T} rows of {T} values (one per task)")
            continue
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                expected = i < done and j <= i
                if expected and not (isinstance(value, int | float) and 0 <= value <= 100):
                    problems.append(
                        f"`{key}`[{i}][{j}] must be a percentage (task {j} is tested after task {i}), got {value!r}"
                    )
                elif not expected and value is not None:
                    problems.append(
                        f"`{key}`[{i}][{j}] must be null (task {j} is not tested after task {i} yet), got {value!r}"
                    )
    problems += _curve_problems(data.get("curves", []), tasks, done)
    problems += _scenario_problems(data, done)
    if not problems and done == T and "final_acc" in data:
        headline = summarize(data["acc_matrix"], data["f1_matrix"])
        wrong = [k for k in ("final_acc", "final_mf1") if k in data and abs(data[k] - headline[k]) > 1e-6]
        if wrong:
            problems.append(f"{', '.join(wrong)} disagree with the matrices")
    return problems


def _curve_problems(curves: object, tasks: list[str], done: int) -> list[str]:
    """What is wrong with ``curves``: at most one per completed task, each with its per-epoch
    training loss, validation lists as long (or empty: no validation data), and the name of a task
    of the run, or "a+b" for a joint training."""
    if not isinstance(curves, list) or len(curves) > done or not all(isinstance(c, dict) for c in curves):
        return [f"`curves` must be a list of at most {done} mappings (one per task trained)"]
    problems = []
    for k, curve in enumerate(curves):
        losses = curve.get("train_loss")
        if not isinstance(losses, list):
            problems.append(f"`curves`[{k}] has no `train_loss` list")
            continue
        for key in ("validation_loss", "validation_accuracy"):
            if not isinstance(curve.get(key, []), list) or len(curve.get(key, [])) not in (0, len(losses)):
                problems.append(f"`curves`[{k}].`{key}` must hold one value per epoch ({len(losses)}) or none")
        task = curve.get("task")
        if not isinstance(task, str) or not all(part in tasks for part in task.split("+")):
            problems.append(f"`curves`[{k}] names task {task!r}, which is not a task of the run")
    return problems


def _scenario_problems(data: dict, done: int) -> list[str]:
    """What is wrong with the scenario and its per-row accuracies (absent: an older file, upgraded)."""
    if data.get("scenario", "task") not in SCENARIOS:
        return [f"`scenario` must be one of {', '.join(SCENARIOS)}, got {data['scenario']!r}"]
    rows = {k: data.get(k, []) for k in ("seen_acc", "task_id_acc")}
    scores = data.get("task_scores", {})
    if not isinstance(scores, dict) or not all(isinstance(v, dict) for v in scores.values()):
        return ["`task_scores` must map each task-id score to its `seen_acc` and `task_id_acc` rows"]
    rows |= {f"task_scores.{s}.{k}": v for s, per in scores.items() for k, v in per.items()}
    return [
        f"`{key}` must be a list of at most {done} percentages (one per row) or nulls"
        for key, values in rows.items()
        if not isinstance(values, list)
        or len(values) > done
        or not all(v is None or (isinstance(v, int | float) and 0 <= v <= 100) for v in values)
    ]


def read(path: str | os.PathLike) -> dict:
    """The results.json at ``path`` (a file, or a run's directory), validated and upgraded; CTRError
    naming the file and the problem if it is missing, not JSON, or invalid."""
    path = Path(path)
    path = path / RESULTS_FILE if path.is_dir() else path
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise CTRError(f"Cannot read {path} ({err.strerror or err}): is this a run's output directory?") from None
    except ValueError as err:
        raise CTRError(
            f"{path} is not valid JSON ({err}): the run that wrote it was cut off, or the file was edited. "
            "Run it again."
        ) from None
    problems = validate(data)
    if problems:
        raise CTRError(f"{path} is not a valid results file: {'; '.join(problems)}. Run it again.")
    return upgrade(data)


def is_finished(data: dict) -> bool:
    """Every task learned and tested, and the run's end recorded."""
    return data["completed_tasks"] == len(data["tasks"]) and "final_acc" in data and "wall_seconds" in data


def read_complete(path: str | os.PathLike) -> dict | None:
    """The results at ``path`` if they belong to a finished run, else None (missing, cut off,
    invalid or unfinished: a grid runs it again)."""
    try:
        data = read(path)
    except CTRError:
        return None
    return data if is_finished(data) else None


def finished(output_dir: str | os.PathLike) -> dict | None:
    """The results of the finished run in ``output_dir``, else None (``--resume`` on a finished run changes
    nothing)."""
    return read_complete(Path(output_dir) / RESULTS_FILE)
