"""Runs scored on validation data only: what hyper-parameter search and the CTR diagnosis use.

A validation run trains a method over a task sequence with the one loop and, after every task,
scores every task learned so far on its *validation* split, giving a validation accuracy matrix
in the same layout as the test matrix of a real run. The test splits are sealed before training
(:func:`seal_test_splits`): touching one raises, so no choice made from these scores can have seen
test data.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from ctr_plugin.continual.evaluation import score_task
from ctr_plugin.continual.learner import ContinualLearner
from ctr_plugin.continual.loop import seed_everything
from ctr_plugin.continual.methods import get_method
from ctr_plugin.continual.parallel import make_accelerator
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.types import TaskData
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import CTRError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins import PluginConfig
from ctr_plugin.reporting.metrics import empty_matrix, summarize


class SealedSplitError(CTRError):
    """Raised when code touches a test split during a validation-only run."""


class SealedSplit:
    """Stands where a test split was: any use of it raises :class:`SealedSplitError`."""

    def __init__(self, task: str):
        object.__setattr__(self, "_task", task)

    def _refuse(self, *_args, **_kwargs):
        raise SealedSplitError(
            f"The test split of task {object.__getattribute__(self, '_task')!r} was touched during a "
            f"validation-only run; hyper-parameters must be chosen without test data."
        )

    def __getattr__(self, name):
        self._refuse()

    __len__ = __iter__ = __getitem__ = __bool__ = __setattr__ = _refuse


def seal_test_splits(tasks: list[TaskData]) -> list[TaskData]:
    """Copies of ``tasks`` whose test splits raise on any access."""
    return [dataclasses.replace(t, test=SealedSplit(t.name)) for t in tasks]


@dataclass
class EncoderCache:
    """Loads an encoder once and hands out fresh copies (methods may change or train it)."""

    name: str | None = None

    def __post_init__(self):
        self._encoder, self.tokenizer = load_encoder(self.name)

    def fresh(self):
        return copy.deepcopy(self._encoder), self.tokenizer


def validation_run(
    tasks: list[TaskData],
    method: str,
    method_options: dict | None = None,
    training: TrainingConfig | None = None,
    plugin: PluginConfig | None = None,
    encoders: EncoderCache | None = None,
    inspect: Callable[[ContinualModel], dict] | None = None,
    scenario: str = "task",
) -> dict:
    """Train ``method`` over ``tasks`` (test splits sealed) and score every task learned so far on
    its validation split after each task.

    Returns ``val_acc_matrix`` / ``val_f1_matrix`` (row i = after task i, column j = task j,
    percent, None above the diagonal), ``summarize``'s metrics of them prefixed ``val_``
    (``val_final_acc`` is the mean validation accuracy over all tasks after the last: the tuning
    objective), the options, and the seconds taken; ``inspect(model)``'s dictionary, if given, is
    added under ``"inspect"`` (the diagnosis records HAT's mask usage this way).

    ``scenario``: ``"task"``, ``"domain"`` or ``"class"``, as a run's. In Domain-/Class-IL the
    validation splits are scored as a run's tests are, without the task id
    (``evaluation.evaluate_without_task``: among every class seen so far, the first task-id score,
    MSP, for per-task modules), so the objective is the scenario's accuracy.
    """
    training = training or TrainingConfig()
    plugin = plugin or PluginConfig()
    encoders = encoders or EncoderCache()
    sealed = seal_test_splits(tasks)
    runner = get_method(method, method_options)
    seed_everything(training.seed)
    encoder, tokenizer = encoders.fresh()
    model = runner.build_model(encoder, tokenizer, plugin, encoders.name)
    accelerator = make_accelerator(model.device.type)
    acc, f1 = empty_matrix(len(tasks)), empty_matrix(len(tasks))

    def score(model: ContinualModel, results) -> None:
        row = results.completed_tasks - 1
        for j, task in enumerate(sealed[: row + 1]):
            # a joint training ends once, after every task: its scores stand in every row from j on (see run_sequence)
            rows = range(j, row + 1) if runner.joint_training else [row]
            score_task(model, runner, task, "validation", training, (acc, f1), j, rows, accelerator)

    start = time.perf_counter()
    ContinualLearner(model, runner, training, accelerator=accelerator, scenario=scenario).learn_sequence(
        sealed, on_task_end=score, evaluate_test=False
    )
    metrics = {f"val_{k}": v for k, v in summarize(acc, f1).items()}
    return {
        "method": method,
        "method_options": runner.options(),
        "tasks": [t.name for t in tasks],
        "scenario": scenario,
        "seed": training.seed,
        "training": training.to_dict(),
        "plugin": plugin.to_dict(),
        "val_acc_matrix": acc,
        "val_f1_matrix": f1,
        **metrics,
        "seconds": round(time.perf_counter() - start, 1),
    } | ({"inspect": inspect(model)} if inspect is not None else {})
