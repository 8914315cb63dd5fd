"""One plugin alone: its training step (forward and backward) and its evaluation forward, for the
adapter, the HAT-masked adapter (``hat_adapter``) and CTR at several task counts, at one HAT
temperature ``s``; the aten operations each dispatches, and their times measured interleaved.

``ctr-bench`` times whole models; this isolates what one plugin costs beside an adapter, at a
fixed ``s`` (a HAT-masked module's cost depends on it: at large ``s`` many masks are tiny, see
``negligible_as_zero`` in ``ctr_plugin/plugins/ctr_layer.py``). Defaults: MiniLM's width (384),
batch 16 x 64 tokens with one padded text, width 256, the newest task's batch, an input that
needs a gradient (as in a model's every plugin above the first).

    OMP_NUM_THREADS=2 python scripts/plugin_bench.py --s 100 --repeats 15
    OMP_NUM_THREADS=2 python scripts/plugin_bench.py --ablations --tasks 1 10   # where CTR's time goes

``--ablations`` adds, at each CTR task count, CTR with parts of its knowledge sharing module replaced
by stand-ins of negligible cost (diagnostic rows only: they compute something else): "ctr-noconv",
the routing's convolution + max over time replaced by a code made from its weights and inputs
without a convolution; "ctr-norouting", the whole transfer routing replaced by W_out applied to the
task capsules summed over tasks. With ``hat_adapter`` (CTR without the module) and the adapter,
their differences split CTR's time into the HAT masks, the task capsules + W_out + the residual sum,
the routing's small operations, and its convolution.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ctr_plugin.plugins import ctr_layer
from ctr_plugin.plugins.adapter import AdapterPlugin
from ctr_plugin.plugins.config import PluginConfig
from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.ctr_layer import CTRPlugin
from ctr_plugin.plugins.routing_ops import conv_max_over_time


class CountOperations(TorchDispatchMode):
    """Counts the aten operations dispatched inside it (top-level, as Python dispatches them)."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _code_without_convolution(x, weight, bias, valid, masked):
    """A stand-in for ``conv_max_over_time`` of the same shapes and gradient paths, at negligible cost."""
    return (weight.sum((2, 3)) + bias).expand(x.shape[0], -1, -1) * x.sum((2, 3))[..., None]


def _ablate(plugin: CTRPlugin, kind: str) -> None:
    routing = plugin.transfer_routing
    if kind == "ctr-norouting":  # o = W_out applied to the capsules summed over tasks
        routing.forward = lambda p, *rest: routing.output(p.sum(2).repeat(1, 1, routing.num_capsules))
        return
    forward = routing.forward

    def without_convolution(*args):
        ctr_layer.conv_max_over_time = _code_without_convolution
        try:
            return forward(*args)
        finally:
            ctr_layer.conv_max_over_time = conv_max_over_time

    routing.forward = without_convolution


def build(kind: str, tasks: int, args) -> tuple[torch.nn.Module, torch.Tensor]:
    config = PluginConfig(adapter_size=args.width)
    context = PluginContext()
    if kind == "adapter":
        plugin = AdapterPlugin(config, args.hidden, context)
    else:
        plugin = CTRPlugin(config, args.hidden, context, knowledge_sharing=kind.startswith("ctr"))
        for _ in range(tasks):
            plugin.add_task()
        if kind in ("ctr-noconv", "ctr-norouting"):
            _ablate(plugin, kind)
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
    p.add_argument("--ablations", action="store_true", help="also CTR without parts of its routing (see above)")
    args = p.parse_args()
    torch.manual_seed(0)
    ctr_kinds = ("ctr", "ctr-noconv", "ctr-norouting") if args.ablations else ("ctr",)
    configurations = [("adapter", 1), ("hat_adapter", 1), *((k, t) for t in args.tasks for k in ctr_kinds)]
    plugins = {c: build(*c, args) for c in configurations}
    print(f"s = {args.s}; threads {torch.get_num_threads()}; operations dispatched (top-level aten), then times")
    for (kind, tasks), (plugin, x) in plugins.items():
        for run in (train_step, evaluate):
            with CountOperations() as counter:
                run(plugin, x)
            print(f"  {kind:13s} {tasks:3d} tasks {run.__name__:10s} {sum(counter.counts.values()):5d} operations")
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
        print(f"  {kind:13s} {tasks:3d} tasks {run:10s} {median:7.2f} ms  x{median / adapter[run]:.2f}")


if __name__ == "__main__":
    main()
