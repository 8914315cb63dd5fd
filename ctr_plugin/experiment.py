"""One continual-learning run, end to end: data, model, the loop, and everything written to disk.

``scripts/train_ctr.py`` parses its flags into a :class:`RunSettings` and calls :func:`run`; the
table script calls the same function for every cell of its grid.

``output_dir`` receives

* ``checkpoint/``: the model (``ContinualModel.save_pretrained``), rewritten after every task;
* ``results.json``: the matrices and headline metrics (rewritten after every task, atomically);
* ``accuracy_matrix.png``: a heatmap of the accuracy matrix.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from .continual.loop import ContinualResults, TrainingConfig, run_sequence, seed_everything
from .continual.methods import get_method
from .errors import CTRError
from .model import ContinualModel, load_encoder
from .plugins import PluginConfig
from .report import format_summary, plot_matrix

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoint"


@dataclass
class RunSettings:
    """Everything that defines a run besides the task data."""

    method: str = "ctr"
    encoder: str | None = None  # hub name or local directory; None = the bundled MiniLM
    training: TrainingConfig = field(default_factory=TrainingConfig)
    plugin: PluginConfig = field(default_factory=PluginConfig)
    from_checkpoint: str | None = None  # go on learning new tasks from this checkpoint
    overwrite: bool = False
    device: str | None = None


def split_training_options(options: dict) -> tuple[dict, dict]:
    """Split a config's ``training:`` mapping into TrainingConfig and PluginConfig keyword args."""
    train_keys = {f.name for f in fields(TrainingConfig)}
    plugin_keys = {f.name for f in fields(PluginConfig)} - {"plugin_type"}
    unknown = sorted(set(options) - train_keys - plugin_keys)
    if unknown:
        raise CTRError(
            f"Unknown training option(s) {unknown} in the data config. Valid options: "
            f"{', '.join(sorted(train_keys | plugin_keys))}."
        )
    return {k: v for k, v in options.items() if k in train_keys}, {k: v for k, v in options.items() if k in plugin_keys}


def write_json_atomic(path: Path, data: dict) -> None:
    """Write beside, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if (output_dir / RESULTS_FILE).exists() and not overwrite:
        raise CTRError(
            f"{output_dir} already holds a run ({RESULTS_FILE} exists). Choose another --output-dir, or "
            f"pass --overwrite to replace it."
        )


def run(tasks, settings: RunSettings, output_dir: str | os.PathLike, source: dict | None = None) -> dict:
    """Train ``settings.method`` over ``tasks`` (a list of TaskData) and write the outputs.

    Returns the results dictionary that is also written to ``output_dir/results.json``.
    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir, settings.overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    method = get_method(settings.method)
    cfg = settings.training
    seed_everything(cfg.seed)

    if settings.from_checkpoint:
        model = ContinualModel.from_pretrained(settings.from_checkpoint, encoder=settings.encoder)
        known = [t.name for t in tasks if t.name in model.task_names]
        if known:
            raise CTRError(
                f"The checkpoint {settings.from_checkpoint} already learned {known}; a continued run must "
                f"bring new tasks only. Rename them, or train from scratch."
            )
    else:
        encoder, tokenizer = load_encoder(settings.encoder)
        model = method.build_model(encoder, tokenizer, settings.plugin, settings.encoder)
    device = settings.device or ("cuda" if _cuda_available() else "cpu")
    model.to(device)

    base = {
        "method": method.name,
        "encoder": model.encoder_name,
        "seed": cfg.seed,
        "training": cfg.to_dict(),
        "plugin": model.plugin_config.to_dict(),
        "data": source or {},
        "task_sizes": {t.name: {"train": len(t.train), "validation": len(t.validation), "test": len(t.test)} for t in tasks},
    }
    if settings.from_checkpoint:
        base["continued_from"] = str(settings.from_checkpoint)

    def save(model: ContinualModel, results: ContinualResults) -> None:
        model.save_pretrained(output_dir / CHECKPOINT_DIR, extra={"method": method.name})
        write_json_atomic(output_dir / RESULTS_FILE, results.to_dict() | base)

    start = time.perf_counter()
    results = run_sequence(model, method, tasks, cfg, on_task_end=save)
    out = results.to_dict() | base | {"wall_seconds": round(time.perf_counter() - start, 1)}
    write_json_atomic(output_dir / RESULTS_FILE, out)
    plot_matrix(results.acc_matrix, results.tasks, output_dir / "accuracy_matrix.png", f"{method.name}: test accuracy (%)")
    log.info("\n%s", format_summary(out))
    return out


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
