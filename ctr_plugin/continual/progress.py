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
    # The scenario (data/scenarios.py): "task" (the task given at test time), "domain" or "class"
    # (not given: the matrices hold each task's accuracy among every class seen so far).
    scenario: str = "task"
    # Per row i (after task i), over the test examples of tasks 0..i together: the accuracy (Class-IL:
    # among all classes seen so far), and for models that infer the task (Domain-/Class-IL,
    # per-task modules) the task-id accuracy, by the first score (MSP); ``task_scores`` holds both
    # rows for each score (msp, energy). See ``record_row``.
    seen_acc: list[float | None] = field(default_factory=list)
    task_id_acc: list[float | None] = field(default_factory=list)
    task_scores: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)

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
            "scenario",
            "seen_acc",
            "task_id_acc",
            "task_scores",
        )
        return cls(**{k: data[k] for k in keys})

    def record_row(self, row: int, scores: list[dict | None]) -> None:
        """Row ``row``'s accuracy over the tested tasks' examples together, from each task's
        ``evaluation.score_task`` result (None: a task without test data, left out); and, where
        the model inferred the task, the task-id accuracy, per score."""
        scores = [s for s in scores if s is not None]
        n = sum(s["n"] for s in scores)

        def share(counts: list[float | None]) -> float | None:
            return None if not n or None in counts else round(100.0 * sum(counts) / n, 2)

        def at_row(values: list, value) -> None:
            values.extend([None] * (row + 1 - len(values)))
            values[row] = value

        at_row(self.seen_acc, share([s["acc"] * s["n"] / 100.0 for s in scores]))
        by_score = [s["by_score"] for s in scores if "by_score" in s]
        if not by_score or by_score[0][next(iter(by_score[0]))]["task_correct"] is None:
            return  # the task given (Task-IL), or a shared head: no task inferred
        for score in by_score[0]:
            rows = self.task_scores.setdefault(score, {"seen_acc": [], "task_id_acc": []})
            at_row(rows["seen_acc"], share([b[score]["correct"] for b in by_score]))
            at_row(rows["task_id_acc"], share([b[score]["task_correct"] for b in by_score]))
        at_row(self.task_id_acc, self.task_scores[next(iter(by_score[0]))]["task_id_acc"][row])

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
            "scenario": self.scenario,
            "seen_acc": self.seen_acc,
            "task_id_acc": self.task_id_acc,
            "task_scores": self.task_scores,
        }
