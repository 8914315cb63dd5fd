"""Where a whole model's training step goes: its forward pass (and, of it, the time inside the
plugins' forwards), backward pass, gradient clipping and optimizer step, for the adapter at 10
tasks and CTR at 1 and 10 tasks, built and stepped as ``ctr-bench`` does (``bench/measure.py``: the
loop's optimizer and clipping, HAT's s annealed over the timed steps), measured interleaved in one
process (A B C A B C ...), medians.

``ctr-bench`` gives the ratios of whole steps; this splits them, to tell the plugins' share of a
gap from the rest of the step (the encoder, the optimizer), and the forward's from the backward's.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python scripts/step_phases.py                    # bert-base geometry
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python scripts/step_phases.py --encoder minilm   # the bundled MiniLM
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ctr_plugin.bench.measure import METHOD_OF, build_encoder
from ctr_plugin.continual.loop import clip_gradients, parameter_groups
from ctr_plugin.continual.methods import Step, get_method
from ctr_plugin.continual.optim import build_optimizer
from ctr_plugin.continual.parallel import make_accelerator
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.plugins import PluginConfig


class Row:
    """One model (a kind at a task count), ready to step, with its plugins' forwards timed."""

    def __init__(self, kind: str, tasks: int, args):
        torch.manual_seed(0)
        encoder, tokenizer = build_encoder(None if args.encoder == "minilm" else args.encoder)
        self.method = get_method(METHOD_OF[kind])
        config = PluginConfig(adapter_size=args.width, pooling="mean")
        self.model = self.method.build_model(encoder, tokenizer, config, args.encoder)
        for t in range(tasks):
            self.model.add_task(f"task{t}", ["negative", "positive"])
        self.params = [p for _, p in self.model.trainable_parameters()]
        self.training = TrainingConfig(lr=1e-5, progress=False)
        groups = parameter_groups(self.model, self.method, self.training.lr, self.training.weight_decay)
        self.optimizer = build_optimizer(groups, self.training)
        self.accelerator = make_accelerator("cpu", "no")
        vocab = self.model.encoder.config.vocab_size
        self.ids = torch.randint(min(1000, vocab // 2), vocab, (args.batch, args.length))
        self.task_ids = torch.full((args.batch,), tasks - 1)
        self.labels = torch.randint(0, 2, (args.batch,))
        steps = range(args.steps)
        self.inputs = [self.method.plugin_inputs(self.model, Step(tasks - 1, 0, i, args.steps)) for i in steps]
        self.in_plugins = 0.0
        for plugin in self.model.plugins:
            plugin.register_forward_pre_hook(self._enter)
            plugin.register_forward_hook(self._leave)
        self.model.train()

    def _enter(self, module, args) -> None:
        self._entered = time.perf_counter()

    def _leave(self, module, args, output) -> None:
        self.in_plugins += time.perf_counter() - self._entered

    def step(self, i: int) -> dict[str, float]:
        self.in_plugins = 0.0
        start = time.perf_counter()
        with self.model.context.using(**self.inputs[i % len(self.inputs)]):
            loss = self.model(self.ids, torch.ones_like(self.ids), self.task_ids, labels=self.labels).loss
        forward = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        backward = time.perf_counter()
        clip_gradients(self.params, self.training, self.accelerator)
        clipped = time.perf_counter()
        self.optimizer.step()
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
    args.batch, args.length, args.width = (16, 64, 256) if args.encoder == "minilm" else (8, 128, 2000)
    rows = {"adapter, 10 tasks": Row("adapter", 10, args), "ctr, 1 task": Row("ctr", 1, args)}
    rows["ctr, 10 tasks"] = Row("ctr", 10, args)
    for row in rows.values():  # warm-up
        row.step(0)
    times: dict[str, dict[str, list[float]]] = {name: {} for name in rows}
    for i in range(args.steps):
        for name, row in rows.items():
            for phase, seconds in row.step(i).items():
                times[name].setdefault(phase, []).append(seconds)
    print(f"{args.encoder}, batch {args.batch} x {args.length}, width {args.width}; s, median of {args.steps} steps")
    phases = list(next(iter(times.values())))
    print(f"{'':20s}" + "".join(f"{phase:>23s}" for phase in phases))
    for name, measured in times.items():
        print(f"{name:20s}" + "".join(f"{statistics.median(measured[phase]):23.3f}" for phase in phases))


if __name__ == "__main__":
    main()
