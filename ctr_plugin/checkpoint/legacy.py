"""Older checkpoints, converted once, when they are loaded; nothing downstream checks for them.

* Format 1 held a CTR plugin's task capsules and routes as one tensor per task and kind:
  :func:`join_format1_tensors` joins them into today's one tensor per kind.
* Format 2 is laid out as today's format 3 but has no ``config_sha256`` (the digest of the config's
  prediction parts, ``digest.py``): it loads without one (its ``weights_sha256`` is still required
  and checked); format 1 loads without either, and checks each one it has.
* A checkpoint of a one-model-per-task method that holds only its last task's weights (written
  before those methods kept every task's): :func:`refuse_tasks_without_weights` makes the loaded
  model refuse the other tasks, which would silently get the last task's weights.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel

ONE_MODEL_PER_TASK = ("lora_one", "bert_one")  # methods whose every task has weights of its own


# Checkpoint format 1 held one tensor per task and kind ("<plugin>.task_capsules.w1.<task>", ...):
# where each kind's tasks sit in today's joined tensor, and whether a task's part gains that axis.
_FORMAT1_PER_TASK = re.compile(r"^(.*\.(?:task_capsules\.(?:w1|b1|w2|b2)|transfer_routing\.routes))\.(\d+)$")
_FORMAT1_AXES = {"w1": (1, False), "b1": (0, False), "w2": (0, True), "b2": (0, False), "routes": (0, True)}


def join_format1_tensors(state: dict[str, torch.Tensor], freeze_old_capsules: bool) -> dict[str, torch.Tensor]:
    """A checkpoint state of format 1 in today's layout: each kind's per-task tensors joined into
    one (with ``freeze_old_capsules``, the earlier tasks' into ``<name>_frozen``, the newest
    task's into ``<name>``). Other tensors pass unchanged; a gap in the task numbers shows up as a
    wrongly shaped tensor when the checkpoint is checked against the model."""
    joined: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in state.items():
        match = _FORMAT1_PER_TASK.match(key)
        if match:
            parts.setdefault(match[1], {})[int(match[2])] = value
        else:
            joined[key] = value
    for name, by_task in parts.items():
        axis, own_axis = _FORMAT1_AXES[name.rsplit(".", 1)[1]]
        tensors = [by_task[t].unsqueeze(axis) if own_axis else by_task[t] for t in sorted(by_task)]
        if freeze_old_capsules:
            joined[f"{name}_frozen"] = torch.cat([tensors[-1].narrow(axis, 0, 0), *tensors[:-1]], axis)
            tensors = tensors[-1:]
        joined[name] = torch.cat(tensors, axis)
    return joined


def refuse_tasks_without_weights(model: ContinualModel, method: str | None) -> None:
    """Where ``model`` (just loaded) was trained by a one-model-per-task ``method`` but holds one
    task's weights only, the last task's: every earlier task is refused from now on. Today such
    a model holds each task's own, as per-task copies (``model.task_weights``) or as plugins of a
    per-task kind (the kind the method trains by default)."""
    if (
        method not in ONE_MODEL_PER_TASK
        or model.kind.default_method == method
        or model.task_weights
        or model.num_tasks < 2
    ):
        return
    last = model.task_names[-1]
    model.task_weights.refuse(
        range(model.num_tasks - 1),
        f"This checkpoint was written by an older ctr_plugin for a method that trains one model per task, and holds "
        f"only its last task's weights: it can classify task {last!r} only (any other would get that task's weights, "
        f"silently wrong). Retrain to serve every task.",
    )
