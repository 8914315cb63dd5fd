#!/usr/bin/env python
"""Choose training hyper-parameters on VALIDATION data only (never test): a small grid by hand.

For an equal-budget search over every method, use ``ctr-tune`` instead.

Trains the method over the first tasks of a config for each combination of the given values and
prints the mean validation accuracy and macro-F1 over the tasks learned (measured after the last
one, so forgetting counts too). Test splits are never evaluated here.

    python scripts/validation_sweep.py --config data_configs/hl5_products.yaml --tasks 2 \
        --lr 1e-3 3e-3 --pooling pooler mean
"""

from __future__ import annotations

import argparse
import itertools
import json

from ctr_plugin.commands.runner import run_main, setup_logging


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="data_configs/hl5_products.yaml")
    p.add_argument("--tasks", type=int, default=2, help="use the first N tasks of the config")
    p.add_argument("--method", default="ctr")
    p.add_argument("--lr", type=float, nargs="+", default=[1e-3])
    p.add_argument("--pooling", nargs="+", default=["pooler"])
    p.add_argument("--adapter-size", type=int, nargs="+", default=[256])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, help="default: the config's `seed:`, else 0")
    p.add_argument("--output", help="append one JSON line per combination to this file")
    args = p.parse_args()
    setup_logging()

    from ctr_plugin.data import load_sequence_config, load_tasks
    from ctr_plugin.experiments.settings import base_options
    from ctr_plugin.experiments.validation_runs import EncoderCache, validation_run

    sequence = load_sequence_config(args.config)
    sequence.tasks = sequence.tasks[: args.tasks]
    seed = base_options(
        sequence.training, f"the config {args.config}", {"seed": args.seed} if args.seed is not None else {}
    )[0].seed
    tasks = load_tasks(sequence, seed=seed)
    encoders = EncoderCache(sequence.encoder)
    for lr, pooling, width in itertools.product(args.lr, args.pooling, args.adapter_size):
        flags = {"lr": lr, "pooling": pooling, "adapter_size": width} | (
            {"epochs": args.epochs} if args.epochs else {}
        )
        cfg, plugin = base_options(
            sequence.training, f"the config {args.config}", flags | {"seed": seed}, progress=False
        )
        result = validation_run(tasks, args.method, {}, cfg, plugin, encoders)
        row = {
            "method": args.method,
            "lr": lr,
            "pooling": pooling,
            "adapter_size": width,
            "epochs": cfg.epochs,
            "val_acc": round(result["val_final_acc"], 2),
            "val_mf1": round(result["val_final_mf1"], 2),
            "seconds": result["seconds"],
        }
        print(json.dumps(row), flush=True)
        if args.output:
            with open(args.output, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
