"""Paper-style Task-CL tables from a folder of runs: per method, mean ± std and a 95 % CI over runs,
and paired comparisons of CTR with every other method.

A grid folder (written by ``ctr-tables``) holds ``runs/<method>/<run>/results.json``,
one run per task order and seed (``order<k>_seed<s>``): runs of two methods with the same folder
name saw the same data in the same order, so they are *matched*. This module reads every
complete run there, computes each run's metrics from its matrices (``metrics.run_metrics``, so
every run gets every metric, whichever version wrote it), summarises each method and compares them;
``ctr_plugin.experiments.grid_tables.build_tables`` writes, beside ``runs/``:

* ``table.md``, ``table.tex``: three tables.

  1. Per method (grouped like the paper by each method class's ``table_group``): final accuracy
     and macro-F1 with their 95 % CI, forgetting as CTR defines it and as Chaudhry et al. do,
     learning accuracy, average incremental accuracy, and the knowledge transfer against the
     method's ONE reference (the class's ``one_reference``): the mean over matched runs of the
     method's final accuracy minus the reference's, with its CI.
  2. Paired comparison of each method of the reference group (CTR and its variants) with every
     other method over their matched runs: the mean difference in final accuracy and macro-F1
     with its 95 % CI, wins / losses / ties, and the verdict "better", "worse" or "within noise"
     (``ctr_plugin.reporting.stats``).
  3. Cost per task: training seconds, parameters added, checkpoint bytes added.

  Below them, the examples per task (train / test) the runs used, and the metrics' definitions;
* ``table.csv`` (every metric's mean, std and CI per method) and ``comparisons.csv``;
* ``heatmaps/<method>.png``: the mean accuracy matrix, by position in the sequence (the task at
  position j differs between task orders);
* ``final_scores.png``: final accuracy and macro-F1 per method with 95 % CI error bars;
  ``comparisons.png``: the paired differences in final accuracy with their CIs.

Intervals are Student's t over runs (see ``ctr_plugin/reporting/stats.py``). Nothing is re-run: a table
can be rebuilt, checked and extended from committed ``runs/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctr_plugin.continual.methods import COMPARED_GROUP, METHODS, TABLE_GROUPS
from ctr_plugin.errors import CTRError
from ctr_plugin.reporting.metrics import Matrix, knowledge_transfer, run_metrics
from ctr_plugin.reporting.results import RESULTS_FILE, is_finished, read
from ctr_plugin.reporting.stats import Estimate, PairedComparison, paired_comparison, t_interval

log = logging.getLogger(__name__)

RUNS_DIR = "runs"


@dataclass(frozen=True)
class Metric:
    key: str  # in metrics.run_metrics
    label: str  # column header
    higher_is_better: bool
    fmt: Callable[[float], str] = lambda v: f"{v:.2f}"


def _thousands(v: float) -> str:
    return f"{v:,.0f}"


ACCURACY_METRICS = (
    Metric("final_acc", "final acc", True),
    Metric("final_mf1", "final mF1", True),
    Metric("forgetting_rate", "forgetting (CTR)", False),
    Metric("max_forgetting", "forgetting (Chaudhry)", False),
    Metric("bwt", "BWT", True),
    Metric("forward_acc", "learning acc", True),
    Metric("avg_incremental_acc", "avg incr. acc", True),
)
COST_METRICS = (
    Metric("train_seconds_per_task", "train s / task", False, lambda v: f"{v:.0f}"),
    Metric("params_added_per_task", "params added / task", False, _thousands),
    Metric("checkpoint_bytes_per_task", "checkpoint bytes added / task", False, _thousands),
)
METRICS = ACCURACY_METRICS + COST_METRICS
COMPARED = ("final_acc", "final_mf1")  # the metrics of the paired-comparison table
WITH_CI = ("final_acc", "final_mf1")  # the main table's columns that show their CI


def _method_class(method: str):
    """The method's class, whose declarations (``table_group``, ``one_reference``) place it in the
    tables; None for a name no registered method has."""
    return METHODS.get(method)


def group_of(method: str) -> str:
    """The table group the method's class declares (``table_group``); "other" for unknown names."""
    cls = _method_class(method)
    return cls.table_group if cls else "other"


def one_reference(method: str) -> str | None:
    """The ONE method (one model per task) that a method's knowledge transfer is measured against,
    as its class declares (``one_reference``); None for unknown names."""
    cls = _method_class(method)
    return cls.one_reference if cls else None


@dataclass
class Run:
    name: str  # the run's folder, order<k>_seed<s>: the key that matches runs of two methods
    results: dict  # its results.json
    metrics: dict[str, float] = field(default_factory=dict)  # metrics.run_metrics(results)


