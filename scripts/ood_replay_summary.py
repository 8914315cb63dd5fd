#!/usr/bin/env python
"""Out-of-distribution replay, off against on: a table from the runs under one folder (issue 25).

    python scripts/ood_replay_summary.py reproducibility/offline_classes_ood

reads ``<folder>/<arm>/runs/<method>/order<k>_seed<s>/results.json`` for the arms ``off``
(``ood_replay=0``) and ``on``, and writes ``<folder>/table.md`` (and prints it): per method and arm,
the final accuracy over every task without the task id (Class-IL: among all classes seen) and the
task-id accuracy after the last task, for each task-id score (mean over runs with its 95 % CI), and
the paired difference on - off over the runs both arms have, with its CI and verdict
(``ctr_plugin.reporting.stats``). The runs say which options made them (``command.json`` beside
each ``results.json``); the arms differ in ``ood_replay`` only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctr_plugin.modeling.task_inference import TASK_SCORES
from ctr_plugin.reporting.stats import paired_comparison, t_interval

ARMS = ("off", "on")


def last_row(results: dict, score: str) -> tuple[float, float]:
    """(accuracy over every task's test examples, task-id accuracy) after the last task."""
    scores = results["task_scores"][score]
    return scores["seen_acc"][-1], scores["task_id_acc"][-1]


def read_runs(folder: Path) -> dict[str, dict[str, dict[str, dict]]]:
    """arm -> method -> run name -> results.json, finished runs only."""
    runs: dict[str, dict[str, dict[str, dict]]] = {}
    for path in sorted(folder.glob("*/runs/*/*/results.json")):
        arm, method, run = path.parts[-5], path.parts[-3], path.parts[-2]
        results = json.loads(path.read_text())
        if arm in ARMS and results.get("seen_acc") and len(results["seen_acc"]) == len(results["tasks"]):
            runs.setdefault(arm, {}).setdefault(method, {})[run] = results
    return runs


def fmt(values: list[float]) -> str:
    estimate = t_interval(values)
    if estimate.ci_low is None:
        return f"{estimate.mean:.2f}"
    return f"{estimate.mean:.2f} [{estimate.ci_low:.2f}, {estimate.ci_high:.2f}]"


def table(runs: dict) -> str:
    lines = [
        "| method | score | arm | runs | accuracy, all tasks, no task id | task-id accuracy |",
        "|---|---|---|---|---|---|",
    ]
    pairs = []
    methods = sorted({m for arm in runs.values() for m in arm})
    for method in methods:
        for score in TASK_SCORES:
            for arm in ARMS:
                done = runs.get(arm, {}).get(method, {})
                if not done:
                    continue
                acc = [last_row(r, score)[0] for r in done.values()]
                task = [last_row(r, score)[1] for r in done.values()]
                lines.append(f"| {method} | {score} | {arm} | {len(done)} | {fmt(acc)} | {fmt(task)} |")
            on, off = (runs.get(arm, {}).get(method, {}) for arm in ("on", "off"))
            for index, what in ((0, "accuracy"), (1, "task-id accuracy")):
                comparison = paired_comparison(
                    "on",
                    {k: last_row(r, score)[index] for k, r in on.items()},
                    "off",
                    {k: last_row(r, score)[index] for k, r in off.items()},
                )
                if comparison is not None:
                    d = comparison.difference
                    interval = "" if d.ci_low is None else f" [{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
                    pairs.append(
                        f"| {method} | {score} | {what} | {d.n} | {d.mean:+.2f}{interval} | "
                        f"{comparison.wins}/{comparison.losses}/{comparison.ties} | {comparison.verdict} |"
                    )
    lines += [
        "",
        "On against off, paired over task orders (positive: OOD replay better):",
        "",
        "| method | score | metric | pairs | on - off, 95 % CI | wins/losses/ties | verdict |",
        "|---|---|---|---|---|---|---|",
        *pairs,
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    args = p.parse_args(argv)
    runs = read_runs(args.folder)
    if not runs:
        raise SystemExit(f"no finished runs under {args.folder}/{{off,on}}/runs/<method>/<run>/results.json")
    text = table(runs)
    (args.folder / "table.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
