"""The model's heads in each scenario, the class space across tasks, and the guard that keeps the
task id out of an evaluation that must not see it.

``ContinualModel.scenario`` is a :class:`ScenarioHeads`. It decides what a head is:

* **per task** (every Task-IL model, and the per-task-module methods in Domain-IL and Class-IL,
  which infer the task at test time: ``task_inference.py``): one head per task over its own labels,
  as ever;
* **shared** (the shared-head methods in Domain-IL and Class-IL): one head, ``model.heads[0]``,
  over the sequence's class space; in Class-IL it grows by one output row per new class when a
  task arrives (the old rows are kept), in Domain-IL it never grows. Its logits are (B, C) over
  all classes seen so far, whatever the task, and the labels it trains on are class-space ids
  (:meth:`ScenarioHeads.class_labels`).

**Outlier class** (``outlier_class``, Domain-/Class-IL per-task heads only; set by a method
trained with out-of-distribution replay, ``continual/methods/outlier_replay.py``): every task head
has one more output row, after its labels, for "an example of another task". That row is read
only in training (:meth:`ScenarioHeads.outlier_logits`) and by the task inference; every other
forward (Task-IL scoring, validation, ``OneTaskForward``, a prediction given its task) sees the
task's own labels only.

The class space is the union of the tasks' label names in order of first appearance
(``data/scenarios.py``: classes are matched by name); ``class_ids[t][y]`` is the class-space id of
label ``y`` of task ``t``.

While task ids are **withheld** (:meth:`ScenarioHeads.withholding`, the loop's evaluation in
Domain-IL and Class-IL, and ``predict`` without a task), ``forward`` refuses task ids, and a plugin
that reads them finds none and raises. The one pass that runs with task ids then is the task
inference's (:meth:`ScenarioHeads.hypothesising`): it gives every example every learned task in
turn, never its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from ctr_plugin.data.scenarios import DEFAULT_SCENARIO, check_scenario_name, label_set_problem
from ctr_plugin.errors import TaskError
from ctr_plugin.plugins.context import rows_by_task

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel


class ScenarioHeads:
    """A model's scenario, its head layout and class space (see the module's docstring)."""

    def __init__(self) -> None:
        self.name = DEFAULT_SCENARIO
        self.shared_head = False
        self.class_names: list[str] = []
        self.class_ids: list[list[int]] = []  # per task: the class-space id of each of its labels
        self.outlier_class = False  # each per-task head has an extra "another task's example" row
        self.withheld = False
        self._hypothesis = False
        self._outlier_logits = False

    # ---- configuration ---------------------------------------------------------------------
    def configure(self, model: ContinualModel, name: str, shared_head: bool, outlier_class: bool = False) -> None:
        """Set the scenario and head layout of a model without tasks; a model with tasks keeps its
        own, and a different one asked of it is refused. ``outlier_class`` needs per-task heads in
        Domain-IL or Class-IL (where the task is inferred)."""
        name = check_scenario_name(name)
        shared_head = bool(shared_head) and name != "task"
        outlier_class = bool(outlier_class)
        if outlier_class and (name == "task" or shared_head):
            raise TaskError(
                "An outlier class (out-of-distribution replay) trains the task-id inference of per-task heads; "
                + (
                    "in the task-incremental scenario the task id is given at test time, so there is nothing to "
                    "infer. Use --scenario domain or class, or switch it off (--method-arg ood_replay=0)."
                    if name == "task"
                    else "a shared head infers no task. Use a per-task-module method (ctr, adapter_hat, adapter_one)."
                )
            )
        if model.num_tasks and (name, shared_head, outlier_class) != (self.name, self.shared_head, self.outlier_class):
            raise TaskError(
                f"This model learned its {model.num_tasks} tasks in the {self.describe()}; it cannot go on in the "
                f"{name} scenario{' with a shared head' if shared_head else ''}"
                f"{' with an outlier class per head' if outlier_class else ''}. Train a new model for that."
            )
        self.name, self.shared_head, self.outlier_class = name, shared_head, outlier_class

    def describe(self) -> str:
        head = "one shared head" if self.shared_head else "per-task heads"
        head += ", each with an outlier class" if self.outlier_class else ""
        return f"{self.name} scenario ({head})"

    def to_config(self) -> dict:
        """What a checkpoint records (``ctr_config.json``'s ``scenario``; ``outlier_class`` only
        where set, so that other checkpoints read as before)."""
        return {"name": self.name, "shared_head": self.shared_head} | (
            {"outlier_class": True} if self.outlier_class else {}
        )

    def restore(self, recorded: dict | None) -> None:
        """From a checkpoint's record, before its tasks are added (none: a Task-IL checkpoint)."""
        recorded = recorded or {}
        self.name = check_scenario_name(recorded.get("name", DEFAULT_SCENARIO), "The checkpoint's scenario")
        self.shared_head = bool(recorded.get("shared_head", False))
        self.outlier_class = bool(recorded.get("outlier_class", False))

    # ---- tasks -----------------------------------------------------------------------------
    def check_new_task(self, model: ContinualModel, name: str, label_names: list[str]) -> None:
        problem = label_set_problem(self.name, model.label_names, name, label_names)
        if problem:
            raise TaskError(problem)

    def add_head(self, model: ContinualModel, label_names: list[str]) -> None:
        """A new task's labels join the class space; a per-task head is added, or the shared head
        grows by the task's new classes (its old rows copied)."""
        new = [str(x) for x in dict.fromkeys(map(str, label_names)) if str(x) not in self.class_names]
        self.class_names += new
        self.class_ids.append([self.class_names.index(str(x)) for x in label_names])
        if not self.shared_head:
            rows = len(label_names) + int(self.outlier_class)
            model.heads.append(nn.Linear(model.hidden_size, rows).to(model.device))
            return
        head = nn.Linear(model.hidden_size, len(self.class_names)).to(model.device)
        if len(model.heads):
            with torch.no_grad():
                old = model.heads[0]
                head.weight[: old.out_features].copy_(old.weight)
                head.bias[: old.out_features].copy_(old.bias)
            model.heads[0] = head
        else:
            model.heads.append(head)

    def remove_task(self, task: int) -> None:
        del self.class_ids[task]
        used = sorted({c for ids in self.class_ids for c in ids})
        self.class_names = [self.class_names[c] for c in used]
        self.class_ids = [[used.index(c) for c in ids] for ids in self.class_ids]

    def num_outputs(self, model: ContinualModel, task: int) -> int:
        """The width of task ``task``'s logits: its labels, or the shared head's classes."""
        return len(self.class_names) if self.shared_head else len(model.label_names[task])

    def class_labels(self, task_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Labels (within each example's task) as the head's targets: class-space ids for a shared
        head, else as given."""
        if not self.shared_head:
            return labels
        table = torch.full((len(self.class_ids), max(map(len, self.class_ids))), -1, dtype=torch.long)
        for t, ids in enumerate(self.class_ids):
            table[t, : len(ids)] = torch.tensor(ids)
        return table.to(labels.device)[task_ids, labels]

    # ---- forward ---------------------------------------------------------------------------
    def checked_task_ids(
        self, model: ContinualModel, task_ids: torch.Tensor | None, input_ids: torch.Tensor
    ) -> torch.Tensor | None:
        """``task_ids`` as a (B,) long tensor in range, or None where the model may run without:
        a shared head, or task ids withheld. TaskError for task ids given while they are withheld."""
        if task_ids is not None and self.withheld and not self._hypothesis:
            raise TaskError(
                f"Task ids are withheld: this is a {self.name}-incremental evaluation or a prediction without a task, "
                "and no test-time code path may read an example's task."
            )
        if task_ids is None:
            if self.shared_head or self.withheld:
                return None
            raise TaskError(
                "ContinualModel.forward needs task_ids: a (batch,) tensor of task ids, one per example "
                f"(this model's tasks: {', '.join(f'{i}={n}' for i, n in enumerate(model.task_names)) or 'none yet'})."
            )
        task_ids = torch.as_tensor(task_ids, dtype=torch.long, device=input_ids.device)
        if task_ids.ndim == 0:
            task_ids = task_ids.expand(input_ids.shape[0])
        if model.num_tasks == 0 or int(task_ids.min()) < 0 or int(task_ids.max()) >= model.num_tasks:
            raise TaskError(
                f"task_ids {sorted(set(task_ids.tolist()))} are out of range: this model has {model.num_tasks} tasks "
                f"(ids 0..{model.num_tasks - 1}). Add a task with model.add_task(name, labels) first."
            )
        return task_ids

    def logits(self, model: ContinualModel, pooled: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        if self.shared_head:
            return model.heads[0](pooled)
        if task_ids is None:
            raise TaskError(f"A model with {self.describe()} needs each example's task to choose its head.")
        return rows_by_task(task_ids, pooled, lambda t, rows: self.head_logits(model, t, rows), fill=float("-inf"))

    def head_logits(self, model: ContinualModel, task: int, pooled: torch.Tensor) -> torch.Tensor:
        """Task ``task``'s head on ``pooled``: (B, K_task), or (B, K_task + 1) with the outlier row
        last while :meth:`outlier_logits` is on (a head without one: (B, K_task) always)."""
        logits = model.heads[task](pooled)
        if self.outlier_class and not self._outlier_logits:
            return logits[:, : len(model.label_names[task])]
        return logits

    @contextlib.contextmanager
    def outlier_logits(self) -> Iterator[None]:
        """Per-task heads give their outlier row too, after their labels, inside the block: the
        loop's training forward, and the task inference's pass (``task_inference.py``)."""
        previous, self._outlier_logits = self._outlier_logits, True
        try:
            yield
        finally:
            self._outlier_logits = previous

    @contextlib.contextmanager
    def withholding(self) -> Iterator[None]:
        """Task ids withheld inside the block (see the module's docstring)."""
        previous, self.withheld = self.withheld, True
        try:
            yield
        finally:
            self.withheld = previous

    @contextlib.contextmanager
    def hypothesising(self) -> Iterator[None]:
        """The task inference's pass: every example given every learned task, never its own."""
        previous, self._hypothesis = self._hypothesis, True
        try:
            yield
        finally:
            self._hypothesis = previous
