"""How per-call values reach the plugins without changing the encoder's forward signature, and
how a batch whose examples belong to different tasks is sent through per-task modules."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import torch

from ctr_plugin.errors import CTRError, TaskError


@dataclass
class PluginContext:
    """Values every plugin of one model reads during a forward pass.

    The model fills in the batch's values before it calls the encoder and clears them afterwards;
    the plugins hold a reference to the same object. This is how the task id reaches layers deep
    inside an encoder whose ``forward`` knows nothing about tasks. Values of the training step
    (HAT's temperature ``s``) are set around the forward pass by the training rules, with
    :meth:`using`.
    """

    task_ids: torch.Tensor | None = None  # (B,) long: the task of each example
    token_mask: torch.Tensor | None = None  # (B, L) float: 1 for real tokens, 0 for padding
    active_tasks: int = 0  # 1 + the largest task id in the batch: later tasks are never touched
    s: float = 1.0  # HAT temperature: s_max (the model's default), annealed by HAT's rules in training

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        # What every plugin derives from the batch alone is derived here, once per forward pass and
        # outside the plugins: their forward then needs no host synchronisation of its own.
        if name == "task_ids":
            self.__dict__["_tasks"] = None if value is None else _tasks(value)
        elif name == "token_mask":
            self.__dict__["_real_tokens"] = None if value is None else _real_tokens(value)
        elif (
            name == "s"
        ):  # as a tensor too: a compiled plugin then takes it as an input, not a constant to recompile for
            self.__dict__["_s_tensor"] = torch.tensor(float(value), dtype=torch.float64)

    def real_tokens(self) -> tuple[torch.Tensor, bool]:
        """(token_mask > 0, (B, L) bool; whether some token is padding)."""
        self.require()
        return self.__dict__["_real_tokens"]

    def temperature(self) -> torch.Tensor:
        """s as a 0-d float64 tensor (a product with a float32 tensor rounds it as the Python float would be)."""
        return self.__dict__["_s_tensor"]

    def tasks(self) -> tuple[list[int], torch.Tensor | None]:
        """(the batch's tasks in increasing order; each example's index into them, or None when the
        batch has one task, the usual batch)."""
        self.require()
        return self.__dict__["_tasks"]

    def require(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task_ids is None and self.token_mask is not None:  # a forward without task ids (Domain/Class-IL)
            raise TaskError(
                "This plugin needs each example's task id, and the forward pass has none: task ids are withheld "
                "in a domain- or class-incremental evaluation (the task is inferred by running every task)."
            )
        if self.task_ids is None or self.token_mask is None:
            raise CTRError(
                "A plugin ran outside ContinualModel.forward: call the model, not its encoder, "
                "so that the task ids and the attention mask reach the plugins."
            )
        return self.task_ids, self.token_mask

    @contextlib.contextmanager
    def one_task(self, task: int, token_mask: torch.Tensor) -> Iterator[PluginContext]:
        """The values of a batch whose examples all belong to ``task``, a host int (an exported
        program's), for the forward passes inside, restored afterwards. What :meth:`tasks` and
        :meth:`real_tokens` give is taken from the caller, not read back from the tensors: the task
        as given, and "some token may be padding" (the padding-masked path, exact when none is), so
        the forward depends on the batch's shape and values through tensor operations alone."""
        values = {
            "task_ids": torch.full_like(token_mask[:, 0], task, dtype=torch.long),
            "token_mask": token_mask,
            "active_tasks": task + 1,
            "_tasks": ([task], None),
            "_real_tokens": (token_mask > 0, True),
        }
        previous = {k: self.__dict__.get(k) for k in values}
        self.__dict__.update(values)  # past __setattr__: nothing derived from the tensors' values
        try:
            yield self
        finally:
            self.__dict__.update(previous)

    @contextlib.contextmanager
    def using(self, **values) -> Iterator[PluginContext]:
        """Set ``values`` (e.g. ``s=...``) for the forward passes inside; restored afterwards."""
        known = [f.name for f in fields(self)]
        unknown = [k for k in values if k not in known]
        if unknown:
            raise CTRError(f"The plugin context has no value {unknown[0]!r} (it has: {', '.join(known)}).")
        previous = {k: getattr(self, k) for k in values}
        for key, value in values.items():
            setattr(self, key, value)
        try:
            yield self
        finally:
            for key, value in previous.items():
                setattr(self, key, value)


def _tasks(task_ids: torch.Tensor) -> tuple[list[int], torch.Tensor | None]:
    low, high = torch.stack(torch.aminmax(task_ids)).tolist() if task_ids.numel() else (0, -1)  # one sync
    if low == high:
        return [low], None
    tasks, which = torch.unique(task_ids, return_inverse=True)  # a batch that mixes tasks: one more sync
    return tasks.tolist(), which


def _real_tokens(token_mask: torch.Tensor) -> tuple[torch.Tensor, bool]:
    real = token_mask > 0
    return real, not bool(real.all())


def rows_by_task(
    task_ids: torch.Tensor,
    x: torch.Tensor,
    apply: Callable[[int, torch.Tensor], torch.Tensor],
    fill: float = 0.0,
    tasks: list[int] | None = None,
) -> torch.Tensor:
    """Each example of ``x`` through its own task's module: ``apply(t, x[rows of task t])`` for
    every task t of the batch, put back in the batch's order. Outputs narrower than the widest in
    the last axis (a head with fewer labels) have ``fill`` in the columns they lack. A batch of
    one task is ``apply(t, x)`` as it is. ``tasks``: the batch's tasks in increasing order where
    the caller knows them (``PluginContext.tasks``), else read from ``task_ids`` (one sync)."""
    tasks = task_ids.unique().tolist() if tasks is None else tasks
    if len(tasks) == 1:
        return apply(tasks[0], x)
    parts = {t: apply(t, x[task_ids == t]) for t in tasks}
    first = next(iter(parts.values()))
    out = first.new_full((len(task_ids), *first.shape[1:-1], max(p.shape[-1] for p in parts.values())), fill)
    for t, part in parts.items():
        out[task_ids == t, ..., : part.shape[-1]] = part
    return out
