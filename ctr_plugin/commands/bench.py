"""ctr-bench: what CTR costs: training step time, evaluation throughput, parameters, checkpoint size and peak
memory, side by side with an adapter of the same width, a frozen encoder with heads only, and full
fine-tuning; and CTR again after 1, 5, 10, 20 and 50 learned tasks.

    ctr-bench                                   # bundled MiniLM, length 64, batch 16
    ctr-bench --encoder bert-base-uncased --device cuda --adapter-size 2000

Every configuration runs in its own child process (so its peak memory is its own), one after the
other in this one invocation, and the ratios printed at the end compare configurations measured
in the same run. Tasks are added with random heads: timing needs no training. Writes the table to
stdout and everything to --output (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..cli import run_main

# each configuration measured: the model of this method
METHOD_OF = {"ctr": "ctr", "adapter": "adapter_ncl", "frozen_heads": "frozen_heads", "full_finetune": "bert_ncl"}
TARGETS = {
    "ctr_step_vs_adapter_at_10_tasks": 1.3,
    "ctr_step_50_vs_1_tasks": 1.25,
    "ctr_eval_vs_adapter": 1.15,
    "checkpoint_growth_per_task_pct": 2.0,
}


def measure(kind: str, tasks: int, args) -> dict:
    """Run in a child process: build one configuration and time it."""
    import resource

    import torch

    from ctr_plugin.continual.methods import get_method
    from ctr_plugin.model import load_encoder
    from ctr_plugin.plugins import PluginConfig

    torch.manual_seed(0)
    device = torch.device(args.device)
    encoder, tokenizer = load_encoder(args.encoder)
    method = get_method(METHOD_OF[kind])  # the method decides its plugin, and whether the encoder trains
    model = method.build_model(encoder, tokenizer, PluginConfig(adapter_size=args.adapter_size, pooling="mean"), args.encoder)
    for t in range(tasks):
        model.add_task(f"task{t}", ["negative", "positive"])
    model.to(device)
    params = [p for _, p in model.trainable_parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    vocab = model.encoder.config.vocab_size
    ids = torch.randint(1000, vocab, (args.batch_size, args.seq_len), device=device)
    mask = torch.ones_like(ids)
    task_ids = torch.full((args.batch_size,), tasks - 1, dtype=torch.long, device=device)  # the newest task routes over all
    labels = torch.randint(0, 2, (args.batch_size,), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        loss = torch.nn.functional.cross_entropy(model(ids, mask, task_ids, s=1.0), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    step_times = []
    for i in range(args.warmup + args.steps):
        sync()
        start = time.perf_counter()
        train_step()
        sync()
        if i >= args.warmup:
            step_times.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        for _ in range(args.warmup):
            model(ids, mask, task_ids)
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            model(ids, mask, task_ids)
        sync()
        eval_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        checkpoint = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.suffix == ".safetensors")
    step_times.sort()
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "kind": kind,
        "tasks": tasks,
        "train_step_s": step_times[len(step_times) // 2],  # median
        "eval_examples_per_s": args.steps * args.batch_size / eval_seconds,
        "trainable_params": sum(p.numel() for p in params),
        "checkpoint_bytes": checkpoint,
        "peak_memory_bytes": peak,
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS",
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", help="hub name or local directory (default: the bundled MiniLM)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--adapter-size", type=int, default=256, help="CTR's TSM width = the adapter's width")
    p.add_argument("--task-counts", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    p.add_argument("--steps", type=int, default=10, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", default="bench_results.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, tasks = args.child.split(":")
        print(json.dumps(measure(kind, int(tasks), args)))
        return 0

    plan = [("adapter", 10), ("frozen_heads", 10), ("full_finetune", 10)] + [("ctr", n) for n in args.task_counts]
    forwarded = [f"--seq-len={args.seq_len}", f"--batch-size={args.batch_size}", f"--adapter-size={args.adapter_size}",
                 f"--steps={args.steps}", f"--warmup={args.warmup}", f"--device={args.device}"]
    if args.encoder:
        forwarded.append(f"--encoder={args.encoder}")
    rows = []
    from tqdm import tqdm

    for kind, tasks in tqdm(plan, desc="configurations"):
        out = subprocess.run([sys.executable, "-m", __spec__.name, *forwarded, "--child", f"{kind}:{tasks}"], capture_output=True, text=True,
                             env=os.environ | {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))

    by = {(r["kind"], r["tasks"]): r for r in rows}
    ctr = {r["tasks"]: r for r in rows if r["kind"] == "ctr"}
    adapter = by[("adapter", 10)]
    first, last = min(ctr), max(ctr)
    growth = (ctr[last]["checkpoint_bytes"] - ctr[first]["checkpoint_bytes"]) / (last - first) if last > first else 0.0
    ratios = {
        "ctr_step_vs_adapter_at_10_tasks": ctr[10]["train_step_s"] / adapter["train_step_s"] if 10 in ctr else None,
        "ctr_step_50_vs_1_tasks": ctr[last]["train_step_s"] / ctr[first]["train_step_s"],
        "ctr_eval_vs_adapter": adapter["eval_examples_per_s"] / (ctr[10] if 10 in ctr else ctr[first])["eval_examples_per_s"],
        "checkpoint_growth_per_task_pct": 100 * growth / ctr[first]["checkpoint_bytes"],
    }
    print(f"\n{'configuration':<22}{'train step (s)':>15}{'eval ex/s':>11}{'trainable':>12}{'checkpoint MB':>15}{'peak mem MB':>13}")
    for r in rows:
        name = f"{r['kind']} ({r['tasks']} tasks)"
        print(f"{name:<22}{r['train_step_s']:>15.3f}{r['eval_examples_per_s']:>11.1f}{r['trainable_params']:>12,}{r['checkpoint_bytes'] / 1e6:>15.2f}{r['peak_memory_bytes'] / 1e6:>13.0f}")
    print()
    for key, value in ratios.items():
        verdict = "n/a" if value is None else ("met" if value <= TARGETS[key] else "MISSED")
        print(f"{key:<36} {value if value is None else round(value, 3)!s:>8}  (target <= {TARGETS[key]})  {verdict}")
    import platform

    import torch

    Path(args.output).write_text(json.dumps({
        "settings": {k: v for k, v in vars(args).items() if k != "child"},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")},
        "rows": rows, "ratios": ratios, "targets": TARGETS,
    }, indent=2))
    print(f"\nwritten to {args.output}")
    return 0


def cli() -> None:
    """The ``ctr-bench`` console command."""
    run_main(main)


if __name__ == "__main__":  # each configuration runs as python -m ctr_plugin.commands.bench --child ...
    cli()
