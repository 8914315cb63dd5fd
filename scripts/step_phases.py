"""Where a whole model's training step goes: its forward pass (and, of it, the time inside the
plugins' forwards), backward pass, gradient clipping and optimizer step, for the adapter at 10
tasks and CTR at 1 and 10 tasks, built and stepped as ``ctr-bench`` does (``bench/measure.py``'s
``Workload``: the loop's optimizer and clipping, HAT's s annealed over the timed steps), measured
interleaved in one process (A B C A B C ...), medians.

``ctr-bench`` gives the ratios of whole steps; this splits them, to tell the plugins' share of a
gap from the rest of the step (the encoder, the optimizer), and the forward's from the backward's.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python scripts/step_phases.py                    # bert-base geometry
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python scripts/step_phases.py --encoder minilm   # the bundled MiniLM
"""

from __future__ import annotations

import argparse
import statistics
import time

from ctr_plugin.bench.measure import Configuration, Workload


class Row:
    """One ``ctr-bench`` workload (a kind at a task count), with its plugins' forwards timed."""

    def __init__(self, cfg: Configuration):
        self.work = Workload(cfg)
        self.in_plugins = 0.0
        for plugin in self.work.model.plugins:
            plugin.register_forward_pre_hook(self._enter)
            plugin.register_forward_hook(self._leave)
        self.work.model.train()

    def _enter(self, module, args) -> None:
        self._entered = time.perf_counter()

    def _leave(self, module, args, output) -> None:
        self.in_plugins += time.perf_counter() - self._entered

    def step(self, batch: int) -> dict[str, float]:
        self.in_plugins = 0.0
        start = time.perf_counter()
        loss = self.work.loss(batch)
        forward = time.perf_counter()
        self.work.backward(loss)
        backward = time.perf_counter()
        self.work.clip()
        clipped = time.perf_counter()
        self.work.optimizer_step()
        done = time.perf_counter()
        return {
            "forward": forward - start,
            "of it, in the plugins": self.in_plugins,
            "backward": backward - forward,
            "clip": clipped - backward,
            "optimizer": done - clipped,
            "step": done - start,
        }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--encoder", default="random:bert-base", help="random:bert-base (default) or minilm (bundled)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per model, interleaved (default 5)")
    args = p.parse_args()
    encoder = None if args.encoder == "minilm" else args.encoder
    length, batch, width = (64, 16, 256) if encoder is None else (128, 8, 2000)  # as ctr-bench's two geometries
    rows = {
        f"{kind}, {tasks} task{'s' if tasks > 1 else ''}": Row(
            Configuration(kind, tasks, encoder, length, batch, width, steps=args.steps, warmup=1)
        )
        for kind, tasks in (("adapter", 10), ("ctr", 1), ("ctr", 10))
    }
    for row in rows.values():  # warm-up
        row.step(0)
    times: dict[str, dict[str, list[float]]] = {name: {} for name in rows}
    for i in range(args.steps):
        for name, row in rows.items():
            for phase, seconds in row.step(i).items():
                times[name].setdefault(phase, []).append(seconds)
    print(f"{args.encoder}, batch {batch} x {length}, width {width}; s, median of {args.steps} steps")
    phases = list(next(iter(times.values())))
    print(f"{'':20s}" + "".join(f"{phase:>23s}" for phase in phases))
    for name, measured in times.items():
        print(f"{name:20s}" + "".join(f"{statistics.median(measured[phase]):23.3f}" for phase in phases))


if __name__ == "__main__":
    main()
