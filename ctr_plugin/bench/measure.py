"""One ``ctr-bench`` configuration, measured: the model it names built (a pretrained encoder, or a
random one of a known geometry), its training step and evaluation timed, its parameters, checkpoint
size and peak memory taken, and its multiply-adds counted (``ctr_plugin/bench/arithmetic.py``).

``ctr_plugin/bench/harness.py`` plans the configurations and runs each through :func:`measure`, in a
child process of its own (``python -m ctr_plugin.bench.harness --child <configuration as JSON>``)
so that its peak memory is its own.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Each kind of row is the model of this registered method (``continual.methods.METHODS``): the method
# builds it (its plugin kind, whether the encoder trains) and gives its forward pass's arguments.
METHOD_OF = {"ctr": "ctr", "adapter": "adapter_ncl", "frozen_heads": "frozen_heads", "full_finetune": "bert_ncl"}

# Randomly initialised encoders built in code: bert-base's geometry (Devlin et al. 2019), and a tiny
# one for --quick.
GEOMETRIES = {
    "bert-base": {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
    },
    "tiny": {
        "vocab_size": 200,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    },
}


@dataclass
class Configuration:
    """One measured row: a kind of model, its learned tasks, its encoder and its sizes."""

    kind: str  # a key of METHOD_OF
    tasks: int
    encoder: str | None  # hub name or directory (None: the bundled MiniLM), or "random:<geometry>"
    seq_len: int
    batch_size: int
    adapter_size: int
    steps: int
    warmup: int
    device: str = "cpu"
    compile: bool = False  # each plugin under torch.compile
    series: str = "main"  # "main", or "second" for the rows at a second geometry (bert-base's)
    routing_filters: int = 100
    task_capsule_hidden: int = 8

    @property
    def label(self) -> str:
        where = (
            ""
            if self.series == "main"
            else f"{(self.encoder or 'MiniLM').removeprefix('random:')} {self.seq_len}x{self.batch_size}, "
        )
        return (
            f"{self.kind}{' compiled' if self.compile else ''} "
            f"({where}{self.tasks} task{'s' if self.tasks != 1 else ''})"
        )


def build_encoder(name: str | None):
    """(encoder, tokenizer): a named or bundled pretrained one, or a random one of a known geometry
    with a small word-piece tokenizer (the tokenizer only travels into the checkpoint)."""
    from ctr_plugin.encoders.loading import load_encoder

    if name is None or not name.startswith("random:"):
        return load_encoder(name)
    from transformers import BertConfig, BertModel, BertTokenizerFast

    geometry = name.removeprefix("random:")
    if geometry not in GEOMETRIES:
        raise SystemExit(f"unknown geometry {geometry!r}; known: {', '.join(GEOMETRIES)}")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(20))]
    with tempfile.TemporaryDirectory() as folder:  # from a vocab.txt: what transformers 4.57 and 5 both build from
        (Path(folder) / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tokenizer = BertTokenizerFast.from_pretrained(folder)
    return BertModel(BertConfig(**GEOMETRIES[geometry])), tokenizer


class Workload:
    """One configuration's model, built with its tasks and stepped as the training loop steps it:
    the loop's optimizer (its groups, AdamW's kernel) and gradient clipping, for every method alike,
    and HAT's s annealed over the timed batches. The steps are split (``loss``, ``backward``,
    ``clip``, ``optimizer_step``) so that ``scripts/step_phases.py`` can time each."""

    def __init__(self, cfg: Configuration):
        import torch

        from ctr_plugin.continual.loop import parameter_groups
        from ctr_plugin.continual.methods import Step, get_method
        from ctr_plugin.continual.optim import build_optimizer
        from ctr_plugin.continual.parallel import make_accelerator
        from ctr_plugin.continual.training_config import TrainingConfig
        from ctr_plugin.plugins import PluginConfig

        torch.manual_seed(0)
        self.device = device = torch.device(cfg.device)
        encoder, tokenizer = build_encoder(cfg.encoder)
        method = get_method(METHOD_OF[cfg.kind])
        base = PluginConfig(
            adapter_size=cfg.adapter_size,
            pooling="mean",
            routing_filters=cfg.routing_filters,
            task_capsule_hidden=cfg.task_capsule_hidden,
        )
        self.model = model = method.build_model(encoder, tokenizer, base, cfg.encoder)
        for t in range(cfg.tasks):
            model.add_task(f"task{t}", ["negative", "positive"])
        model.to(device)
        if cfg.compile:
            mode = "max-autotune-no-cudagraphs" if device.type == "cpu" else "max-autotune"
            for plugin in model.plugins:  # regional: each plugin, the frozen encoder eager
                plugin.compile(mode=mode)
        self.params = [p for _, p in model.trainable_parameters()]
        self.training = TrainingConfig(lr=1e-5, progress=False)
        groups = parameter_groups(model, method, self.training.lr, self.training.weight_decay)
        self.optimizer = build_optimizer(groups, self.training)
        self.accelerator = make_accelerator(cfg.device, "no")  # what clip_gradients asks of it; full precision
        vocab = model.encoder.config.vocab_size
        self.ids = torch.randint(min(1000, vocab // 2), vocab, (cfg.batch_size, cfg.seq_len), device=device)
        self.mask = torch.ones_like(self.ids)
        # the newest task routes over all
        self.task_ids = torch.full((cfg.batch_size,), cfg.tasks - 1, dtype=torch.long, device=device)
        self.labels = torch.randint(0, 2, (cfg.batch_size,), device=device)
        # The plugin inputs as the loop's training sets them: HAT's s anneals over an epoch's batches,
        # and the timed steps are the batches of one epoch of that many (the warm-up steps repeat the
        # first): at a fixed s the masks' cost, which depends on s, would be that of one point of it.
        self.plugin_inputs = [
            method.plugin_inputs(model, Step(cfg.tasks - 1, 0, i, cfg.steps)) for i in range(cfg.steps)
        ]

    def loss(self, batch: int):
        with self.model.context.using(**self.plugin_inputs[batch]):
            return self.model(self.ids, self.mask, self.task_ids, labels=self.labels).loss

    def backward(self, loss) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    def clip(self) -> None:
        from ctr_plugin.continual.loop import clip_gradients

        clip_gradients(self.params, self.training, self.accelerator)

    def optimizer_step(self) -> None:
        self.optimizer.step()

    def train_step(self, batch: int) -> None:
        self.backward(self.loss(batch))
        self.clip()
        self.optimizer_step()

    def evaluate(self) -> None:
        self.model(self.ids, self.mask, self.task_ids)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()


def measure(cfg: Configuration) -> dict:
    """Build one configuration, time it, count its multiply-adds."""
    import resource

    import torch

    from ctr_plugin.bench.arithmetic import EncoderShape, multiply_adds

    work = Workload(cfg)
    model, params, device = work.model, work.params, work.device
    config = model.plugin_config
    model.train()
    step_times = []
    for i in range(cfg.warmup + cfg.steps):
        work.sync()
        start = time.perf_counter()
        work.train_step(max(0, i - cfg.warmup))
        work.sync()
        step_times.append(time.perf_counter() - start)
    first_step = step_times[0]  # with torch.compile: includes compiling
    step_times = sorted(step_times[cfg.warmup :])
    model.eval()
    with torch.no_grad():
        for _ in range(max(1, cfg.warmup)):
            work.evaluate()
        work.sync()
        start = time.perf_counter()
        for _ in range(cfg.steps):
            work.evaluate()
        work.sync()
        eval_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        checkpoint = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.suffix == ".safetensors")
    peak = (
        torch.cuda.max_memory_allocated()
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    counts = multiply_adds(
        config,
        cfg.tasks,
        EncoderShape.of(model.encoder),
        cfg.batch_size,
        cfg.seq_len,
        train_encoder=model.train_encoder,
    )
    return {
        **asdict(cfg),
        "label": cfg.label,
        "train_step_s": step_times[len(step_times) // 2],  # median
        "first_step_s": first_step,
        "eval_examples_per_s": cfg.steps * cfg.batch_size / eval_seconds,
        "trainable_params": sum(p.numel() for p in params),
        "checkpoint_bytes": checkpoint,
        "peak_memory_bytes": peak,
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS",
        "train_multiply_adds": counts.training_step,
        "inference_multiply_adds_per_example": counts.inference / cfg.batch_size,
        "multiply_adds": {"forward": counts.forward, "backward": counts.backward},
    }
