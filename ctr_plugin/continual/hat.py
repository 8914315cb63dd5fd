"""HAT's training rules for the task-specific module (Serra et al. 2018, as CTR uses them).

The plugins only compute masks m = sigmoid(s * e_t); everything here changes how they train:

* ``temperature``: s anneals from 1/s_max to s_max over the batches of every epoch;
* ``mask_regulariser``: the loss term that keeps a new task's masks sparse where earlier tasks
  left units free;
* ``protect_previous_tasks``: before each step, gradients of W1/W2 are multiplied by 1 - m_pre, so
  units that earlier tasks use do not change;
* ``compensate_embedding_gradients`` and ``clamp_embeddings``: keep the embedding gradient useful
  while s is small, and the embeddings in [-6, 6];
* ``accumulate_masks``: after a task, m_pre = max(m_pre, m_t at s_max).
"""

from __future__ import annotations

import torch
from torch import nn

from ctr_plugin.plugins import CTRPlugin

EMBEDDING_CLAMP = 6.0
COSH_CLAMP = 50.0


def masked_plugins(model: nn.Module) -> list[CTRPlugin]:
    return [m for m in model.modules() if isinstance(m, CTRPlugin)]


def temperature(batch: int, num_batches: int, s_max: float) -> float:
    """s for batch ``batch`` (0-based) of ``num_batches`` in an epoch: 1/s_max -> s_max, linear."""
    if num_batches <= 1:
        return s_max
    return 1.0 / s_max + (s_max - 1.0 / s_max) * batch / (num_batches - 1)


def mask_regulariser(model: nn.Module, task: int, s: float) -> torch.Tensor:
    """reg = sum m (1 - m_pre) / sum (1 - m_pre) over every mask of every plugin (task 0: mean m).

    Every plugin's masks in one vector: a handful of operations per step, not a handful per mask."""
    plugins = masked_plugins(model)
    masks = torch.sigmoid(s * torch.cat([e[task] for plugin in plugins for e in plugin.masks.embeddings]))
    if task == 0:
        return masks.sum() / max(masks.numel(), 1)
    available = 1.0 - torch.cat(
        [plugin.masks.cumulative(i) for plugin in plugins for i in range(len(plugin.masks.sizes))]
    )
    return (masks * available).sum() / available.sum().clamp_min(1.0)


@torch.no_grad()
def protect_previous_tasks(model: nn.Module) -> None:
    """Scale the gradients of W1, b1, W2, b2 by 1 - m_pre: what earlier tasks use stays put."""
    for plugin in masked_plugins(model):
        free1 = 1.0 - plugin.masks.cumulative(0)  # (a,) units of h1
        free2 = 1.0 - plugin.masks.cumulative(1)  # (d,) units of h2
        fc1, fc2 = plugin.fc1, plugin.fc2
        if fc1.weight.grad is not None:
            fc1.weight.grad.mul_(free1[:, None])
            fc1.bias.grad.mul_(free1)
        if fc2.weight.grad is not None:
            # A weight of W2 is used by an earlier task if both its units are: 1 - min(m2, m1).
            fc2.weight.grad.mul_(1.0 - torch.minimum(1.0 - free2[:, None], 1.0 - free1[None, :]))
            fc2.bias.grad.mul_(free2)


@torch.no_grad()
def compensate_embedding_gradients(model: nn.Module, task: int, s: float, s_max: float) -> None:
    """grad_e *= s_max / s * (cosh(clamp(s e)) + 1) / (cosh(e) + 1): undoes the vanishing sigmoid
    gradient at small s, so embeddings learn across the whole annealing range. The same
    elementwise operations as on one embedding, applied to every plugin's at once (``_foreach``)."""
    embeddings = [e for e in _task_embeddings(model, task) if e.grad is not None]
    if not embeddings:
        return
    num = torch._foreach_mul(embeddings, s)
    torch._foreach_clamp_min_(num, -COSH_CLAMP)
    torch._foreach_clamp_max_(num, COSH_CLAMP)
    num = torch._foreach_cosh(num)
    torch._foreach_add_(num, 1.0)
    den = torch._foreach_cosh(embeddings)
    torch._foreach_add_(den, 1.0)
    torch._foreach_mul_(num, s_max / s)
    torch._foreach_div_(num, den)
    torch._foreach_mul_([e.grad for e in embeddings], num)


@torch.no_grad()
def clamp_embeddings(model: nn.Module, task: int) -> None:
    embeddings = _task_embeddings(model, task)
    torch._foreach_clamp_min_(embeddings, -EMBEDDING_CLAMP)
    torch._foreach_clamp_max_(embeddings, EMBEDDING_CLAMP)


def _task_embeddings(model: nn.Module, task: int) -> list[nn.Parameter]:
    """Task ``task``'s mask embeddings e_t in every plugin."""
    return [per_task[task] for plugin in masked_plugins(model) for per_task in plugin.masks.embeddings]


def accumulate_masks(model: nn.Module, task: int, s_max: float) -> None:
    for plugin in masked_plugins(model):
        plugin.masks.accumulate(task, s_max)


@torch.no_grad()
def mask_usage(model: nn.Module, s_max: float) -> dict[str, list[float]]:
    """How much of the task-specific module each task claims, over every mask of every plugin:
    ``open`` (per task: share of units with m_t > 0.5 at s_max), ``used`` (share with
    m_pre > 0.5 after the tasks so far), ``used_after`` (per task t: share open for at least one
    task up to t, the capacity claimed after t at s_max) and ``embedding_abs_mean`` (per task:
    mean |e_t|)."""
    plugins = masked_plugins(model)
    if not plugins:
        return {}
    num_tasks = len(plugins[0].masks.embeddings[0])
    open_units, magnitude, used_after = [0.0] * num_tasks, [0.0] * num_tasks, [0.0] * num_tasks
    used, total = 0.0, 0
    for plugin in plugins:
        for i, per_task in enumerate(plugin.masks.embeddings):
            claimed = torch.zeros_like(per_task[0], dtype=torch.bool)
            for t, e in enumerate(per_task):
                opened = torch.sigmoid(s_max * e) > 0.5
                claimed |= opened
                open_units[t] += float(opened.sum())
                used_after[t] += float(claimed.sum())
                magnitude[t] += float(e.abs().sum())
            used += float((plugin.masks.cumulative(i) > 0.5).sum())
            total += plugin.masks.sizes[i]
    return {
        "open": [round(n / total, 4) for n in open_units],
        "used": round(used / total, 4),
        "used_after": [round(n / total, 4) for n in used_after],
        "embedding_abs_mean": [round(m / total, 4) for m in magnitude],
    }


def mask_embeddings(model: nn.Module) -> list[nn.Parameter]:
    """Every task's mask embeddings e_t in every plugin."""
    return [e for plugin in masked_plugins(model) for e in plugin.masks.parameters()]


def hat_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters HAT governs: never weight-decayed, since decoupled weight decay would
    shrink protected weights (and earlier tasks' embeddings) even where the gradient is zero."""
    ids: set[int] = set()
    for plugin in masked_plugins(model):
        ids.update(id(p) for p in (*plugin.fc1.parameters(), *plugin.fc2.parameters(), *plugin.masks.parameters()))
    return ids
