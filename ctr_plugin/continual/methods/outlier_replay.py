"""Out-of-distribution replay for the per-task-module methods in Domain-IL and Class-IL: each new
task's head learns one more class, "an example of another task", from replayed examples of the
earlier tasks, so that its task-id score drops on other tasks' inputs.

This is the training-side improvement that Kim, Ke and Liu's MORE (CoLLAs 2022) brings to the
decomposition CTR's task inference follows (Kim, Xiao, Konishi, Ke and Liu, NeurIPS 2022;
``modeling/task_inference.py``): a bounded memory of earlier tasks' training examples, mixed into
every training batch of a later task **with the current task's id** (so they run through the
current task's modules) and **labelled with its outlier class** (the head's last row,
``model.scenario.outlier_class``). The earlier tasks' modules and heads are not trained on them: a
per-task-module method keeps protecting them as before. At test time the ``msp`` score reads the
task's own classes under the softmax that includes the outlier row.

Off by default (``ood_replay=0``: the paper's CTR, and the methods as they were); it serves only the
scenarios where the task is inferred. It keeps a memory, as replay does (the same sampling: an
equal share per learned task, ``replay.remember``), so a run with it cannot be resumed mid-sequence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ctr_plugin.continual.methods.base import Step
from ctr_plugin.continual.methods.replay import Example, remember, sample_memory
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option


@dataclass
class OutlierReplay:
    """Options and hooks of out-of-distribution replay, mixed into a per-task-module method
    (``class CTR(OutlierReplay, ContinualMethod)``: first, so its hooks come before the base's
    no-ops; a method that overrides ``after_task`` or ``__post_init__`` calls ``super()``'s)."""

    ood_replay: int = option(
        0,
        "Domain-/Class-IL: earlier tasks' examples kept to train each new task head's extra "
        "out-of-distribution class (Kim et al.'s OOD replay); 0: off",
        Range("int", 0, None),
    )
    ood_batch_size: int = option(
        8, "with ood_replay: memory examples mixed into every training batch", Range("int", 1, None)
    )

    def __post_init__(self):
        self.ood_memory: dict[int, list[Example]] = {}
        self.ood_rng = random.Random(0)
        if self.ood_replay:  # a memory the checkpoint does not hold, drawn from the training examples
            self.resumable, self.needs_task_data = False, True

    @property
    def outlier_class(self) -> bool:
        """Whether the model's per-task heads get an outlier row (``scenario_heads.py``)."""
        return self.ood_replay > 0

    def extra_examples(self, model: ContinualModel, step: Step) -> Split | None:
        if not self.ood_replay:
            return super().extra_examples(model, step)
        drawn = sample_memory(self.ood_memory, self.ood_rng, self.ood_batch_size)
        if drawn is None:
            return None
        outlier = len(model.label_names[step.task])  # the current head's last row
        return Split(drawn.texts, [outlier] * len(drawn), drawn.pairs, task_ids=[step.task] * len(drawn))

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        super().after_task(model, task, data)
        if self.ood_replay:
            remember(self.ood_memory, self.ood_rng, task, data.train, self.ood_replay)
