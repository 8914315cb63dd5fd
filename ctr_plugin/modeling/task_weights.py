"""One copy of a model's shared weights per task, for the methods that train one model per task by
fine-tuning weights every task shares (bert_one: the whole encoder).

Each learned task keeps its own copy (task id -> parameter name -> tensor, on the CPU); before the
model classifies a batch, the copy of the batch's task is put in place. A checkpoint holds every
copy, so it serves every task as the run tested it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import torch

from ctr_plugin.errors import TaskError

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel


class TaskWeights(Mapping[int, dict[str, torch.Tensor]]):
    """The per-task copies of one model (a mapping task id -> its copy; empty for every method that
    shares its weights across tasks, or keeps per-task modules instead)."""

    def __init__(self, model: ContinualModel):
        self._model = model
        self._copies: dict[int, dict[str, torch.Tensor]] = {}
        self._in_place: int | None = None  # whose copy the parameters hold now (None: none kept, or unknown)
        self._refused: dict[int, str] = {}  # task -> why this model cannot classify it

    def __getitem__(self, task: int) -> dict[str, torch.Tensor]:
        return self._copies[task]

    def __iter__(self) -> Iterator[int]:
        return iter(self._copies)

    def __len__(self) -> int:
        return len(self._copies)

    def keep(self, task: int, weights: dict[str, torch.Tensor]) -> None:
        """Record ``weights`` (parameter name -> tensor, as now in place) as task ``task``'s own."""
        self._copies[task] = weights
        self._in_place = task

    def replace_all(self, copies: dict[int, dict[str, torch.Tensor]]) -> None:
        """Every task's copy at once (a checkpoint's); none is in place yet."""
        self._copies = dict(copies)
        self._in_place = None

    def drop(self, task: int) -> None:
        """Forget task ``task`` (deleted from the model): its copy goes, the later tasks' copies take
        the ids one lower, as the tasks do."""

        def shift(by_task: dict) -> dict:
            return {t - (t > task): value for t, value in by_task.items() if t != task}

        self._copies, self._refused = shift(self._copies), shift(self._refused)
        if self._in_place is not None:
            self._in_place = None if self._in_place == task else self._in_place - (self._in_place > task)

    @torch.no_grad()
    def put_in_place(self, weights: dict[str, torch.Tensor], task: int | None = None) -> None:
        """Copy ``weights`` into the model's parameters of those names; ``task``: whose they are."""
        params = dict(self._model.named_parameters())
        for name, value in weights.items():
            params[name].copy_(value)
        self._in_place = task

    def refuse(self, tasks: Iterable[int], reason: str) -> None:
        """Refuse to classify ``tasks`` from now on, with ``reason`` as the error (a checkpoint
        that does not hold their weights)."""
        self._refused.update(dict.fromkeys(tasks, reason))

    def select(self, task_ids: torch.Tensor) -> None:
        """Before a forward pass: put the copy of the batch's task in place (a batch of one task
        only, when the model holds copies); refuse tasks whose weights the model lacks."""
        if not self._copies and not self._refused:
            return
        tasks = task_ids.unique().tolist()
        refused = [t for t in tasks if t in self._refused]
        if refused:
            raise TaskError(self._refused[refused[0]])
        if not any(t in self._copies for t in tasks):
            return  # the task being trained: its weights are the ones in place
        if len(tasks) > 1:
            raise TaskError(
                f"This model holds one copy of its weights per task, so one batch cannot mix tasks "
                f"{[self._model.task_names[t] for t in tasks]}: classify the texts of each task separately."
            )
        if self._in_place != tasks[0]:
            self.put_in_place(self._copies[tasks[0]], tasks[0])
