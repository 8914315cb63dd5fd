#!/usr/bin/env python
"""One scenario's grid (issue 25, item 4): tune every method on validation data, then run the grid
and write the tables. One command per scenario, meant to run in the background:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 nohup .venv/bin/python scripts/scenario_grid.py \\
        --config hl5_products_domain --output-dir reproducibility/hl5_products_domain \\
        --max-train-per-task 200 > hl5_products_domain.grid.log 2>&1 &

1. ``ctr-tune`` on the config, in the config's scenario (``scenario:``; in Domain-/Class-IL the
   validation splits are scored without the task id): every method the same budget (``--trials``
   over the first ``--tune-tasks`` tasks; ncm and slda, which train nothing by gradient, search
   only their own options, ncm with none gets one trial), at the grid's ``--max-train-per-task``.
   The journal and the tuned-options file are the config's own, ``<config stem>.tuning.journal``
   and ``<config stem>.tuned.yaml`` beside it (hl5_products_domain, whose ``base:`` is
   hl5_products, never reads or writes hl5_products.tuned.yaml). Resumable: methods whose budget is
   spent are not tuned again.
2. ``ctr-tables --tuned`` that file: every method over task orders 0..``--orders``-1 of the
   orders file (the config's own, else its base's) × seeds 0..``--seeds``-1, skipping finished runs
   (and refusing runs made with other options, data or scenario), then the tables (the scenario in
   the heading, seen-so-far accuracy after each task, task-id accuracy for msp and energy).

Nothing is committed. Other ``ctr-tables`` options (``--max-length``, ``--method-arg``,
``--device`` ...) pass through to step 2. ``--no-tune`` skips step 1 (the tuned file must exist);
``--tune-only`` stops after it.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

# One thread per process unless the caller says otherwise: the grids share a 2-core CPU.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The methods issue 25 names for the scenario tables: CTR, the per-task-module baselines, the
# shared-head regularisers and replay, the template methods and the gradient-projection method.
ISSUE_METHODS = ("ctr", "adapter_hat", "adapter_one", "adapter_ncl", "ewc", "replay", "lwf", "ncm", "slda", "agem")


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a scenario's sequence config (a path or a shipped name)")
    p.add_argument("--output-dir", required=True, help="the grid's folder (runs/ and the tables)")
    p.add_argument("--methods", nargs="+", default=list(ISSUE_METHODS), help="default: %(default)s")
    p.add_argument("--orders", type=int, default=3, help="task orders 0..K-1 (default 3)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..S-1 (default 1)")
    p.add_argument("--trials", type=int, default=8, help="tuning budget per method (default 8, as for Task-IL)")
    p.add_argument("--tune-tasks", type=int, default=3, help="tune on the first K tasks (default 3, as for Task-IL)")
    p.add_argument("--max-train-per-task", type=int, default=200, help="for tuning and grid (default 200)")
    p.add_argument("--max-test-per-task", type=int, help="grid only (default: every test example)")
    p.add_argument("--encoder", help="hub name or local model directory (default: the config's)")
    p.add_argument("--no-tune", action="store_true", help="skip tuning: use the existing tuned file")
    p.add_argument("--tune-only", action="store_true", help="tune, then stop")
    return p.parse_known_args(argv)


def commands(args: argparse.Namespace, passthrough: list[str]) -> tuple[list[str], list[str], str]:
    """(ctr-tune's arguments, ctr-tables' arguments, the tuned-options file they share)."""
    from ctr_plugin.commands.tune import default_paths
    from ctr_plugin.data.config import resolve_config

    tuned = default_paths(resolve_config(args.config))[1].resolve()
    tuned = str(tuned.relative_to(Path.cwd()) if tuned.is_relative_to(Path.cwd()) else tuned)  # as runs record it
    encoder = ["--encoder", args.encoder] if args.encoder else []
    tune = ["--config", args.config, "--methods", *args.methods, "--trials", str(args.trials)]
    tune += ["--tasks", str(args.tune_tasks), "--max-train-per-task", str(args.max_train_per_task), *encoder]
    grid = ["--config", args.config, "--tuned", tuned, "--methods", *args.methods, "--orders", str(args.orders)]
    grid += ["--seeds", str(args.seeds), "--max-train-per-task", str(args.max_train_per_task)]
    grid += ["--max-test-per-task", str(args.max_test_per_task)] if args.max_test_per_task else []
    grid += ["--output-dir", args.output_dir, *encoder, *passthrough]
    return tune, grid, tuned


def main(argv=None) -> int:
    args, passthrough = parse_args(argv)
    from ctr_plugin.commands import tables, tune

    tune_args, grid_args, tuned = commands(args, passthrough)
    if not args.no_tune:
        print("+ ctr-tune " + shlex.join(tune_args), flush=True)
        code = tune.main(tune_args)
        if code or args.tune_only:
            return code
    print("+ ctr-tables " + shlex.join(grid_args), flush=True)
    return tables.main(grid_args)


if __name__ == "__main__":
    from ctr_plugin.commands.runner import run_main

    run_main(main)
