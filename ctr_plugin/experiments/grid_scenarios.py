"""What a grid's tables add in Domain-IL and Class-IL, and the rule that a table holds one scenario.

A run records its scenario (``results.json``'s ``scenario``: ``task``, ``domain`` or ``class``;
``ctr_plugin/reporting/results.py``). The paper-style tables (``grid_summary``, ``grid_tables``)
read the accuracy matrix, whose cells in Domain-/Class-IL are measured without the task id, so
their means, intervals and paired verdicts keep their definitions. Beside them a scenario grid
gets two tables built here from what every such run records:

* **accuracy over all tasks seen so far** (``seen_acc``), after each task: the Class-IL accuracy
  curve (Domain-IL: among the shared labels), by position in the sequence;
* **task-id inference** for the methods that infer the task (per-task modules: ctr, adapter_hat,
  adapter_one, ...; ``task_scores``): after the last task, the task-id accuracy and the accuracy
  over every task's test examples, for each task-id score (``msp``, the one the matrices use, and
  ``energy``).

:func:`scenario_of` refuses a set of runs that mixes scenarios (a table would average a Task-IL run
with a Class-IL one), or whose scenario is not the one the command expects. Nothing here imports
torch.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ctr_plugin.errors import CTRError
from ctr_plugin.reporting.stats import Estimate, t_interval

SCENARIO_NAMES = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}
DASH = "—"


def grid_title(sequence: str, scenario: str, num_tasks: int) -> str:
    """A grid's table heading: the sequence, its scenario and its length."""
    return f"{sequence}: {SCENARIO_NAMES[scenario]}, {num_tasks} tasks"


def scenario_of(runs: dict[str, list], expected: str | None = None, where: str = "the grid") -> str | None:
    """The one scenario of ``runs`` (``grid_summary.load_runs``'s: per method, its runs), None
    without runs. CTRError when they mix scenarios (naming which runs are which), or when
    ``expected`` is given and they are of another."""
    found: dict[str, list[str]] = {}
    for method, method_runs in sorted(runs.items()):
        for r in method_runs:
            found.setdefault(r.results.get("scenario", "task"), []).append(f"{method}/{r.name}")
    if len(found) > 1:
        listed = "; ".join(
            f"{SCENARIO_NAMES[s]}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
            for s, names in found.items()
        )
        raise CTRError(
            f"The runs under {where} mix scenarios ({listed}). A table compares runs of one scenario: give each "
            "scenario's grid its own --output-dir, and move the others' runs out of this one."
        )
    scenario = next(iter(found), None)
    if expected is not None and scenario is not None and scenario != expected:
        raise CTRError(
            f"The runs under {where} are {SCENARIO_NAMES[scenario]}, but this command's config is "
            f"{SCENARIO_NAMES[expected]}: tabling them under it would mislabel them (and a grid would add runs of "
            "another scenario). Name the config they were made with, or another --output-dir."
        )
    return scenario


def _final(values: list | None) -> float | None:
    return values[-1] if values else None


def _at(values: list | None, i: int) -> float | None:
    return values[i] if values and i < len(values) else None


def _estimate(values: list[float | None]) -> Estimate | None:
    """The t-interval of ``values``, or None unless every run has one (a table row over some runs
    only would not be the row of the others' columns)."""
    return t_interval(values) if values and None not in values else None


def task_scores_of(runs: dict[str, list]) -> list[str]:
    """The task-id scores the runs recorded (``msp`` first: the one the matrices use)."""
    names = {s for method_runs in runs.values() for r in method_runs for s in r.results.get("task_scores") or {}}
    return sorted(names, key=lambda s: (s != "msp", s))


def seen_rows(runs: dict[str, list], methods: list[str]) -> tuple[list[str], list[list[str]], list[list]]:
    """The table of accuracy over all tasks seen so far: (columns, markdown cells, csv rows)."""
    positions = max((len(r.results.get("seen_acc") or []) for rs in runs.values() for r in rs), default=0)
    columns = ["method", "runs"] + [f"after task {i + 1}" for i in range(positions)] + ["final [95 % CI]"]
    cells, table = [], []
    for method in methods:
        estimates = [_estimate([_at(r.results.get("seen_acc"), i) for r in runs[method]]) for i in range(positions)]
        final = estimates[-1] if estimates else None
        cells.append([method, str(len(runs[method]))] + [_pm(e) for e in estimates] + [_ci(final)])
        table += [[method, "seen_acc", i + 1, *_csv(e)] for i, e in enumerate(estimates)]
    return columns, cells, table


