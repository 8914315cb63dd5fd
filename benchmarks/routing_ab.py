r"""Indicative A/B of the routing's convolution + max over time (``conv_max_over_time``): the working
tree's against a git revision's, interleaved in one process, median of several repetitions.

    OMP_NUM_THREADS=1 python benchmarks/routing_ab.py [--before REV] [--reps 9] \
        [--chunks 131072,262144] [--shapes 1,10,50,cur]

(``--before 985eef0``: the routing before the batched-matmul change; the default HEAD compares
the working tree with the last commit.) Run it with nothing else on the machine for figures
worth quoting; on a busy machine the ratios are indicative only.

Shapes: MiniLM's routing at length 64, batch 16 (c = 3 channels, 100 filters per kernel size,
kernels 3, 4, 5): CNN_prev (N = 16 examples, G = T tasks) and CNN_cur (N = 1, G = 16). Each timing
is the three kernel sizes of one TokenCNN call, forward + backward (training) or forward alone
without a gradient (inference), with no padding or with padded examples (lengths 20..64).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time

import torch

from ctr_plugin.plugins import routing_ops as after


def load_revision(rev: str):
    """The routing kernel's module at ``rev``: ``plugins/routing_ops.py``, or ``plugins/ctr_layer.py`` where it lived
    before."""
    for path in ("ctr_plugin/plugins/routing_ops.py", "ctr_plugin/plugins/ctr_layer.py"):
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
        if shown.returncode == 0:
            break
    shown.check_returncode()
    source = shown.stdout
    spec = importlib.util.spec_from_loader("ctr_plugin.plugins._ctr_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "ctr_plugin.plugins"
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def make_inputs(N: int, G: int, padded: bool, L: int = 64, C: int = 3, filters: int = 100):
    per_example = N > 1  # CNN_prev: a mask per example; CNN_cur: per group (each example is its own group)
    lengths = (
        torch.randint(20, L + 1, (N if per_example else G,)) if padded else torch.full((N if per_example else G,), L)
    )
    valid = torch.arange(L)[None, :] < lengths[:, None]
    valid = valid[:, None, :] if per_example else valid[None]  # (N, 1, L) or (1, G, L)
    x = torch.randn(N, G, C, L) * valid[:, :, None, :]
    return [(x, torch.randn(G, filters, C, K), torch.randn(filters), valid) for K in (3, 4, 5)]


def call(module, inputs, train: bool, chunk: int | None = None):
    if chunk is not None:
        module.FEATURE_MAP_CHUNK = chunk
    if not train:
        with torch.no_grad():
            return [module.conv_max_over_time(*i) for i in inputs]
    outs = []
    for x, w, b, valid in inputs:
        x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
        out = module.conv_max_over_time(x, w, b, valid)
        out.backward(torch.ones_like(out))
        outs.append((out.detach(), x.grad, w.grad, b.grad))
    return outs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="HEAD")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument(
        "--chunks",
        default=str(after.FEATURE_MAP_CHUNK),
        help="FEATURE_MAP_CHUNK values to try (default: the working tree's)",
    )
    parser.add_argument("--shapes", default="1,10,50,cur")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    before = load_revision(args.before)
    before_chunk = before.FEATURE_MAP_CHUNK
    variants = {"before": (before, before_chunk)} | {
        f"after {int(c) // 1024}K": (after, int(c)) for c in args.chunks.split(",")
    }
    for shape in args.shapes.split(","):
        N, G = (1, 16) if shape == "cur" else (16, int(shape))
        label = "CNN_cur (N=1, G=16)" if shape == "cur" else f"CNN_prev (N=16, G={G})"
        for padded in (False, True):
            inputs = make_inputs(N, G, padded)
            for train in (True, False):
                reference = call(before, inputs, train, before_chunk)
                for module, chunk in variants.values():  # same values and gradients
                    for r, o in zip(reference, call(module, inputs, train, chunk)):
                        for a, b in zip(r if train else [r], o if train else [o]):
                            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
                times = {name: [] for name in variants}
                for rep in range(args.reps + 1):  # interleaved; the first round is a warm-up
                    for name, (module, chunk) in variants.items():
                        start = time.perf_counter()
                        call(module, inputs, train, chunk)
                        if rep:
                            times[name].append(time.perf_counter() - start)
                base = statistics.median(times["before"])
                cells = "  ".join(
                    f"{name} {statistics.median(t) * 1e3:6.2f} ms ({statistics.median(t) / base:.2f})"
                    for name, t in times.items()
                )
                print(
                    f"{label:22s} {'padded' if padded else 'full  '} {'train' if train else 'infer'}: {cells}",
                    flush=True,
                )


if __name__ == "__main__":
    sys.exit(main())
