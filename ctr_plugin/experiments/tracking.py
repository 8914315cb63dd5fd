"""Experiment tracking (``--report-to``) through Accelerate's trackers.

The loop logs to ``accelerator.log`` whatever trackers the run set up (none by default): the
training loss per step, each task's training and validation loss and validation accuracy per
epoch, and after each task the test accuracy on every task learned so far (see
``continual/loop.py``). This module checks the choice before anything is written and starts the
trackers with the run's settings as their hyper-parameters.

* ``tensorboard``: event files under ``OUTPUT_DIR/tracking/<run start>/``
  (``tensorboard --logdir OUTPUT_DIR/tracking``);

* ``wandb``: a Weights & Biases run in project ``ctr_plugin`` named after the output directory
  (``WANDB_MODE=offline`` keeps it local);
* ``mlflow``: an MLflow run in experiment ``ctr_plugin`` (``MLFLOW_TRACKING_URI`` chooses the store).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from ctr_plugin.errors import CTRError

PROJECT = "ctr_plugin"
TRACKING_DIR = "tracking"
# --report-to value -> the package its tracker needs (an optional extra of ctr_plugin)
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
REPORT_TO = ("none", *TRACKERS)


def check_report_to(report_to: str) -> None:
    """Refuse an unknown tracker, or one whose package is not installed, in one paragraph."""
    if report_to not in REPORT_TO:
        raise CTRError(f"--report-to must be one of {', '.join(REPORT_TO)}, not {report_to!r}.")
    package = TRACKERS.get(report_to)
    if package is not None and importlib.util.find_spec(package) is None:
        raise CTRError(
            f"--report-to {report_to} needs the package {package!r}, which is not installed: `pip install {package}` "
            f"(or `pip install ctr_plugin[{report_to}]`), or drop --report-to."
        )


def tracker_settings(report_to: str, output_dir: Path) -> dict:
    """Keyword arguments for ``Accelerator`` (``log_with``, ``project_dir``); empty for none."""
    if report_to == "none":
        return {}
    return {"log_with": report_to, "project_dir": str(Path(output_dir) / TRACKING_DIR)}


def start_trackers(accelerator, report_to: str, output_dir: Path, hyperparameters: dict) -> None:
    """Start the run's trackers with ``hyperparameters`` (nested dicts flattened to
    ``section/key``; values that are not numbers, strings or booleans become strings)."""
    if report_to == "none":
        return
    run_name = f"{Path(output_dir).resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}"
    init_kwargs = {"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}}
    # TensorBoard writes to project_dir/<project name>: one folder per run (a resumed run gets its own)
    name = run_name if report_to == "tensorboard" else PROJECT
    accelerator.init_trackers(
        name, config=flatten(hyperparameters), init_kwargs={report_to: init_kwargs.get(report_to, {})}
    )


def finish_trackers(accelerator) -> None:
    """Close the trackers' files and runs. Not ``accelerator.end_training()``: that also ends the
    process group, which the processes of a multi-GPU run still share afterwards."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []


def flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}/")
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
