"""The files of a grid's tables: markdown, LaTeX and csv renderings of the rows and paired
comparisons that :mod:`ctr_plugin.experiments.grid_summary` computes, the heatmaps and plots, and
:func:`build_tables`, which reads a grid folder and writes them all beside its ``runs/``. A grid
holds runs of one scenario; in Domain-/Class-IL the tables of
:mod:`ctr_plugin.experiments.grid_scenarios` (accuracy over the tasks seen so far after each task,
task-id inference) follow the paired comparison, and ``scenario.csv`` holds their numbers."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ctr_plugin.experiments.grid_scenarios import scenario_of, scenario_sections, write_scenario_csv
from ctr_plugin.experiments.grid_summary import (
    ACCURACY_METRICS,
    COMPARED,
    COST_METRICS,
    METRICS,
    RUNS_DIR,
    WITH_CI,
    MethodRow,
    Metric,
    compare_methods,
    load_runs,
    summarize_runs,
    task_sizes,
)
from ctr_plugin.reporting.run_report import can_draw, plot_matrix, pyplot
from ctr_plugin.reporting.stats import Estimate, PairedComparison

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
    rows: list[MethodRow],
    title: str = "",
    comparisons: list[PairedComparison] = (),
    sizes: dict | None = None,
    sections: list[tuple[str, list, list, str]] = (),
) -> str:
    """The tables as markdown; ``sections``: the scenario's tables (``grid_scenarios.scenario_sections``),
    each (title, columns, cells, note), after the paired comparison."""
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
    for heading, columns, cells, note in sections:
        lines += ["", f"#### {heading}", ""] + _md_table(columns, [(None, cells)]) + ["", note]
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


def to_latex(
    rows: list[MethodRow],
    title: str = "",
    comparisons: list[PairedComparison] = (),
    sections: list[tuple[str, list, list, str]] = (),
) -> str:
    """The three tables as LaTeX (booktabs; ``\\resizebox`` from graphicx fits them to the page), and
    the scenario's (``sections``) after the paired comparison."""
    lines = _tex_table(
        MAIN_COLUMNS, [(g, [_main_cells(r, "±") for r in members]) for g, members in _grouped(rows)], title
    )
    if comparisons:
        lines += _tex_table(
            COMPARISON_COLUMNS,
            [(None, _comparison_rows(comparisons))],
            f"{title}: paired comparison" if title else "Paired comparison",
        )
    for heading, columns, cells, _ in sections:
        lines += _tex_table(columns, [(None, cells)], heading)
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


def build_tables(grid_dir: str | Path, title: str = "", scenario: str | None = None) -> list[MethodRow]:
    """Read the complete runs under ``grid_dir/runs`` and write the tables and plots beside them.
    The runs must share one scenario (and be of ``scenario`` when it is given); else CTRError,
    before anything is written."""
    grid_dir = Path(grid_dir)
    runs = load_runs(grid_dir)
    found = scenario_of(runs, scenario, str(grid_dir / RUNS_DIR))
    rows = summarize_runs(runs)
    if not rows:
        return rows
    comparisons = compare_methods(runs)
    methods = [r.method for r in rows]
    sections = scenario_sections(runs, methods, found or "task")
    (grid_dir / "table.md").write_text(to_markdown(rows, title, comparisons, task_sizes(runs), sections))
    (grid_dir / "table.tex").write_text(to_latex(rows, title, comparisons, sections))
    write_csv(rows, grid_dir / "table.csv")
    write_comparisons_csv(comparisons, grid_dir / "comparisons.csv")
    if sections:
        write_scenario_csv(runs, methods, grid_dir / "scenario.csv")
    if not can_draw():
        return rows
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
