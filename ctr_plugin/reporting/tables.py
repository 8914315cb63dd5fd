"""Paper-style Task-CL tables from a folder of runs: per method, mean ± std and a 95 % CI over runs,
and paired comparisons of CTR with every other method.

A grid folder (written by ``ctr-tables``) holds ``runs/<method>/<run>/results.json``,
one run per task order and seed (``order<k>_seed<s>``): runs of two methods with the same folder
name saw the same data in the same order, so they are *matched*. :func:`build_tables` reads every
complete run there, computes each run's metrics from its matrices (``metrics.run_metrics``, so
every run gets every metric, whichever version wrote it) and writes, beside ``runs/``:

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

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctr_plugin.errors import CTRError
from ctr_plugin.reporting.metrics import Matrix, knowledge_transfer, run_metrics
from ctr_plugin.reporting.results import RESULTS_FILE, is_finished, read
from ctr_plugin.reporting.run_report import plot_matrix, pyplot
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


def _method_registry():
    """The methods, their table groups in order, and the group compared with every other: all
    declared by the methods (``continual/methods/``), none named here."""
    from ctr_plugin.continual import methods

    return methods.METHODS, methods.TABLE_GROUPS, methods.COMPARED_GROUP


def _method_class(method: str):
    return _method_registry()[0].get(method)


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
    registered, declared, _ = _method_registry()
    registry = list(registered)
    groups = list(declared) + sorted({group_of(m) for m in methods} - set(declared) - {"other"}) + ["other"]
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
    reference_group = reference_group or _method_registry()[2]
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


# ---- cells ------------------------------------------------------------------------------------
DASH = "—"


def _pm(e: Estimate | None, metric: Metric, pm: str) -> str:
    return DASH if e is None else f"{metric.fmt(e.mean)} {pm} {metric.fmt(e.std)}"


def _ci(e: Estimate | None) -> str:
    return DASH if e is None or e.ci_low is None else f"[{e.ci_low:.2f}, {e.ci_high:.2f}]"


def _signed_ci(e: Estimate) -> str:
    ci = "" if e.ci_low is None else f" [{e.ci_low:+.2f}, {e.ci_high:+.2f}]"
    return f"{e.mean:+.2f}{ci}"


MAIN_COLUMNS = [
    "method",
    "runs",
    *[
        c
        for m in ACCURACY_METRICS
        if m.key != "bwt"
        for c in ([m.label, "95 % CI"] if m.key in WITH_CI else [m.label])
    ],  # BWT: in the CSV
    "transfer vs ONE [95 % CI]",
]
COMPARISON_COLUMNS = [
    "reference",
    "vs method",
    "matched runs",
    *[
        c
        for key in COMPARED
        for c in (f"Δ {next(m.label for m in METRICS if m.key == key)} [95 % CI]", "wins / losses / ties", "verdict")
    ],
]
COST_COLUMNS = ["method", "runs"] + [m.label for m in COST_METRICS]


def _main_cells(row: MethodRow, pm: str) -> list[str]:
    cells = [row.method, str(row.runs)]
    for m in ACCURACY_METRICS:
        if m.key == "bwt":
            continue
        cells.append(_pm(row.estimates.get(m.key), m, pm))
        if m.key in WITH_CI:
            cells.append(_ci(row.estimates.get(m.key)))
    if row.method == row.reference:
        cells.append("0 (reference)")
    else:
        cells.append(DASH if row.transfer is None else f"{_signed_ci(row.transfer)} vs {row.reference}")
    return cells


def _comparison_rows(comparisons: list[PairedComparison]) -> list[list[str]]:
    pairs: dict[tuple[str, str], dict[str, PairedComparison]] = {}
    for c in comparisons:
        pairs.setdefault((c.reference, c.method), {})[c.metric] = c
    rows = []
    for (ref, method), by_metric in pairs.items():
        cells = [ref, method, str(max(c.difference.n for c in by_metric.values()))]
        for key in COMPARED:
            c = by_metric.get(key)
            cells += (
                [DASH] * 3 if c is None else [_signed_ci(c.difference), f"{c.wins} / {c.losses} / {c.ties}", c.verdict]
            )
        rows.append(cells)
    return rows


def _cost_cells(row: MethodRow, pm: str) -> list[str]:
    return [row.method, str(row.runs)] + [_pm(row.estimates.get(m.key), m, pm) for m in COST_METRICS]


def _grouped(rows: list[MethodRow]) -> list[tuple[str, list[MethodRow]]]:
    groups = list(dict.fromkeys(r.group for r in rows))
    return [(g, [r for r in rows if r.group == g]) for g in groups]


def sizes_line(sizes: dict[str, dict[str, tuple[int, int]]]) -> str:
    def span(lo_hi: tuple[int, int] | None) -> str:
        return "?" if lo_hi is None else str(lo_hi[0]) if lo_hi[0] == lo_hi[1] else f"{lo_hi[0]}–{lo_hi[1]}"

    parts = [f"{task} {span(s.get('train'))} / {span(s.get('test'))}" for task, s in sizes.items()]
    return (
        "Examples per task in these runs (train / test; a range where runs differ): " + ", ".join(parts) + "."
        if parts
        else ""
    )


NOTES = (
    "Accuracy and macro-F1 in %, mean ± sample std over task orders × seeds, and the 95 % confidence "
    "interval of the mean (Student's t over runs; none with one run). Final: mean of the last row of "
    "the accuracy matrix A. Forgetting (CTR): mean over earlier tasks j of A[j][j] − A[T−1][j] (Ke et "
    "al. 2021; BWT = −this, in table.csv). Forgetting (Chaudhry): mean over earlier tasks of the best "
    "accuracy before the last task minus the final one (Chaudhry et al. 2018). Learning acc: mean of "
    "the diagonal (each task just after learning it). Avg incr. acc: mean over the sequence of the "
    "average accuracy on the tasks learned so far (Rebuffi et al. 2017). Transfer vs ONE (Ke et al.'s "
    "convention): final accuracy minus that of the method's ONE reference (a separate model per task) "
    "on the same order and seed, averaged over those matched runs. bert_mtl is trained on all tasks at "
    "once (not continual): its forgetting is 0 by construction.",
    "Paired comparison: per matched run (same order and seed), the reference's score minus the "
    "method's; mean and 95 % CI over those runs (paired t). Verdict about the reference: better (CI "
    "above 0), worse (CI below 0), within noise (CI contains 0); too few runs with one matched run.",
    "Cost per task: training seconds (the loop's, tests excluded) per task; parameters the model gains "
    "per task (weights a method keeps outside the model, e.g. bert_one's per-task encoder copies, are "
    "not counted); growth of the saved checkpoint per task after the first. — where runs did not "
    "record it.",
)


# ---- writers ----------------------------------------------------------------------------------
def _md_table(columns: list[str], sections: list[tuple[str | None, list[list[str]]]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for title, rows in sections:
        if title:
            lines.append(f"| *{title}* |" + " |" * (len(columns) - 1))
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def to_markdown(
    rows: list[MethodRow], title: str = "", comparisons: list[PairedComparison] = (), sizes: dict | None = None
) -> str:
    lines = [f"### {title}", ""] if title else []
    lines += _md_table(MAIN_COLUMNS, [(g, [_main_cells(r, "±") for r in members]) for g, members in _grouped(rows)])
    if comparisons:
        lines += [
            "",
            f"#### Paired comparison ({', '.join(dict.fromkeys(c.reference for c in comparisons))} "
            "against each method)",
            "",
        ]
        lines += _md_table(COMPARISON_COLUMNS, [(None, _comparison_rows(comparisons))])
    lines += ["", "#### Cost per task", ""]
    lines += _md_table(COST_COLUMNS, [(None, [_cost_cells(r, "±") for r in rows])])
    lines += [""] + ([sizes_line(sizes), ""] if sizes else []) + ["\n\n".join(NOTES)]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return (
        s.replace("_", r"\_")
        .replace("%", r"\%")
        .replace("±", r"$\pm$")
        .replace("—", "--")
        .replace("Δ", r"$\Delta$")
        .replace("–", "--")
        .replace("−", "-")
    )


def _tex_table(columns: list[str], sections: list[tuple[str | None, list[list[str]]]], caption: str = "") -> list[str]:
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\resizebox{\linewidth}{!}{%",
        r"\begin{tabular}{ll" + "c" * (len(columns) - 2) + "}",
        r"\toprule",
        " & ".join(_tex_escape(c) for c in columns) + r" \\",
        r"\midrule",
    ]
    for i, (title, rows) in enumerate(sections):
        if i:
            lines.append(r"\midrule")
        if title:
            lines.append(rf"\multicolumn{{{len(columns)}}}{{l}}{{\emph{{{_tex_escape(title)}}}}} \\")
        lines += [" & ".join(_tex_escape(c) for c in cells) + r" \\" for cells in rows]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if caption:
        lines.append(rf"\caption{{{_tex_escape(caption)}}}")
    return lines + [r"\end{table}", ""]


def to_latex(rows: list[MethodRow], title: str = "", comparisons: list[PairedComparison] = ()) -> str:
    """The three tables as LaTeX (booktabs; ``\\resizebox`` from graphicx fits them to the page)."""
    lines = _tex_table(
        MAIN_COLUMNS, [(g, [_main_cells(r, "±") for r in members]) for g, members in _grouped(rows)], title
    )
    if comparisons:
        lines += _tex_table(
            COMPARISON_COLUMNS,
            [(None, _comparison_rows(comparisons))],
            f"{title}: paired comparison" if title else "Paired comparison",
        )
    lines += _tex_table(
        COST_COLUMNS,
        [(None, [_cost_cells(r, "±") for r in rows])],
        f"{title}: cost per task" if title else "Cost per task",
    )
    return "\n".join(lines)


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def write_csv(rows: list[MethodRow], path: Path) -> None:
    """Per method: every metric's mean, std, CI low and high (blank where absent), and the transfer."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        stats = ("mean", "std", "ci_low", "ci_high")
        writer.writerow(
            ["group", "method", "runs"]
            + [f"{m.key}_{s}" for m in METRICS for s in stats]
            + ["transfer", "transfer_ci_low", "transfer_ci_high", "transfer_runs", "reference"]
        )
        for r in rows:
            cells = []
            for m in METRICS:
                e = r.estimates.get(m.key)
                cells += [""] * 4 if e is None else [_num(e.mean), _num(e.std), _num(e.ci_low), _num(e.ci_high)]
            t = r.transfer
            transfer = ["", "", "", ""] if t is None else [_num(t.mean), _num(t.ci_low), _num(t.ci_high), t.n]
            writer.writerow([r.group, r.method, r.runs, *cells, *transfer, r.reference or ""])


