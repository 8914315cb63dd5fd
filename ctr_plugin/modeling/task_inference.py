"""Classifying without the task id: task-id inference for per-task modules, or a shared head.

Per-task modules (CTR, HAT, one adapter/LoRA/encoder per task, per-task heads) follow the
decomposition of Kim, Xiao, Konishi, Ke and Liu ("A theoretical study on solving continual
learning", NeurIPS 2022): the class-incremental probability of class j of task t is the
within-task prediction times the task-id prediction,

    P(t, j | x) = P(j | x, t) · P(t | x),

where ``P(j | x, t)`` is the softmax of task t's head over its own labels, run through task t's
modules (the input treated as task t), and ``P(t | x)`` normalises an out-of-distribution score
of each task's module on the input (:data:`TASK_SCORES`):

* ``msp``: the maximum softmax probability of task t's head (Hendrycks & Gimpel 2017),
  ``s_t = max_j P(j | x, t)``, normalised as ``P(t | x) = s_t / Σ_u s_u``;
* ``energy``: the negative free energy, ``logsumexp_j z_tj`` (Liu et al. 2020), normalised by a
  softmax over tasks; ``P(t, j | x)`` is then the softmax of all tasks' logits side by side.

With an **outlier class** (``model.scenario.outlier_class``: each task head has one more row,
trained on replayed examples of the earlier tasks as "not this task's", the out-of-distribution
replay of Kim, Ke and Liu's MORE, CoLLAs 2022, on which the NeurIPS 2022 study builds; see
``continual/methods/outlier_replay.py``), the ``msp`` score is the largest of the task's own
classes' probabilities under the softmax over its labels *and* the outlier row, so an example the
head calls another task's scores low; ``energy`` still reads the task's own labels' logits, and
``P(j | x, t)`` is the softmax over the task's own labels either way.

A class's probability adds up over the tasks that name it (``data/scenarios.py``: classes are
matched by name, so in Domain-IL every task votes for the shared labels). The inferred task is
``argmax_t P(t | x)``; its accuracy is the task-id accuracy the loop reports beside the class
accuracy.

All learned tasks are computed in one batched pass: each example is repeated once per task with
the task ids 0..T-1 (the plugins compute per example and task); a model holding one copy of its
weights per task (bert_one) runs one pass per task instead. A shared head (Domain-IL and
Class-IL shared-head methods) needs no task: its softmax over the class space is the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ctr_plugin.errors import TaskError

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel

TASK_SCORES = ("msp", "energy")


@dataclass
class TaskFreeOutput:
    """One batch classified without task ids. ``class_probs``: (B, C) over
    ``model.scenario.class_names``; ``task_probs``: (B, T), ``P(t | x)`` (None for a shared head);
    ``task_logits``: (B, T, K), task t's head on the example as task t (-inf beyond its labels;
    None for a shared head), or the shared head's (B, C) logits in ``class_logits``;
    ``outlier_logits``: (B, T), each task head's outlier row (None without an outlier class)."""

    class_probs: torch.Tensor
    task_probs: torch.Tensor | None = None
    task_logits: torch.Tensor | None = None
    class_logits: torch.Tensor | None = None
    outlier_logits: torch.Tensor | None = None


def check_score(score: str) -> str:
    if score not in TASK_SCORES:
        raise TaskError(f"The task-id score is {score!r}; it must be one of {', '.join(TASK_SCORES)}.")
    return score


def all_task_logits(model: ContinualModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, T, K): every learned task's head on every example over its own labels (-inf beyond
    them), each run through that task's modules; and (B, T), each head's outlier row (None without
    an outlier class). One pass over the batch repeated T times (one pass per task for per-task
    weights)."""
    num_tasks, size = model.num_tasks, batch["input_ids"].shape[0]
    device = batch["input_ids"].device
    with model.scenario.hypothesising(), model.scenario.outlier_logits():
        if model.task_weights:  # one copy of the shared weights per task: a batch cannot mix tasks
            parts = [
                model(**batch, task_ids=torch.full((size,), t, dtype=torch.long, device=device)).logits.float()
                for t in range(num_tasks)
            ]
            width = max(p.shape[-1] for p in parts)
            out = parts[0].new_full((size, num_tasks, width), float("-inf"))
            for t, part in enumerate(parts):
                out[:, t, : part.shape[-1]] = part
        else:
            repeated = {k: v.repeat_interleave(num_tasks, dim=0) for k, v in batch.items()}
            task_ids = torch.arange(num_tasks, device=device).repeat(size)  # example b's copies: b*T .. b*T+T-1
            out = model(**repeated, task_ids=task_ids).logits.float().view(size, num_tasks, -1)
    if not model.scenario.outlier_class:
        return out, None
    # task t's outlier row follows its K_t labels: take it out, and -inf where it was
    widths = torch.tensor([len(names) for names in model.label_names], device=out.device)
    outliers = out.gather(2, widths.expand(size, -1)[..., None])[..., 0]
    out = out.scatter(2, widths.expand(size, -1)[..., None], float("-inf"))
    return out[..., : int(widths.max())], outliers


def task_probabilities(task_logits: torch.Tensor, score: str, outliers: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, K) -> (B, T): ``P(t | x)`` from the ``score`` of each task's logits; ``outliers``
    (B, T): each head's outlier row, which enters the ``msp`` softmax (see the module's docstring)."""
    if check_score(score) == "msp":
        if outliers is None:
            msp = task_logits.softmax(-1).amax(-1)
        else:
            msp = torch.cat((task_logits, outliers[..., None]), -1).softmax(-1)[..., :-1].amax(-1)
        return msp / msp.sum(-1, keepdim=True)
    return task_logits.logsumexp(-1).softmax(-1)


def combine(
    model: ContinualModel, task_logits: torch.Tensor, score: str, outliers: torch.Tensor | None = None
) -> TaskFreeOutput:
    """Kim et al.'s product, ``P(j | x, t) · P(t | x)``, summed per class of the class space."""
    task_probs = task_probabilities(task_logits, score, outliers)
    joint = task_logits.softmax(-1) * task_probs[..., None]  # (B, T, K); 0 beyond a task's labels
    class_probs = joint.new_zeros(joint.shape[0], len(model.scenario.class_names))
    for t, ids in enumerate(model.scenario.class_ids):
        class_probs.index_add_(1, torch.tensor(ids, device=joint.device), joint[:, t, : len(ids)])
    return TaskFreeOutput(class_probs, task_probs, task_logits, outlier_logits=outliers)


@torch.no_grad()
def classify_without_task(model: ContinualModel, batch: dict, scores: tuple[str, ...]) -> dict[str, TaskFreeOutput]:
    """Each ``score``'s classification of ``batch`` (the tokenizer's tensors, no task ids), from one
    pass; a shared head answers the same for every score. Call it with task ids withheld."""
    if model.scenario.shared_head:
        logits = model(**batch).logits.float()
        out = TaskFreeOutput(logits.softmax(-1), class_logits=logits)
        return dict.fromkeys(scores, out)
    task_logits, outliers = all_task_logits(model, batch)
    return {score: combine(model, task_logits, score, outliers) for score in scores}
