"""The data types every data source produces and the training loop consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Split:
    """One split of one task: parallel lists, label ids index ``TaskData.label_names``.

    ``pairs`` holds the second text of a text pair (e.g. the sentence when ``texts`` holds the
    aspect term), or is ``None`` for single-text tasks. ``task_ids`` is set only in mixed-task
    splits (a replay memory, the union of tasks of multi-task training): the task of each example.
    """

    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None
    task_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TaskData:
    """A text-classification task, ready to train: name, label names and three splits."""

    name: str
    label_names: list[str]
    train: Split
    validation: Split
    test: Split
    source: str = ""  # one line saying where the data came from (shown in logs and results)
    notes: list[str] = field(default_factory=list)  # what was done to it (dedup, caps, carving)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)
