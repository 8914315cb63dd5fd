"""The progress of a continual-learning run: what the loop (``ctr_plugin.continual.loop``) records.

:class:`ContinualResults` holds the accuracy and macro-F1 matrices with the cost and curves of the
tasks learned so far; it is what results.json and a checkpoint's ``progress`` store
(``to_dict`` / ``from_dict``), and what a resumed run starts from. :class:`TaskCurve` is one
task's training, epoch by epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ctr_plugin.reporting.metrics import Matrix, summarize, untested_tasks
from ctr_plugin.reporting.results import upgrade

__all__ = ["ContinualResults", "TaskCurve"]


@dataclass
class TaskCurve:
    """One task's training, epoch by epoch: the mean training loss, the validation loss and
    accuracy (percent; empty for a task without validation data), and the optimizer steps taken.
    ``task``: the task trained ("a+b+c" for a joint training of tasks a, b and c)."""

    task: str = ""
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    validation_accuracy: list[float] = field(default_factory=list)
    steps: int = 0

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "train_loss": self.train_loss,
            "validation_loss": self.validation_loss,
            "validation_accuracy": self.validation_accuracy,
            "steps": self.steps,
        }


@dataclass
class ContinualResults:
    """The accuracy and macro-F1 matrices of a run and what produced them."""

    tasks: list[str]
    acc_matrix: Matrix
    f1_matrix: Matrix
    completed_tasks: int = 0
    train_seconds: float = 0.0
    epochs_kept: list[int] = field(default_factory=list)  # best epoch (1-based) per task
    # Cost per task (metrics.cost_per_task): parameters the model gained for each task, and the
    # checkpoint's size in bytes after each task (filled by whoever saves it: ctr_plugin.experiments.run).
    params_added: list[int] = field(default_factory=list)
    checkpoint_bytes: list[int] = field(default_factory=list)
    # The completed tasks are a checkpoint's, re-tested at the start of a run that continues it
    # (not an interrupted run of this one): methods that cannot resume may still go on.
    continuing_checkpoint: bool = False
    curves: list[dict] = field(default_factory=list)  # TaskCurve.to_dict() per trained task (none for re-tested ones)
    train_steps: int = 0  # optimizer steps so far: the trackers' step count

    @classmethod
    def from_dict(cls, data: dict) -> ContinualResults:
        """The progress recorded in a results.json or a checkpoint (``to_dict``'s keys)."""
        data = upgrade(data)
        keys = (
            "tasks",
            "acc_matrix",
            "f1_matrix",
            "completed_tasks",
            "train_seconds",
            "epochs_kept",
            "params_added",
            "checkpoint_bytes",
            "curves",
            "train_steps",
        )
        return cls(**{k: data[k] for k in keys})

    def to_dict(self) -> dict:
        out = {"tasks": self.tasks, "acc_matrix": self.acc_matrix, "f1_matrix": self.f1_matrix}
        if self.completed_tasks == len(self.tasks):
            untested = [self.tasks[j] for j in untested_tasks(self.acc_matrix)]
            if untested:  # no summary rather than one over some of the tasks only
                out["metrics_unavailable"] = (
                    "no summary metrics (final_acc, forward_acc, forgetting_rate, ...): "
                    f"task(s) {', '.join(map(repr, untested))} were learned without test data, "
                    "and these metrics need every task's test score after every task."
                )
            else:
                out |= summarize(self.acc_matrix, self.f1_matrix)
        out |= {
            "completed_tasks": self.completed_tasks,
            "train_seconds": round(self.train_seconds, 1),
            "epochs_kept": self.epochs_kept,
        }
        return out | {
            "params_added": self.params_added,
            "checkpoint_bytes": self.checkpoint_bytes,
            "curves": self.curves,
            "train_steps": self.train_steps,
        }