def load_runs(grid_dir: str | Path) -> dict[str, list[Run]]:
    """Complete runs per method, from ``grid_dir/runs/<method>/<run>/results.json`` (sorted by run)."""
    runs: dict[str, list[Run]] = {}
    for path in sorted(Path(grid_dir, RUNS_DIR).glob(f"*/*/{RESULTS_FILE}")):
        try:
            data = read(path)
        except CTRError as err:  # left out of the tables, and said so
            log.warning("Left out of the tables: %s", err)
            continue
        if is_finished(data):
            runs.setdefault(path.parent.parent.name, []).append(Run(path.parent.name, data, run_metrics(data)))
    return runs


@dataclass
class MethodRow:
    method: str
    group: str
    runs: int
    estimates: dict[str, Estimate]  # per metric that every run of the method has
    mean_acc_matrix: Matrix
    reference: str | None = None  # the ONE method
    transfer: Estimate | None = None  # final accuracy minus the reference's, over matched runs

    @property
    def mean(self) -> dict[str, float]:
        return {k: e.mean for k, e in self.estimates.items()}

    @property
    def std(self) -> dict[str, float]:
        return {k: e.std for k, e in self.estimates.items()}


def mean_matrix(matrices: list[Matrix]) -> Matrix:
    """Element-wise mean of equally sized lower-triangular matrices (None stays None)."""
    T = len(matrices[0])
    return [
        [None if matrices[0][i][j] is None else float(np.mean([m[i][j] for m in matrices])) for j in range(T)]
        for i in range(T)
    ]


def _method_order(methods) -> list[str]:
    registry = list(METHODS)
    groups = list(TABLE_GROUPS) + sorted({group_of(m) for m in methods} - set(TABLE_GROUPS) - {"other"}) + ["other"]
    return sorted(
        methods, key=lambda m: (groups.index(group_of(m)), registry.index(m) if m in registry else len(registry), m)
    )


def by_run(runs: list[Run], key: str) -> dict[str, float]:
    """The metric ``key`` of each run, by run name (runs that lack it are left out)."""
    return {r.name: r.metrics[key] for r in runs if key in r.metrics}


def summarize_runs(runs: dict[str, list[Run]]) -> list[MethodRow]:
    """One row per method with runs, grouped by ``table_group`` (unknown methods last)."""
    rows = {}
    for method in _method_order(runs):
        estimates = {}
        for metric in METRICS:
            values = list(by_run(runs[method], metric.key).values())
            if len(values) == len(runs[method]):  # a cost not recorded for every run (metrics.cost_per_task) stays out
                estimates[metric.key] = t_interval(values)
        rows[method] = MethodRow(
            method,
            group_of(method),
            len(runs[method]),
            estimates,
            mean_matrix([r.results["acc_matrix"] for r in runs[method]]),
        )
    for row in rows.values():
        ref = one_reference(row.method)
        if ref in rows:
            row.reference = ref
            own, theirs = by_run(runs[row.method], "final_acc"), by_run(runs[ref], "final_acc")
            matched = sorted(set(own) & set(theirs))
            if matched:
                row.transfer = t_interval([knowledge_transfer(own[k], theirs[k]) for k in matched])
    return list(rows.values())


def compare_methods(runs: dict[str, list[Run]], reference_group: str | None = None) -> list[PairedComparison]:
    """Each method of ``reference_group`` (default: the methods' ``COMPARED_GROUP``) against every
    other method, per metric in ``COMPARED``, over matched runs (methods without a matched run are
    left out)."""
    reference_group = reference_group or COMPARED_GROUP
    order = _method_order(runs)
    out = []
    for ref in (m for m in order if group_of(m) == reference_group):
        for other in (m for m in order if m != ref):
            for metric in (m for m in METRICS if m.key in COMPARED):
                c = paired_comparison(
                    ref,
                    by_run(runs[ref], metric.key),
                    other,
                    by_run(runs[other], metric.key),
                    metric.key,
                    metric.higher_is_better,
                )
                if c is not None:
                    out.append(c)
    return out


def task_sizes(runs: dict[str, list[Run]]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per task (in the order first seen) and split (train, test): the smallest and largest
    number of examples over all runs."""
    sizes: dict[str, dict[str, list[int]]] = {}
    for method_runs in runs.values():
        for r in method_runs:
            for task, counts in (r.results.get("task_sizes") or {}).items():
                for split in ("train", "test"):
                    if split in counts:
                        sizes.setdefault(task, {}).setdefault(split, []).append(int(counts[split]))
    return {t: {s: (min(v), max(v)) for s, v in splits.items()} for t, splits in sizes.items()}
