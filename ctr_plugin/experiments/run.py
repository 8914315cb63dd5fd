"""One continual-learning run, end to end: data, model, the loop, and everything written to disk.

``ctr-train`` (``ctr_plugin/commands/train.py``) parses its flags into a :class:`RunSettings`
(``ctr_plugin.experiments.settings``, which checks every option and builds the method) and calls
:func:`run`; ``ctr-tables`` calls the same function for every cell of its grid. :func:`run` checks
what the settings alone cannot (the devices, the output directory, the checkpoint a run continues,
the data against the encoder), each once, before it loads the data and before anything is written.
The model is made by ``learner.get_continual_model`` and trained by ``learner.ContinualLearner``:
the Python API's path. Where a run starts (a fresh model, the interrupted run it resumes, or the
checkpoint it continues, with its earlier tasks re-tested) is ``ctr_plugin.experiments.resume``'s
policy; this module owns the run's steps: the checks, the record, training with saving, the report.

``output_dir`` receives

* ``checkpoint/``: the model (``ContinualModel.save_pretrained``, with its model card ``README.md``
  showing the results so far), rewritten after every task;
* ``results.json``: the matrices, headline metrics and per-task cost (``params_added``,
  ``checkpoint_bytes``: the checkpoint's size after each task), rewritten after every task, atomically;
* ``accuracy_matrix.png``: a heatmap of the accuracy matrix.

Under ``accelerate launch`` every process runs this function; only the main one writes.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ctr_plugin.reporting.results as results_file
from ctr_plugin.continual.learner import ContinualLearner
from ctr_plugin.continual.loop import seed_everything
from ctr_plugin.continual.methods import ContinualMethod, get_method
from ctr_plugin.continual.parallel import make_accelerator
from ctr_plugin.continual.progress import ContinualResults
from ctr_plugin.continual.scenarios import check_method_scenario
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.scenarios import check_label_sets
from ctr_plugin.errors import CheckpointError, CTRError
from ctr_plugin.experiments.output_dir import (
    CHECKPOINT_DIR,
    COMMAND_FILE,
    OutputLock,
    check_output_dir,
    check_unchanged,
    directory_state,
)
from ctr_plugin.experiments.provenance import provenance
from ctr_plugin.experiments.resume import (
    check_resumed_options,
    data_fingerprints,
    directory_bytes,
    earlier_tasks,
    starting_point,
)
from ctr_plugin.experiments.tracking import check_report_to, finish_trackers, start_trackers, tracker_settings
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins import PluginConfig
from ctr_plugin.reporting.results import RESULTS_FILE, write_json_atomic
from ctr_plugin.reporting.run_report import can_draw, format_summary, plot_curves, plot_matrix

log = logging.getLogger(__name__)


@dataclass
class RunSettings:
    """Everything that defines a run besides the task data, checked on construction (the
    training and plugin options check themselves).

    ``method``: the method with its options (``get_method(name, options)``), or a registered name
    for its default options. A run trains a copy of it, so one settings object may serve several
    runs."""

    method: ContinualMethod | str = "ctr"
    encoder: str | None = None  # hub name or local directory; None = the bundled MiniLM
    training: TrainingConfig = field(default_factory=TrainingConfig)
    plugin: PluginConfig = field(default_factory=PluginConfig)
    from_checkpoint: str | None = None  # go on learning new tasks from this checkpoint
    overwrite: bool = False
    resume: bool = False  # continue an interrupted run in the same output directory
    device: str | None = None  # "cpu" or "cuda"; None = a GPU where there is one
    mixed_precision: str | None = None  # "no", "fp16", "bf16" on GPUs; None = accelerate's setting
    report_to: str = "none"  # experiment tracker: none, tensorboard, wandb, mlflow (see tracking.py)
    scenario: str = "task"  # task, domain or class (data/scenarios.py); the sequence config's `scenario:`

    def __post_init__(self):
        if isinstance(self.method, str):
            self.method = get_method(self.method)
        check_report_to(self.report_to)
        check_method_scenario(self.method, self.scenario)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what the output directory holds now."""


