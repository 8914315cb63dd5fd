"""Paper-style Task-CL tables from a folder of runs: one row per method, mean ± std over runs.

A grid folder (written by ``scripts/reproduce_tables.py``) holds ``runs/<method>/<run>/results.json``;
:func:`build_tables` reads every complete run there and writes, beside ``runs/``:

* ``table.md``, ``table.tex``, ``table.csv``: per method, the final accuracy and macro-F1, the
  forgetting rate and the forward accuracy (mean ± sample std over task orders and seeds), and
  the knowledge transfer: the method's mean final accuracy minus its ONE variant's (a separate
  model per task: ``adapter_one`` for adapter methods and CTR, ``bert_one`` for fine-tuning,
  ``lora_one`` for LoRA). Rows are grouped like the paper: non-continual, continual baselines, CTR;
* ``heatmaps/<method>.png``: the mean accuracy matrix, by position in the sequence (the task at
  position j differs between task orders);
* ``final_scores.png``: a bar chart of final accuracy and macro-F1 with std error bars.

Nothing is re-run: a table can be rebuilt, checked and extended from committed ``runs/``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .metrics import Matrix

RUNS_DIR = "runs"
GROUPS = (
    ("non-continual", ("adapter_one", "bert_one", "lora_one", "bert_mtl")),
    ("continual baselines", ("frozen_heads", "adapter_ncl", "bert_ncl", "lora_ncl", "adapter_hat", "ewc", "l2", "replay", "lwf")),
    ("CTR", ("ctr",)),
)
METRICS = ("final_acc", "final_mf1", "forgetting_rate", "forward_acc")


def group_of(method: str) -> str:
    return next((g for g, names in GROUPS if method in names), "other")


def one_reference(method: str) -> str:
    """The ONE variant (one model per task) that a method's knowledge transfer is measured against."""
    if method.startswith("bert_"):
        return "bert_one"
    if method.startswith("lora_"):
        return "lora_one"
    return "adapter_one"


def is_complete(results: dict) -> bool:
    """A run that finished: every task learned and the final results written."""
    tasks = results.get("tasks") or []
    return bool(tasks) and results.get("completed_tasks") == len(tasks) and "final_acc" in results and "wall_seconds" in results


