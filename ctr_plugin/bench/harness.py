"""ctr-bench: what CTR costs, and how close that is to its arithmetic: training step time, evaluation
throughput, parameters, checkpoint size and peak memory, side by side with an adapter of the same
width, a frozen encoder with heads only, and full fine-tuning; CTR again after 1, 5, 10, 20 and 50
learned tasks; and CTR against the adapter at bert-base's geometry (a randomly initialised
BertModel with bert-base's config, built in code: no download), sequence 128, batch 8.

    ctr-bench                                   # bundled MiniLM, length 64, batch 16
    ctr-bench --compile                         # also: the plugins under torch.compile
    ctr-bench --quick --output /tmp/bench.json  # a smoke run on tiny sizes, in seconds
    ctr-bench --repeats 5                       # more interleaved repeats: a smaller spread, a longer run

Every configuration runs in its own child process (so its peak memory is its own;
``ctr_plugin/bench/measure.py`` measures it). The configurations that a ratio compares are measured
``--repeats`` times, interleaved (A B C ... A B C ...), so that a drift of the machine reaches every
configuration alike; each ratio is the median of its per-repeat ratios, printed with their spread
(min-max), and the JSON keeps every repeat. Rows no ratio reads (frozen encoder, full fine-tuning,
the middle task counts) are measured in the first repeat only. Beside each measured ratio stands
the ratio the multiply-adds predict (``ctr_plugin/bench/arithmetic.py``): the limit the
measurement would reach if nothing but arithmetic cost time. Tasks are added with random heads:
timing needs no training. Writes the tables to stdout and everything to --output (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from ctr_plugin.bench.measure import Configuration, measure
from ctr_plugin.commands.runner import command_parser, run_main, whole_number

# The bound each ratio should stay under at the default sizes (bundled MiniLM, length 64, batch
# 16, a quiet 2-core CPU): printed beside the measurement as met or MISSED.
# Measured fields of a row that are the median over its repeats in the combined table.
MEDIAN_FIELDS = ("train_step_s", "eval_examples_per_s", "peak_memory_bytes")

TARGETS = {
    "ctr_step_vs_adapter_at_10_tasks": 1.2,
    "ctr_step_50_vs_1_tasks": 1.3,
    "ctr_eval_vs_adapter_at_10_tasks": 1.1,
    "ctr_step_1_task_vs_adapter": 1.1,
    "ctr_peak_memory_vs_adapter_at_50_tasks": 1.5,
    "checkpoint_growth_per_task_pct": 2.0,
    "second geometry: ctr_step_vs_adapter_at_10_tasks": 1.1,
    "second geometry: ctr_step_10_vs_1_tasks": 1.05,
    "second geometry: ctr_eval_vs_adapter_at_10_tasks": 1.05,
}


def plan(args) -> list[tuple[Configuration, bool]]:
    """The configurations of one run, in the order they are measured, each with whether it is
    measured in every repeat (a ratio reads it) or in the first only."""
    if args.quick:  # tiny sizes: every code path, in seconds
        main = {
            "encoder": "random:tiny",
            "seq_len": 12,
            "batch_size": 4,
            "adapter_size": 16,
            "steps": 1,
            "warmup": 1,
            "device": args.device,
            "routing_filters": 8,
            "task_capsule_hidden": 4,
        }
        second = main | {"seq_len": 16, "batch_size": 2, "series": "second"}
        counts, compare_at, second_counts = [1, 3], 3, [1, 3]
    else:
        main = {
            "encoder": args.encoder,
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "adapter_size": args.adapter_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "device": args.device,
        }
        second = {
            "encoder": "random:bert-base",
            "seq_len": 128,
            "batch_size": 8,
            "adapter_size": 2000,
            "steps": args.bert_base_steps,
            "warmup": 1,
            "device": args.device,
            "series": "second",
        }
        counts, compare_at, second_counts = args.task_counts, 10, args.bert_base_task_counts
    ends = {min(counts), compare_at, max(counts)}
    rows = [
        (Configuration("adapter", compare_at, **main), True),
        (Configuration("adapter", max(counts), **main), False),  # its peak memory only: it does not grow with tasks
        (Configuration("frozen_heads", compare_at, **main), False),
        (Configuration("full_finetune", compare_at, **main), False),
    ]
    rows += [(Configuration("ctr", n, **main), n in ends) for n in counts]
    if args.compile:
        rows += [
            (Configuration("adapter", compare_at, **main, compile=True), True),
            (Configuration("ctr", compare_at, **main, compile=True), True),
        ]
    if args.quick or args.bert_base_steps > 0:
        rows += [(Configuration("adapter", max(second_counts), **second), True)]
        rows += [(Configuration("ctr", n, **second), True) for n in second_counts]
    unique: list[tuple[Configuration, bool]] = []
    for cfg, repeated in rows:
        seen = [i for i, (other, _) in enumerate(unique) if other == cfg]
        if seen:
            unique[seen[0]] = (cfg, unique[seen[0]][1] or repeated)
        else:
            unique.append((cfg, repeated))
    return unique


def ratio(
    name: str,
    numerator: dict | None,
    denominator: dict | None,
    field: str,
    arithmetic: str | None,
    target: float | None,
    invert: bool = False,
) -> dict:
    """One ratio of two measured rows (``invert``: of their reciprocals, e.g. time per example from
    examples per second), with the ratio of their multiply-adds beside it."""
    if numerator is None or denominator is None:
        return {"name": name, "measured": None, "arithmetic": None, "target": target}
    a, b = (denominator, numerator) if invert else (numerator, denominator)
    predicted = numerator[arithmetic] / denominator[arithmetic] if arithmetic else None
    return {
        "name": name,
        "of": [numerator["label"], denominator["label"]],
        "measured": a[field] / b[field],
        "arithmetic": predicted,
        "target": target,
    }


def ratios(rows: list[dict], quick: bool) -> list[dict]:
    """The ratios TARGETS bounds (no targets for --quick's tiny sizes), then those at the second
    geometry, then compiled against eager."""
    targets = {} if quick else TARGETS

    def find(kind: str, tasks: int | None = None, compiled: bool = False, second: bool = False) -> dict | None:
        series = "second" if second else "main"
        matching = [
            r
            for r in rows
            if r["kind"] == kind
            and r["compile"] == compiled
            and r["series"] == series
            and (tasks is None or r["tasks"] == tasks)
        ]
        return matching[0] if matching else None

    ctr_counts = sorted(
        r["tasks"] for r in rows if r["kind"] == "ctr" and not r["compile"] and find("ctr", r["tasks"]) is r
    )
    first, last = ctr_counts[0], ctr_counts[-1]
    at = 3 if quick else 10
    out = [
        ratio(
            f"ctr_step_vs_adapter_at_{at}_tasks",
            find("ctr", at),
            find("adapter", at),
            "train_step_s",
            "train_multiply_adds",
            targets.get(f"ctr_step_vs_adapter_at_{at}_tasks"),
        ),
        ratio(
            f"ctr_step_{last}_vs_{first}_tasks",
            find("ctr", last),
            find("ctr", first),
            "train_step_s",
            "train_multiply_adds",
            targets.get(f"ctr_step_{last}_vs_{first}_tasks"),
        ),
        ratio(
            f"ctr_eval_vs_adapter_at_{at}_tasks",
            find("ctr", at),
            find("adapter", at),
            "eval_examples_per_s",
            "inference_multiply_adds_per_example",
            targets.get(f"ctr_eval_vs_adapter_at_{at}_tasks"),
            invert=True,
        ),
        ratio(
            f"ctr_step_{first}_task_vs_adapter",
            find("ctr", first),
            find("adapter", at),
            "train_step_s",
            "train_multiply_adds",
            targets.get(f"ctr_step_{first}_task_vs_adapter"),
        ),
        ratio(
            f"ctr_peak_memory_vs_adapter_at_{last}_tasks",
            find("ctr", last),
            find("adapter", last),
            "peak_memory_bytes",
            None,
            targets.get(f"ctr_peak_memory_vs_adapter_at_{last}_tasks"),
        ),
    ]
    ctr_first, ctr_last = find("ctr", first), find("ctr", last)
    growth = (ctr_last["checkpoint_bytes"] - ctr_first["checkpoint_bytes"]) / (last - first) if last > first else 0.0
    out.append(
        {
            "name": "checkpoint_growth_per_task_pct",
            "measured": 100 * growth / ctr_first["checkpoint_bytes"],
            "arithmetic": None,
            "target": targets.get("checkpoint_growth_per_task_pct"),
        }
    )
    second_ctr = sorted(r["tasks"] for r in rows if r["kind"] == "ctr" and find("ctr", r["tasks"], second=True) is r)
    if second_ctr:
        big = second_ctr[-1]
        out.append(
            ratio(
                f"second geometry: ctr_step_vs_adapter_at_{big}_tasks",
                find("ctr", big, second=True),
                find("adapter", big, second=True),
                "train_step_s",
                "train_multiply_adds",
                targets.get(f"second geometry: ctr_step_vs_adapter_at_{big}_tasks"),
            )
        )
        out.append(
            ratio(
                f"second geometry: ctr_eval_vs_adapter_at_{big}_tasks",
                find("ctr", big, second=True),
                find("adapter", big, second=True),
                "eval_examples_per_s",
                "inference_multiply_adds_per_example",
                targets.get(f"second geometry: ctr_eval_vs_adapter_at_{big}_tasks"),
                invert=True,
            )
        )
        if len(second_ctr) > 1:
            out.append(
                ratio(
                    f"second geometry: ctr_step_{big}_vs_{second_ctr[0]}_tasks",
                    find("ctr", big, second=True),
                    find("ctr", second_ctr[0], second=True),
                    "train_step_s",
                    "train_multiply_adds",
                    targets.get(f"second geometry: ctr_step_{big}_vs_{second_ctr[0]}_tasks"),
                )
            )
    for kind in ("ctr", "adapter"):
        if find(kind, at, compiled=True):
            out.append(
                ratio(
                    f"compiled / eager {kind} step at {at} tasks",
                    find(kind, at, compiled=True),
                    find(kind, at),
                    "train_step_s",
                    "train_multiply_adds",
                    None,
                )
            )
            out.append(
                ratio(
                    f"compiled / eager {kind} eval at {at} tasks",
                    find(kind, at, compiled=True),
                    find(kind, at),
                    "eval_examples_per_s",
                    "inference_multiply_adds_per_example",
                    None,
                    invert=True,
                )
            )
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def combine(repeats: list[list[dict]], quick: bool) -> tuple[list[dict], list[dict]]:
    """(one row per configuration, its times the median over the repeats that measured it; the
    ratios, each the median of its per-repeat ratios with their spread and every repeat's value).
    A repeat's ratios read its own rows, and the first repeat's for rows measured once."""
    first = {r["label"]: r for r in repeats[0]}
    tables = [ratios(list((first | {r["label"]: r for r in rows}).values()), quick) for rows in repeats]
    rows = []
    for label, row in first.items():
        measured = [r for rows_ in repeats for r in rows_ if r["label"] == label]
        row = dict(row) | {f: statistics.median(r[f] for r in measured) for f in MEDIAN_FIELDS}
        rows.append(row | {"repeats": len(measured), "train_step_s_spread": _spread(measured, "train_step_s")})
    table = []
    for items in zip(*tables):
        values = [item["measured"] for item in items]
        item = dict(items[0])
        if None not in values:
            item |= {"measured": statistics.median(values), "spread": [min(values), max(values)], "repeats": values}
        table.append(item)
    return rows, table


def _spread(rows: list[dict], field: str) -> list[float]:
    return [min(r[field] for r in rows), max(r[field] for r in rows)]


def report(rows: list[dict], table: list[dict], in_process: bool) -> None:
    print(
        f"\n{'configuration':<36}{'train step s (min-max)':>24}{'eval ex/s':>11}{'trainable':>12}{'ckpt MB':>9}"
        f"{'peak MB':>9}{'train GMAC':>12}{'infer MMAC/ex':>15}"
    )
    for r in rows:
        low, high = r["train_step_s_spread"]
        step = f"{r['train_step_s']:.3f} ({low:.3f}-{high:.3f})" if r["repeats"] > 1 else f"{r['train_step_s']:.3f}"
        print(
            f"{r['label']:<36}{step:>24}{r['eval_examples_per_s']:>11.1f}"
            f"{r['trainable_params']:>12,}{r['checkpoint_bytes'] / 1e6:>9.2f}"
            f"{r['peak_memory_bytes'] / 1e6:>9.0f}{r['train_multiply_adds'] / 1e9:>12.2f}"
            f"{r['inference_multiply_adds_per_example'] / 1e6:>15.1f}"
        )
    if in_process:
        print(
            "(--quick measures every configuration in this one process: its peak memory is the process's, "
            "not each configuration's)"
        )
    header = f"{'ratio (median over repeats)':<52}{'measured':>9}{'spread':>13}{'arithmetic':>11}{'target':>8}"
    print(f"\n{header}  verdict")
    for item in table:
        measured, target = item["measured"], item["target"]
        verdict = "" if target is None or measured is None else ("met" if measured <= target else "MISSED")
        spread = "{:.2f}-{:.2f}".format(*item["spread"]) if "spread" in item else "-"
        print(
            f"{item['name']:<52}{_fmt(measured):>9}{spread:>13}{_fmt(item['arithmetic']):>11}"
            f"{_fmt(target, 2) if target else '-':>8}  {verdict}"
        )


def measure_in_child(cfg: Configuration) -> dict:
    """One configuration measured in a fresh process (its peak memory its own)."""
    out = subprocess.run(
        [sys.executable, "-m", "ctr_plugin.bench.harness", "--child", json.dumps(asdict(cfg))],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")},
    )
    if out.returncode != 0:
        raise SystemExit(f"{cfg.label} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = command_parser(__doc__)
    p.add_argument("--encoder", help="hub name or local directory (default: the bundled MiniLM)")
    p.add_argument("--seq-len", type=whole_number(1), default=64)
    p.add_argument("--batch-size", type=whole_number(1), default=16)
    p.add_argument("--adapter-size", type=whole_number(1), default=256, help="CTR's TSM width = the adapter's width")
    p.add_argument(
        "--task-counts",
        type=whole_number(1),
        nargs="+",
        default=[1, 10, 50],
        help="CTR's learned tasks (10 is compared with the adapter; the others in the first repeat only, "
        "except the smallest and the largest)",
    )
    p.add_argument(
        "--repeats",
        type=whole_number(1),
        default=3,
        help="interleaved repeats of every configuration a ratio reads (each ratio: their median)",
    )
    p.add_argument("--steps", type=whole_number(1), default=10, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=whole_number(0), default=2)
    p.add_argument(
        "--bert-base-steps",
        type=whole_number(0),
        default=5,
        help="timed steps of the bert-base-geometry rows (0: leave them out)",
    )
    p.add_argument(
        "--bert-base-task-counts",
        type=whole_number(1),
        nargs="+",
        default=[1, 10],
        help="CTR's learned tasks in the bert-base-geometry rows (the adapter at the largest)",
    )
    p.add_argument(
        "--compile", action="store_true", help="also time CTR and the adapter with every plugin under torch.compile"
    )
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny random encoders, 1 timed step, all in this process"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", default="bench_results.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from ctr_plugin.modeling.training_rules import UnprotectedTrainingWarning

    # The timed steps are the loop's clip and optimizer step without HAT's rules (not the cost being measured).
    warnings.simplefilter("ignore", UnprotectedTrainingWarning)
    if args.child:
        print(json.dumps(measure(Configuration(**json.loads(args.child)))))
        return 0
    if not args.quick and 10 not in args.task_counts:
        raise SystemExit("--task-counts must include 10: the adapter is compared with CTR at 10 learned tasks")

    from tqdm import tqdm

    started = time.perf_counter()
    schedule = plan(args)
    rounds = [[cfg for cfg, repeated in schedule if repeated or r == 0] for r in range(args.repeats)]
    repeats: list[list[dict]] = []
    with tqdm(total=sum(map(len, rounds)), desc="configurations") as bar:
        for r, configurations in enumerate(rounds):  # A B C ... A B C ...: each round measures every one once
            repeats.append([])
            for cfg in configurations:
                row = measure(cfg) if args.quick else measure_in_child(cfg)
                repeats[-1].append(row | {"repeat": r})
                bar.update()

    rows, table = combine(repeats, args.quick)
    report(rows, table, in_process=args.quick)
    elapsed = time.perf_counter() - started
    print(f"\n{len(rounds)} interleaved repeats, {sum(map(len, rounds))} measurements in {elapsed / 60:.1f} min")
    import torch

    Path(args.output).write_text(
        json.dumps(
            {
                "settings": {k: v for k, v in vars(args).items() if k != "child"},
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "cpus": os.cpu_count(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "date": time.strftime("%Y-%m-%d"),
                },
                "elapsed_s": elapsed,
                "rows": rows,
                "repeats": repeats,
                "ratios": table,
                "targets": TARGETS,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.output}")
    return 0


def cli() -> None:
    """The ``ctr-bench`` console command."""
    run_main(main)


if __name__ == "__main__":  # each configuration runs as python -m ctr_plugin.bench.harness --child ...
    cli()
