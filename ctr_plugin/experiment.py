"""One continual-learning run, end to end: data, model, the loop, and everything written to disk.

``scripts/train_ctr.py`` parses its flags into a :class:`RunSettings` and calls :func:`run`; the
table script calls the same function for every cell of its grid.

``output_dir`` receives

* ``checkpoint/``: the model (``ContinualModel.save_pretrained``), rewritten after every task;
* ``results.json``: the matrices, headline metrics and per-task cost (``params_added``,
  ``checkpoint_bytes``: the checkpoint's size after each task), rewritten after every task, atomically;
* ``accuracy_matrix.png``: a heatmap of the accuracy matrix.

Under ``accelerate launch`` every process runs this function; only the main one writes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from .continual.loop import ContinualResults, TrainingConfig, run_sequence, seed_everything
from .continual.methods import get_method
from .continual.parallel import make_accelerator
from .errors import CTRError
from .model import ContinualModel, load_encoder
from .plugins import PluginConfig
from .report import format_summary, plot_matrix

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoint"
COMMAND_FILE = "command.json"  # the options a run started with: what --resume reuses


@dataclass
class RunSettings:
    """Everything that defines a run besides the task data."""

    method: str = "ctr"
    method_options: dict = field(default_factory=dict)  # the method's dataclass fields (--method-arg)
    encoder: str | None = None  # hub name or local directory; None = the bundled MiniLM
    training: TrainingConfig = field(default_factory=TrainingConfig)
    plugin: PluginConfig = field(default_factory=PluginConfig)
    from_checkpoint: str | None = None  # go on learning new tasks from this checkpoint
    overwrite: bool = False
    resume: bool = False  # continue an interrupted run in the same output directory
    device: str | None = None  # "cpu" or "cuda"; None = a GPU where there is one
    mixed_precision: str | None = None  # "no", "fp16", "bf16" on GPUs; None = accelerate's setting


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


def check_output_dir(output_dir: Path, overwrite: bool, resume: bool = False) -> None:
    if resume:
        if not output_dir.is_dir():
            raise CTRError(f"Cannot resume: {output_dir} does not exist. Start the run without --resume.")
        return
    if (output_dir / RESULTS_FILE).exists() and not overwrite:
        raise CTRError(
            f"{output_dir} already holds a run ({RESULTS_FILE} exists). Choose another --output-dir, pass "
            f"--resume to continue it, or --overwrite to replace it."
        )


def _resume_state(output_dir: Path, tasks, settings: RunSettings):
    """The model and results after the last task an interrupted run completed (None, None if none).

    Both come from the checkpoint directory, which is replaced atomically after every task: the
    results saved inside it always belong to exactly the weights beside them.
    """
    checkpoint = output_dir / CHECKPOINT_DIR
    if not checkpoint.is_dir():
        log.info("No task of the interrupted run was completed: starting from the first task.")
        return None, None
    progress = ContinualModel.read_config(checkpoint).get("progress")
    names = [t.name for t in tasks]
    if not progress or progress.get("tasks") != names:
        raise CTRError(
            f"Cannot resume {output_dir}: its checkpoint was made for the task sequence "
            f"{(progress or {}).get('tasks')}, but this command gives {names}. Resume with the same "
            f"config, order and datasets as the interrupted run, or start a new --output-dir."
        )
    model = ContinualModel.from_pretrained(checkpoint, encoder=settings.encoder)
    results = ContinualResults.from_dict(progress)
    if len(results.checkpoint_bytes) == results.completed_tasks - 1:  # measured after the checkpoint was written
        results.checkpoint_bytes.append(directory_bytes(checkpoint))
    log.info("Resuming %s after %d of %d tasks.", output_dir, results.completed_tasks, len(tasks))
    return model, results


def run(tasks, settings: RunSettings, output_dir: str | os.PathLike, source: dict | None = None, command: dict | None = None) -> dict:
    """Train ``settings.method`` over ``tasks`` (a list of TaskData) and write the outputs.

    Returns the results dictionary that is also written to ``output_dir/results.json``. Nothing in
    ``output_dir`` changes until the model is built; then ``command`` (if given) is recorded and,
    with ``settings.overwrite``, the previous run there is removed.
    """
    output_dir = Path(output_dir)
    accelerator = make_accelerator(settings.device, settings.mixed_precision)
    main = accelerator.is_main_process
    if not main:  # one log, not one per process
        logging.getLogger("ctr_plugin").setLevel(logging.WARNING)
    check_output_dir(output_dir, settings.overwrite, settings.resume)
    method = get_method(settings.method, settings.method_options)
    cfg = settings.training
    seed_everything(cfg.seed)

    model, results = _resume_state(output_dir, tasks, settings) if settings.resume else (None, None)
    if model is None:
        model = _initial_model(tasks, settings, method)
    model.to(accelerator.device)
    accelerator.wait_for_everyone()  # every process has checked output_dir before the main one changes it
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if not settings.resume:
            for old in (RESULTS_FILE, "accuracy_matrix.png"):
                (output_dir / old).unlink(missing_ok=True)
            shutil.rmtree(output_dir / CHECKPOINT_DIR, ignore_errors=True)
        if command is not None:
            write_json_atomic(output_dir / COMMAND_FILE, command)

    truncated = count_truncated(model, tasks, cfg.max_length, log_counts=main)
    base = {
        "method": method.name,
        "method_options": method.options(),
        "encoder": model.encoder_name,
        "seed": cfg.seed,
        "training": cfg.to_dict(),
        "processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "plugin": model.plugin_config.to_dict(),
        "data": source or {},
        "task_sizes": {t.name: {"train": len(t.train), "validation": len(t.validation), "test": len(t.test)} for t in tasks},
        "truncated_texts": truncated,
    }
    if settings.from_checkpoint:
        base["continued_from"] = str(settings.from_checkpoint)

    def save(model: ContinualModel, results: ContinualResults) -> None:
        model.save_pretrained(output_dir / CHECKPOINT_DIR, extra={"method": method.name, "progress": results.to_dict()})
        results.checkpoint_bytes.append(directory_bytes(output_dir / CHECKPOINT_DIR))
        write_json_atomic(output_dir / RESULTS_FILE, results.to_dict() | base)

    start = time.perf_counter()
    try:
        results = run_sequence(model, method, tasks, cfg, results=results, on_task_end=save, accelerator=accelerator)
    except FloatingPointError as err:
        raise CTRError(
            f"Training stopped: {err}. The checkpoint of the last completed task in "
            f"{output_dir / CHECKPOINT_DIR} is intact. Lower --lr (or check the data), then start again, "
            f"or continue with --resume {output_dir}."
        ) from None
    out = results.to_dict() | base | {"wall_seconds": round(time.perf_counter() - start, 1)}
    if main:
        write_json_atomic(output_dir / RESULTS_FILE, out)
        plot_matrix(results.acc_matrix, results.tasks, output_dir / "accuracy_matrix.png", f"{method.name}: test accuracy (%)")
        log.info("\n%s", format_summary(out))
    accelerator.wait_for_everyone()
    return out


def directory_bytes(directory: Path) -> int:
    """The size of the files under ``directory`` (a checkpoint), in bytes."""
    return sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())


def count_truncated(model: ContinualModel, tasks, max_length: int, log_counts: bool = True) -> dict[str, int]:
    """How many examples of each task are longer than ``max_length`` tokens (and so truncated)."""
    counts = {}
    for task in tasks:
        n = 0
        for split in (task.train, task.validation, task.test):
            enc = model.tokenizer(split.texts, split.pairs, truncation=False, add_special_tokens=True, verbose=False)
            n += sum(len(ids) > max_length for ids in enc["input_ids"])
        counts[task.name] = n
        if n and log_counts:
            total = len(task.train) + len(task.validation) + len(task.test)
            log.info("%s: %d of %d texts are longer than %d tokens and will be truncated (raise --max-length to keep more).", task.name, n, total, max_length)
    return counts


def _initial_model(tasks, settings: RunSettings, method) -> ContinualModel:
    """A fresh model, or the checkpoint a continued run starts from (which must not know the tasks)."""
    if not settings.from_checkpoint:
        encoder, tokenizer = load_encoder(settings.encoder)
        return method.build_model(encoder, tokenizer, settings.plugin, settings.encoder)
    model = ContinualModel.from_pretrained(settings.from_checkpoint, encoder=settings.encoder)
    known = [t.name for t in tasks if t.name in model.task_names]
    if known:
        raise CTRError(
            f"The checkpoint {settings.from_checkpoint} already learned {known}; a continued run must "
            f"bring new tasks only. Rename them, or train from scratch."
        )
    return model

