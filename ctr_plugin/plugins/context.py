"""How per-call values reach the plugins without changing the encoder's forward signature, and
how a batch whose examples belong to different tasks is sent through per-task modules."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import torch

from ctr_plugin.errors import CTRError


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

    def require(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task_ids is None or self.token_mask is None:
            raise CTRError(
                "A plugin ran outside ContinualModel.forward: call the model, not its encoder, "
                "so that the task ids and the attention mask reach the plugins."
            )
        return self.task_ids, self.token_mask

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


def rows_by_task(
    task_ids: torch.Tensor, x: torch.Tensor, apply: Callable[[int, torch.Tensor], torch.Tensor], fill: float = 0.0
) -> torch.Tensor:
    """Each example of ``x`` through its own task's module: ``apply(t, x[rows of task t])`` for
    every task t of the batch, put back in the batch's order. Outputs narrower than the widest in
    the last axis (a head with fewer labels) have ``fill`` in the columns they lack. A batch of
    one task is ``apply(t, x)`` as it is."""
    tasks = task_ids.unique().tolist()
    if len(tasks) == 1:
        return apply(tasks[0], x)
    parts = {t: apply(t, x[task_ids == t]) for t in tasks}
    first = next(iter(parts.values()))
    out = first.new_full((len(task_ids), *first.shape[1:-1], max(p.shape[-1] for p in parts.values())), fill)
    for t, part in parts.items():
        out[task_ids == t, ..., : part.shape[-1]] = part
    return out