def read_results(path: Path) -> dict | None:
    """The results.json at ``path`` if it is a complete run, else None (missing, partial, damaged)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and is_complete(data) else None


def load_runs(grid_dir: str | Path) -> dict[str, list[dict]]:
    """Complete runs per method, from ``grid_dir/runs/<method>/<run>/results.json`` (sorted by run)."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(Path(grid_dir, RUNS_DIR).glob("*/*/results.json")):
        data = read_results(path)
        if data is not None:
            runs.setdefault(path.parent.parent.name, []).append(data)
    return runs


@dataclass
class MethodRow:
    method: str
    group: str
    runs: int
    mean: dict[str, float]
    std: dict[str, float]
    mean_acc_matrix: Matrix
    transfer: float | None = None  # mean final accuracy minus the ONE variant's
    reference: str | None = None


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_matrix(matrices: list[Matrix]) -> Matrix:
    """Element-wise mean of equally sized lower-triangular matrices (None stays None)."""
    T = len(matrices[0])
    return [[None if matrices[0][i][j] is None else float(np.mean([m[i][j] for m in matrices])) for j in range(T)] for i in range(T)]


def summarize_runs(runs: dict[str, list[dict]]) -> list[MethodRow]:
    """One row per method with runs, in the order of ``GROUPS`` (unknown methods last)."""
    known = [m for _, names in GROUPS for m in names]
    order = [m for m in known if m in runs] + sorted(m for m in runs if m not in known)
    rows = {}
    for method in order:
        values = {k: [float(r[k]) for r in runs[method]] for k in METRICS}
        rows[method] = MethodRow(
            method, group_of(method), len(runs[method]),
            {k: float(np.mean(v)) for k, v in values.items()},
            {k: _std(v) for k, v in values.items()},
            mean_matrix([r["acc_matrix"] for r in runs[method]]),
        )
    for row in rows.values():
        ref = one_reference(row.method)
        if ref in rows:
            row.reference = ref
            row.transfer = row.mean["final_acc"] - rows[ref].mean["final_acc"]
    return list(rows.values())


# ---- writers ----------------------------------------------------------------------------------
COLUMNS = ("method", "runs", "final acc", "final mF1", "forgetting", "forward acc", "transfer vs ONE")


def _cells(row: MethodRow, pm: str) -> list[str]:
    def f(k: str) -> str:
        return f"{row.mean[k]:.2f} {pm} {row.std[k]:.2f}"

    transfer = "—" if row.transfer is None else f"{row.transfer:+.2f} ({row.reference})"
    if row.method == row.reference:
        transfer = "0 (reference)"
    return [row.method, str(row.runs), f("final_acc"), f("final_mf1"), f("forgetting_rate"), f("forward_acc"), transfer]


def _grouped(rows: list[MethodRow]) -> list[tuple[str, list[MethodRow]]]:
    groups = [g for g, _ in GROUPS] + ["other"]
    return [(g, [r for r in rows if r.group == g]) for g in groups if any(r.group == g for r in rows)]


def to_markdown(rows: list[MethodRow], title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for group, members in _grouped(rows):
        lines.append(f"| *{group}* |" + " |" * (len(COLUMNS) - 1))
        lines += ["| " + " | ".join(_cells(r, "±")) + " |" for r in members]
    lines += [
        "",
        "Accuracy and macro-F1 in %, mean ± sample std over task orders × seeds. Final: mean of the last "
        "row of the accuracy matrix; forward: mean of its diagonal; forgetting: mean over earlier tasks "
        "of (accuracy just after learning − final accuracy); transfer: mean final accuracy minus the ONE "
        "variant's (a separate model per task). bert_mtl is trained on all tasks at once (not continual): "
        "its forgetting is 0 by construction.",
    ]
    return "\n".join(lines) + "\n"


def to_latex(rows: list[MethodRow], title: str = "") -> str:
    def esc(s: str) -> str:
        return s.replace("_", r"\_").replace("±", r"$\pm$").replace("—", "--")

    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{lrccccl}", r"\toprule", " & ".join(COLUMNS) + r" \\", r"\midrule"]
    for i, (group, members) in enumerate(_grouped(rows)):
        if i:
            lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{{len(COLUMNS)}}}{{l}}{{\emph{{{esc(group)}}}}} \\")
        lines += [" & ".join(esc(c) for c in _cells(r, "±")) + r" \\" for r in members]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if title:
        lines.append(rf"\caption{{{esc(title)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[MethodRow], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        header = ["group", "method", "runs"] + [f"{k}_{s}" for k in METRICS for s in ("mean", "std")] + ["transfer", "reference"]
        writer.writerow(header)
        for r in rows:
            stats = [f"{v:.4f}" for k in METRICS for v in (r.mean[k], r.std[k])]
            transfer = "" if r.transfer is None else f"{r.transfer:.4f}"
            writer.writerow([r.group, r.method, r.runs, *stats, transfer, r.reference or ""])


def plot_final_scores(rows: list[MethodRow], path: Path) -> None:
    """Bars of final accuracy and macro-F1 per method, with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows) + 2), 4.5))
    for offset, key, label in ((-0.2, "final_acc", "accuracy"), (0.2, "final_mf1", "macro-F1")):
        ax.bar(x + offset, [r.mean[key] for r in rows], 0.4, yerr=[r.std[key] for r in rows], capsize=3, label=label)
    ax.set_xticks(x, [r.method for r in rows], rotation=45, ha="right")
    ax.set_ylabel("final score (%)")
    lows = [r.mean[k] - r.std[k] for r in rows for k in ("final_acc", "final_mf1")]
    ax.set_ylim(max(0.0, math.floor(min(lows, default=0) / 10) * 10 - 10), 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_tables(grid_dir: str | Path, title: str = "") -> list[MethodRow]:
    """Read the complete runs under ``grid_dir/runs`` and write the tables and plots beside them."""
    from .report import plot_matrix

    grid_dir = Path(grid_dir)
    rows = summarize_runs(load_runs(grid_dir))
    if not rows:
        return rows
    (grid_dir / "table.md").write_text(to_markdown(rows, title))
    (grid_dir / "table.tex").write_text(to_latex(rows, title))
    write_csv(rows, grid_dir / "table.csv")
    (grid_dir / "heatmaps").mkdir(exist_ok=True)
    for r in rows:
        positions = [f"task {j + 1}" for j in range(len(r.mean_acc_matrix))]
        plot_matrix(r.mean_acc_matrix, positions, grid_dir / "heatmaps" / f"{r.method}.png", f"{r.method}: mean test accuracy (%), {r.runs} runs")
    plot_final_scores(rows, grid_dir / "final_scores.png")
    return rows
