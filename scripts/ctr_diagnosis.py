#!/usr/bin/env python
"""Why does CTR trail a plain adapter? One-knob-at-a-time ablations on VALIDATION data only.

Each variant changes one knob of the paper's setting (or combines knobs named in its label) for
``adapter_hat`` (CTR's HAT-masked module alone) and ``ctr``; ``adapter_one`` is the reference.
Stage ``task1`` trains the first task of the sequence alone (plasticity); stage ``task3`` the
first three (plasticity and forgetting). Test splits are sealed (``ctr_plugin.experiments.validation_runs``).

    python scripts/ctr_diagnosis.py --stage task1 --seeds 0 1 2       # runs, appended to docs/ctr_diagnosis/runs.jsonl
    python scripts/ctr_diagnosis.py --report                          # docs/ctr_diagnosis/table.md from the runs

Finished (stage, method, variant, seed) cells are skipped, so an interrupted call continues.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctr_plugin.commands.runner import run_main, setup_logging

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "ctr_diagnosis"

# variant -> changes: keys of the method's options ("method"), PluginConfig ("plugin") or
# TrainingConfig ("training"). "paper" is the paper's setting as the embedded default runs it.
VARIANTS: dict[str, dict[str, dict]] = {
    "paper": {},
    "lambda_0": {"method": {"mask_lambda": 0.0}},
    "anneal_task": {"method": {"anneal": "task"}},
    "no_up_relu": {"plugin": {"tsm_activation": "none"}},
    "masks_open": {"plugin": {"mask_init_mean": 6.0}},
    "mask_lr_x10": {"method": {"mask_lr_scale": 10.0}},
    "mask_lr_x50": {"method": {"mask_lr_scale": 50.0}},
    "layernorm_frozen": {"plugin": {"train_layernorm": False}},
    "no_up_relu+mask_lr_x50": {"plugin": {"tsm_activation": "none"}, "method": {"mask_lr_scale": 50.0}},
    "freeze_old_capsules": {"plugin": {"freeze_old_capsules": True}},
    # The reference code builds the plugins inside transformers' BertModel, whose _init_weights
    # draws every nn.Embedding (HAT's e_t included) from N(0, initializer_range = 0.02).
    "mask_init_0.02": {"plugin": {"mask_init_std": 0.02}},
    # Masks that learn, and the knowledge-sharing path's earlier capsules protected too.
    "mask_init_0.02+freeze_old_capsules": {"plugin": {"mask_init_std": 0.02, "freeze_old_capsules": True}},
}
# Most telling first: cells run variant by variant, every seed of a variant before the next.
HAT_VARIANTS = [
    "paper",
    "mask_init_0.02",
    "no_up_relu",
    "mask_lr_x50",
    "no_up_relu+mask_lr_x50",
    "masks_open",
    "lambda_0",
    "anneal_task",
    "layernorm_frozen",
    "mask_lr_x10",
]
STAGES = {
    "task1": {"tasks": 1, "cells": {"adapter_one": ["paper"], "adapter_hat": HAT_VARIANTS, "ctr": HAT_VARIANTS[:7]}},
    # The second task alone: can each method learn it from scratch (vs. after the first task)?
    "task2_alone": {
        "tasks": 1,
        "skip": 1,
        "cells": {
            "adapter_one": ["paper"],
            "adapter_hat": [
                "paper",
                "mask_init_0.02",
                "no_up_relu",
                "masks_open",
                "anneal_task",
                "lambda_0",
                "no_up_relu+mask_lr_x50",
            ],
            "ctr": ["paper", "mask_init_0.02", "no_up_relu", "masks_open"],
        },
    },
    "task3": {
        "tasks": 3,
        "cells": {
            "adapter_one": ["paper"],
            "adapter_hat": ["paper", "mask_init_0.02", "mask_lr_x50", "anneal_task"],
            "ctr": [
                "paper",
                "mask_init_0.02",
                "mask_init_0.02+freeze_old_capsules",
                "mask_lr_x50",
                "freeze_old_capsules",
                "layernorm_frozen",
                "anneal_task",
                "no_up_relu",
            ],
        },
    },
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "data_configs" / "hl5_products.yaml"))
    p.add_argument("--stage", choices=sorted(STAGES), default="task1")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", help="only these methods of the stage")
    p.add_argument("--variants", nargs="+", help="only these variants of the stage")
    p.add_argument("--max-train", type=int, default=200, help="training sentences per task (the hl5 grid's sizing)")
    p.add_argument(
        "--validation-fraction",
        type=float,
        help="share of each task's non-test sentences held out for validation (default: the config's); "
        "the test split does not depend on it",
    )
    p.add_argument("--runs", default=str(OUT / "runs.jsonl"))
    p.add_argument("--report", action="store_true", help="only write the table from the runs")
    args = p.parse_args()
    setup_logging()
    runs_file = Path(args.runs)
    if args.report:
        table = report(runs_file)
        (runs_file.parent / "table.md").write_text(table)
        print(table)
        return 0

    import dataclasses

    from ctr_plugin.continual import hat
    from ctr_plugin.data import load_sequence_config, load_tasks
    from ctr_plugin.experiments.settings import base_options
    from ctr_plugin.experiments.validation_runs import EncoderCache, validation_run

    stage = STAGES[args.stage]
    sequence = load_sequence_config(args.config)
    first = stage.get("skip", 0)
    sequence.tasks = [
        dataclasses.replace(
            t,
            max_train=args.max_train,
            **({"validation_fraction": args.validation_fraction} if args.validation_fraction else {}),
        )
        for t in sequence.tasks[first : first + stage["tasks"]]
    ]
    done = {_key(r) for r in _read(runs_file)}
    encoders = EncoderCache(sequence.encoder)
    runs_file.parent.mkdir(parents=True, exist_ok=True)
    tasks_by_seed = {}
    cells = [
        (method, variant) for variant in VARIANTS for method, variants in stage["cells"].items() if variant in variants
    ]
    cells.sort(key=lambda cell: stage["cells"][cell[0]].index(cell[1]))
    for method, variant in cells:
        if (args.methods and method not in args.methods) or (args.variants and variant not in args.variants):
            continue
        for seed in args.seeds:
            key = (args.stage, method, variant, seed)
            if key in done:
                continue
            if seed not in tasks_by_seed:
                tasks_by_seed[seed] = load_tasks(sequence, seed=seed)
            tasks = tasks_by_seed[seed]
            change = VARIANTS[variant]
            flags = change.get("training", {}) | change.get("plugin", {})  # the variant's knobs over the config's
            training, plugin = base_options(
                sequence.training, f"the config {args.config}", flags, seed=seed, progress=False
            )
            row = validation_run(
                tasks,
                method,
                change.get("method", {}),
                training,
                plugin,
                encoders,
                inspect=lambda model: hat.mask_usage(model, model.plugin_config.s_max),
            )
            row = {
                "stage": args.stage,
                "variant": variant,
                "change": change,
                "max_train": args.max_train,
                "validation_fraction": sequence.tasks[0].validation_fraction,
                "task_sizes": {t.name: [len(t.train), len(t.validation)] for t in tasks},
            } | row
            with runs_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"{args.stage} {method:12s} {variant:40s} seed {seed}: val acc {row['val_final_acc']:.2f} "
                f"mF1 {row['val_final_mf1']:.2f} forgetting {row['val_forgetting_rate']:.2f} ({row['seconds']} s)",
                flush=True,
            )
    return 0


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _key(row: dict) -> tuple:
    return row["stage"], row["method"], row["variant"], row["seed"]


def report(runs_file: Path) -> str:
    """Markdown: per stage, method and variant, mean ± std over seeds, and paired differences
    (over the seeds both have, 95 % t-interval) to the same method's "paper" row and to
    adapter_one, with the verdict of ``ctr_plugin.reporting.stats``."""
    import numpy as np

    rows = _read(runs_file)
    out = []
    for stage, spec in STAGES.items():
        cells: dict[tuple[str, str], dict[int, dict]] = {}
        for r in rows:
            if r["stage"] == stage:
                cells.setdefault((r["method"], r["variant"]), {})[r["seed"]] = r
        if not cells:
            continue
        which = f"task {spec['skip'] + 1} alone" if spec.get("skip") else f"the first {spec['tasks']} task(s)"
        out += [
            f"### Stage {stage}: {which}, validation accuracy after the last, mean ± std over seeds",
            "",
            "| method | variant | seeds | val acc | val macro-F1 | Δ acc vs paper [95 % CI] "
            "| Δ acc vs adapter_one [95 % CI] | forgetting | task-1 masks open | used after the last task "
            "| mean abs(e_1) | s/run |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        methods = list(spec["cells"])
        for (method, variant), by_seed in sorted(
            cells.items(), key=lambda kv: (methods.index(kv[0][0]), list(VARIANTS).index(kv[0][1]))
        ):
            acc = np.array([r["val_final_acc"] for r in by_seed.values()])
            mf1 = np.array([r["val_final_mf1"] for r in by_seed.values()])
            forget = np.array([r["val_forgetting_rate"] for r in by_seed.values()])
            secs = np.mean([r["seconds"] for r in by_seed.values()])
            paper = _paired(by_seed, cells.get((method, "paper"))) if variant != "paper" else ""
            one = _paired(by_seed, cells.get(("adapter_one", "paper"))) if method != "adapter_one" else ""
            usage = [r["inspect"] for r in by_seed.values() if r.get("inspect")]
            opened = f"{np.mean([u['open'][0] for u in usage]):.2f}" if usage else ""
            used = f"{np.mean([u['used'] for u in usage]):.2f}" if usage else ""
            magnitude = f"{np.mean([u['embedding_abs_mean'][0] for u in usage]):.2f}" if usage else ""
            out.append(
                f"| {method} | {variant} | {','.join(str(s) for s in sorted(by_seed))} | {_ms(acc)} | {_ms(mf1)} "
                f"| {paper} | {one} | {_ms(forget)} | {opened} | {used} | {magnitude} | {secs:.0f} |"
            )
        out.append("")
    return "\n".join(out)


def _paired(by_seed: dict[int, dict], reference: dict[int, dict] | None) -> str:
    """This cell minus ``reference`` over the seeds both have: mean [95 % CI] and the verdict."""
    from ctr_plugin.reporting.stats import paired_comparison

    if not reference:
        return ""
    cmp = paired_comparison(
        "cell",
        {s: r["val_final_acc"] for s, r in by_seed.items()},
        "reference",
        {s: r["val_final_acc"] for s, r in reference.items()},
    )
    if cmp is None:
        return ""
    d = cmp.difference
    if d.ci_low is None:
        return f"{d.mean:+.1f} (n = 1)"
    return f"{d.mean:+.1f} [{d.ci_low:+.1f}, {d.ci_high:+.1f}] {cmp.verdict}"


def _ms(values) -> str:
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.1f} ± {std:.1f}"


if __name__ == "__main__":
    run_main(main)
