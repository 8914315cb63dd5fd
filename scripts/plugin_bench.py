"""One plugin alone: its training step (forward and backward) and its evaluation forward, for the
adapter, the HAT-masked adapter (``hat_adapter``) and CTR at several task counts, at one HAT
temperature ``s``; the aten operations each dispatches, and their times measured interleaved.

``ctr-bench`` times whole models; this isolates what one plugin costs beside an adapter, at a
fixed ``s`` (a HAT-masked module's cost depends on it: at large ``s`` many masks are tiny, see
``negligible_as_zero`` in ``ctr_plugin/plugins/ctr_layer.py``). Defaults: MiniLM's width (384),
batch 16 x 64 tokens with one padded text, width 256, the newest task's batch, an input that
needs a gradient (as in a model's every plugin above the first).

    OMP_NUM_THREADS=2 python scripts/plugin_bench.py --s 100 --repeats 15
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ctr_plugin.plugins.adapter import AdapterPlugin
from ctr_plugin.plugins.config import PluginConfig
from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.ctr_layer import CTRPlugin


class CountOperations(TorchDispatchMode):
    """Counts the aten operations dispatched inside it (top-level, as Python dispatches them)."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def build(kind: str, tasks: int, args) -> tuple[torch.nn.Module, torch.Tensor]:
    config = PluginConfig(adapter_size=args.width)
    context = PluginContext()
    if kind == "adapter":
        plugin = AdapterPlugin(config, args.hidden, context)
    else:
        plugin = CTRPlugin(config, args.hidden, context, knowledge_sharing=kind == "ctr")
        for _ in range(tasks):
            plugin.add_task()
    token_mask = torch.ones(args.batch, args.length)
    token_mask[0, args.length * 2 // 3 :] = 0  # one padded text, as in ctr-bench
    context.task_ids = torch.full((args.batch,), tasks - 1, dtype=torch.long)
    context.token_mask, context.active_tasks, context.s = token_mask, tasks, args.s
    # the input needs a gradient, as in every plugin of a model above the first (trainable plugins below)
    return plugin, torch.randn(args.batch, args.length, args.hidden, requires_grad=True)


def train_step(plugin: torch.nn.Module, x: torch.Tensor) -> None:
    plugin.train()
    plugin.zero_grad(set_to_none=True)
    x.grad = None
    plugin(x).square().mean().backward()


def evaluate(plugin: torch.nn.Module, x: torch.Tensor) -> None:
    plugin.eval()
    with torch.no_grad():
        plugin(x)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--s", type=float, default=100.0, help="HAT's temperature (default 100; evaluation uses s_max = 400)"
    )
    p.add_argument("--tasks", type=int, nargs="+", default=[1, 10, 50], help="CTR's task counts (default 1 10 50)")
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds; each times 3 calls (default 15)")
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=64)
    args = p.parse_args()
    torch.manual_seed(0)
    configurations = [("adapter", 1), ("hat_adapter", 1), *(("ctr", t) for t in args.tasks)]
    plugins = {c: build(*c, args) for c in configurations}
    print(f"s = {args.s}; threads {torch.get_num_threads()}; operations dispatched (top-level aten), then times")
    for (kind, tasks), (plugin, x) in plugins.items():
        for run in (train_step, evaluate):
            with CountOperations() as counter:
                run(plugin, x)
            print(f"  {kind:12s} {tasks:3d} tasks {run.__name__:10s} {sum(counter.counts.values()):5d} operations")
    times = collections.defaultdict(list)
    for run in (train_step, evaluate):  # warm-up
        for plugin, x in plugins.values():
            for _ in range(3):
                run(plugin, x)
    for _ in range(args.repeats):
        for run in (train_step, evaluate):
            for key, (plugin, x) in plugins.items():
                start = time.perf_counter()
                for _ in range(3):
                    run(plugin, x)
                times[key, run.__name__].append((time.perf_counter() - start) / 3 * 1e3)
    adapter = {run: statistics.median(times[("adapter", 1), run]) for run in ("train_step", "evaluate")}
    print(f"median over {args.repeats} interleaved rounds (ms; ratio to the adapter):")
    for (key, run), values in times.items():
        kind, tasks = key
        median = statistics.median(values)
        print(f"  {kind:12s} {tasks:3d} tasks {run:10s} {median:7.2f} ms  x{median / adapter[run]:.2f}")


if __name__ == "__main__":
    main()