def run(
    tasks: list | Callable[[], list],
    settings: RunSettings,
    output_dir: str | os.PathLike,
    source: dict | None = None,
    command: dict | None = None,
) -> dict:
    """Train ``settings.method`` over ``tasks`` and write the outputs.

    ``tasks``: a list of TaskData, or a function that loads it, called once the devices and the
    output directory have passed their checks (so that a bad one fails before the data loads).
    Returns the results dictionary that is also written to ``output_dir/results.json``.

    Everything is checked before ``output_dir`` changes: the devices, the directory, the encoder
    or checkpoint (loaded), the maximum length against the tokenizer and the encoder (the options
    were checked when ``settings`` was built). Then ``output_dir/.lock`` keeps other writers out
    until the run ends. A new run records ``command`` (if given) at once; with
    ``settings.overwrite`` the previous run is kept untouched until the first task of the new one
    is saved, and only then replaced, so a run that fails or is interrupted before that leaves the
    old one as it was. With ``settings.resume`` on a finished run, nothing changes (the data is
    not even loaded) and its results are returned.
    """
    output_dir = Path(output_dir)
    if settings.resume and (done := results_file.finished(output_dir)) is not None:
        log.info(
            "%s holds a finished run (%d of %d tasks): nothing to resume; nothing was changed.",
            output_dir,
            done["completed_tasks"],
            len(done["tasks"]),
        )
        return done
    accelerator = make_accelerator(
        settings.device, settings.mixed_precision, **tracker_settings(settings.report_to, output_dir)
    )
    main = accelerator.is_main_process
    if not main:  # one log, not one per process
        logging.getLogger("ctr_plugin").setLevel(logging.WARNING)
    state = directory_state(output_dir)  # what the checks see; compared again once the lock is held
    check_output_dir(
        output_dir, settings.overwrite, settings.resume, None if settings.resume else settings.from_checkpoint
    )
    if callable(tasks):
        tasks = tasks()
    check_label_sets(settings.scenario, [(t.name, t.label_names) for t in tasks])  # before anything is written
    method = copy.deepcopy(settings.method)  # the run's own: a method keeps state across tasks
    seed_everything(settings.training.seed)
    model, results = starting_point(tasks, settings, method, accelerator, output_dir)
    base = _run_record(model, method, tasks, settings, accelerator, output_dir, source)

    accelerator.wait_for_everyone()  # every process has checked everything before the main one writes
    lock = OutputLock(output_dir).acquire() if main else None
    try:
        if main:
            check_unchanged(output_dir, state)  # no writer came and went while this one checked and loaded
        results, wall_seconds = _train_with_saving(
            model, method, tasks, results, settings, accelerator, output_dir, base, command
        )
        out = _report(results, base, wall_seconds, method, output_dir, main)
    finally:
        finish_trackers(accelerator)
        if lock is not None:
            lock.release()
    accelerator.wait_for_everyone()
    return out


def _run_record(
    model: ContinualModel, method, tasks, settings: RunSettings, accelerator, output_dir: Path, source: dict | None
) -> dict:
    """What results.json records about the run besides its results (options, data, provenance);
    a resumed run's options are checked against those the interrupted run recorded."""
    cfg = settings.training
    truncated = count_truncated(model, tasks, cfg.max_length, log_counts=accelerator.is_main_process)
    base = {
        "method": method.name,
        "method_options": method.options(),
        "encoder": model.encoder_name,
        "seed": cfg.seed,
        "training": cfg.to_dict(),
        "processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "plugin": model.plugin_config.to_dict(),
        # with the SHA-256 of every split, which --resume and ctr-tables compare
        "data": (source or {}) | {"fingerprints": data_fingerprints(tasks)},
        "task_sizes": {
            t.name: {"train": len(t.train), "validation": len(t.validation), "test": len(t.test)} for t in tasks
        },
        "data_notes": {t.name: list(t.notes) for t in tasks if t.notes},
        "truncated_texts": truncated,
        "provenance": provenance(),
    }
    if settings.resume:
        check_resumed_options(output_dir, base)
    if settings.from_checkpoint:
        base["continued_from"] = str(settings.from_checkpoint)
        base["earlier_tasks"] = earlier_tasks(settings.from_checkpoint, tasks)
    return base