def write_comparisons_csv(comparisons: list[PairedComparison], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "reference",
                "method",
                "metric",
                "matched_runs",
                "mean_difference",
                "ci_low",
                "ci_high",
                "wins",
                "losses",
                "ties",
                "verdict",
            ]
        )
        for c in comparisons:
            d = c.difference
            writer.writerow(
                [
                    c.reference,
                    c.method,
                    c.metric,
                    d.n,
                    _num(d.mean),
                    _num(d.ci_low),
                    _num(d.ci_high),
                    c.wins,
                    c.losses,
                    c.ties,
                    c.verdict,
                ]
            )


def plot_final_scores(rows: list[MethodRow], path: Path) -> None:
    """Bars of final accuracy and macro-F1 per method, with 95 % CI error bars (none for one run)."""
    plt = pyplot()
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows) + 2), 4.5))
    lows = []
    for offset, key, label in ((-0.2, "final_acc", "accuracy"), (0.2, "final_mf1", "macro-F1")):
        half = [r.estimates[key].half_width or 0.0 for r in rows]
        means = [r.estimates[key].mean for r in rows]
        ax.bar(x + offset, means, 0.4, yerr=half, capsize=3, label=label)
        lows += [m - h for m, h in zip(means, half)]
    ax.set_xticks(x, [r.method for r in rows], rotation=45, ha="right")
    ax.set_ylabel("final score (%), 95 % CI over runs")
    ax.set_ylim(max(0.0, math.floor(min(lows, default=0) / 10) * 10 - 10), 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_comparisons(comparisons: list[PairedComparison], path: Path, metric: str = "final_acc") -> None:
    """The paired differences (reference - method) in ``metric`` with their 95 % CIs, one line per pair."""
    chosen = [c for c in comparisons if c.metric == metric]
    if not chosen:
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 0.35 * len(chosen) + 1.8))
    y = np.arange(len(chosen))[::-1]
    for yi, c in zip(y, chosen):
        d = c.difference
        colour = {"better": "tab:green", "worse": "tab:red"}.get(c.verdict, "tab:grey")
        if d.ci_low is not None:
            ax.plot([d.ci_low, d.ci_high], [yi, yi], color=colour, lw=2)
        ax.plot([d.mean], [yi], "o", color=colour)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(y, [f"{c.reference} − {c.method} ({c.verdict})" for c in chosen])
    label = next((m.label for m in METRICS if m.key == metric), metric)
    ax.set_xlabel(f"reference − method, {label} (points):\nmean and 95 % CI over matched runs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_tables(grid_dir: str | Path, title: str = "") -> list[MethodRow]:
    """Read the complete runs under ``grid_dir/runs`` and write the tables and plots beside them."""
    grid_dir = Path(grid_dir)
    runs = load_runs(grid_dir)
    rows = summarize_runs(runs)
    if not rows:
        return rows
    comparisons = compare_methods(runs)
    (grid_dir / "table.md").write_text(to_markdown(rows, title, comparisons, task_sizes(runs)))
    (grid_dir / "table.tex").write_text(to_latex(rows, title, comparisons))
    write_csv(rows, grid_dir / "table.csv")
    write_comparisons_csv(comparisons, grid_dir / "comparisons.csv")
    (grid_dir / "heatmaps").mkdir(exist_ok=True)
    for r in rows:
        positions = [f"task {j + 1}" for j in range(len(r.mean_acc_matrix))]
        plot_matrix(
            r.mean_acc_matrix,
            positions,
            grid_dir / "heatmaps" / f"{r.method}.png",
            f"{r.method}: mean test accuracy (%), {r.runs} runs",
        )
    plot_final_scores(rows, grid_dir / "final_scores.png")
    plot_comparisons(comparisons, grid_dir / "comparisons.png")
    return rows