def task_id_rows(runs: dict[str, list], methods: list[str]) -> tuple[list[str], list[list[str]], list[list]]:
    """The task-id table, for the methods whose runs inferred the task: (columns, cells, csv rows)."""
    scores = task_scores_of(runs)
    columns = ["method", "runs"]
    for score in scores:
        columns += [f"task-id acc, {score} [95 % CI]", f"acc over all tasks, {score}"]
    cells, table = [], []
    for method in methods:
        per_run = [r.results.get("task_scores") or {} for r in runs[method]]
        if not any(per_run):
            continue  # a shared head infers no task
        row = [method, str(len(runs[method]))]
        for score in scores:
            task_id = _estimate([_final((s.get(score) or {}).get("task_id_acc")) for s in per_run])
            seen = _estimate([_final((s.get(score) or {}).get("seen_acc")) for s in per_run])
            interval = (
                "" if task_id is None or task_id.ci_low is None else f" [{task_id.ci_low:.2f}, {task_id.ci_high:.2f}]"
            )
            row += [_pm(task_id) + interval, _pm(seen)]
            table += [[method, f"task_id_acc.{score}", "final", *_csv(task_id)]]
            table += [[method, f"seen_acc.{score}", "final", *_csv(seen)]]
        cells.append(row)
    return columns, cells, table


def _pm(e: Estimate | None) -> str:
    return DASH if e is None else f"{e.mean:.2f} ± {e.std:.2f}"


def _ci(e: Estimate | None) -> str:
    if e is None:
        return DASH
    return f"{e.mean:.2f}" + ("" if e.ci_low is None else f" [{e.ci_low:.2f}, {e.ci_high:.2f}]")


def _csv(e: Estimate | None) -> list:
    if e is None:
        return [""] * 5
    return [e.n, *("" if v is None else f"{v:.4f}" for v in (e.mean, e.std, e.ci_low, e.ci_high))]


def scenario_sections(runs: dict[str, list], methods: list[str], scenario: str) -> list[tuple[str, list, list, str]]:
    """The scenario's tables, each (title, columns, cells, note), for ``methods`` in table order;
    none in Task-IL (its tables are the paper's alone)."""
    if scenario == "task" or not methods:
        return []
    name = SCENARIO_NAMES[scenario]
    among = "every class seen so far" if scenario == "class" else "the labels every task shares"
    columns, cells, _ = seen_rows(runs, methods)
    sections = [
        (
            f"Accuracy over all tasks seen so far ({name}, after each task)",
            columns,
            cells,
            f"{name}: no task id at test time; every cell of the accuracy matrix above, and these, are measured "
            f"without it, the model choosing among {among}. After task i: the share of the test examples of the "
            "first i tasks together (example-weighted) classified correctly (results.json `seen_acc`), by position "
            "in the sequence (the task at a position differs between orders); mean ± std over runs.",
        )
    ]
    columns, cells, _ = task_id_rows(runs, methods)
    if cells:
        sections.append(
            (
                f"Task-id inference ({name}, per-task-module methods, after the last task)",
                columns,
                cells,
                "Per-task-module methods infer the task of each test example (Kim et al. 2022: within-task "
                "prediction × task-id prediction) from an out-of-distribution score of every task's modules: msp, "
                "the maximum softmax probability (the score the matrices and the tables above use), or energy "
                "(logsumexp of a task's logits). Task-id acc: the share of all test examples whose inferred task is "
                "their own; acc over all tasks: the share classified correctly, with that score. Shared-head "
                "methods infer no task and are not listed.",
            )
        )
    return sections


def write_scenario_csv(runs: dict[str, list], methods: list[str], path: Path) -> None:
    """``scenario.csv``: per method, metric (``seen_acc``, ``task_id_acc.<score>``,
    ``seen_acc.<score>``) and position (after task i, or ``final``): runs, mean, std, CI."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "metric", "after_task", "runs", "mean", "std", "ci_low", "ci_high"])
        writer.writerows(seen_rows(runs, methods)[2] + task_id_rows(runs, methods)[2])


__all__ = [
    "SCENARIO_NAMES",
    "grid_title",
    "scenario_of",
    "scenario_sections",
    "seen_rows",
    "task_id_rows",
    "write_scenario_csv",
]