def _train_with_saving(
    model: ContinualModel,
    method,
    tasks,
    results: ContinualResults | None,
    settings: RunSettings,
    accelerator,
    output_dir: Path,
    base: dict,
    command: dict | None,
) -> tuple[ContinualResults, float]:
    """Learn the tasks, saving the checkpoint and results.json after each one (the first one saved
    replaces a previous run in ``output_dir``); return the results and the seconds training took.
    A run that stops early raises an error that says what ``output_dir`` holds now."""
    main = accelerator.is_main_process
    replacing = main and not settings.resume and (output_dir / RESULTS_FILE).exists()
    # tasks the checkpoint in output_dir holds: what a failure message may say is intact
    on_disk = (
        results.completed_tasks
        if settings.resume and results is not None and (output_dir / CHECKPOINT_DIR).is_dir()
        else 0
    )
    saved = {"tasks": on_disk, "this_run": 0}
    if main and not replacing and command is not None:
        write_json_atomic(output_dir / COMMAND_FILE, command)
    start_trackers(
        accelerator,
        settings.report_to,
        output_dir,
        {k: base[k] for k in ("method", "method_options", "encoder", "seed", "training", "plugin")},
    )

    def save(model: ContinualModel, results: ContinualResults) -> None:
        nonlocal replacing
        if replacing:  # the first task of the new run is done: now it replaces the old run
            (output_dir / "accuracy_matrix.png").unlink(missing_ok=True)
            (output_dir / "training_curves.png").unlink(missing_ok=True)
            if command is not None:
                write_json_atomic(output_dir / COMMAND_FILE, command)
            replacing = False
        model.save_pretrained(
            output_dir / CHECKPOINT_DIR,
            extra=learner.card_fields()
            | {
                "progress": results.to_dict(),
                "provenance": base["provenance"],
                "data_fingerprints": base["data"]["fingerprints"],
            },
        )
        saved["tasks"], saved["this_run"] = (
            results.completed_tasks,
            saved["this_run"] + 1,
        )  # the checkpoint is what resumes
        results.checkpoint_bytes.append(directory_bytes(output_dir / CHECKPOINT_DIR))
        results_file.write(output_dir, results_file.assemble(results.to_dict(), base))

    start = time.perf_counter()
    learner = ContinualLearner(model, method, settings.training, accelerator=accelerator, scenario=settings.scenario)
    try:
        results = learner.learn_sequence(tasks, results=results, on_task_end=save)
    except FloatingPointError as err:
        raise CTRError(
            f"Training stopped: {err}. {_state_after_failure(output_dir, tasks, saved, replacing)} "
            "Lower --lr (or check the data), then start again."
        ) from None
    except KeyboardInterrupt:
        raise RunInterrupted(_state_after_failure(output_dir, tasks, saved, replacing)) from None
    except CheckpointError as err:  # the save said what failed and what is on disk
        raise CTRError(
            f"Training stopped: {err} {_state_after_failure(output_dir, tasks, saved, replacing)} "
            "Fix the cause, then continue."
        ) from None
    except OSError as err:  # a full disk, a permission changed mid-run ...
        raise CTRError(
            f"Training stopped: writing {err.filename or output_dir} failed ({err.strerror or err}). "
            f"{_state_after_failure(output_dir, tasks, saved, replacing)} "
            "Free space or fix the permissions, then continue."
        ) from None
    return results, time.perf_counter() - start


def _report(results: ContinualResults, base: dict, wall_seconds: float, method, output_dir: Path, main: bool) -> dict:
    """The results dictionary of the finished run; the main process writes it to results.json,
    plots the accuracy matrix and the training curves, and logs the summary."""
    out = results_file.assemble(results.to_dict(), base, wall_seconds=wall_seconds)
    if main:
        results_file.write(output_dir, out)
        if can_draw():
            plot_matrix(
                results.acc_matrix,
                results.tasks,
                output_dir / "accuracy_matrix.png",
                f"{method.name}: test accuracy (%)",
            )
            plot_curves(
                results.curves,
                output_dir / "training_curves.png",
                f"{method.name}: per-epoch training and validation",
            )
        log.info("\n%s", format_summary(out))
    return out


def _state_after_failure(output_dir: Path, tasks, saved: dict, old_run_kept: bool) -> str:
    """What ``output_dir`` holds after a run stopped early: said exactly, never assumed."""
    if old_run_kept:
        return f"No task of the new run was completed, so the previous run in {output_dir} was kept unchanged."
    if saved["tasks"] == 0:
        return (
            f"No task was completed, so no checkpoint was written; --resume {output_dir} starts from the first task."
        )
    last = tasks[saved["tasks"] - 1].name
    return (
        f"The checkpoint after task {saved['tasks']} of {len(tasks)} ({last!r}) in {output_dir / CHECKPOINT_DIR} is "
        f"intact; --resume {output_dir} continues from there."
    )


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
            log.info(
                "%s: %d of %d texts are longer than %d tokens and will be truncated "
                "(raise --max-length to keep more).",
                task.name,
                n,
                total,
                max_length,
            )
    return counts
