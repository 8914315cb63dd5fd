"""Tasks given from Python: ``datasets.Dataset`` objects, lists of tuples or lists of dicts turned
into a checked :class:`~ctr_plugin.data.types.TaskData` (what ``ContinualLearner.learn_task``
takes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.errors import DataError


def as_task_data(
    name: str,
    train: Any,
    validation: Any = None,
    test: Any = None,
    labels: Sequence[str] | None = None,
    text_column: str = "text",
    label_column: str = "label",
    pair_column: str | None = None,
    source: str | None = None,
) -> TaskData:
    """A :class:`TaskData` from splits given as ``datasets.Dataset`` objects (columns
    ``text_column``, ``label_column`` and optionally ``pair_column``), lists of ``(text, label)``
    or ``(text, second_text, label)`` tuples, or lists of dicts with those keys.

    Labels may be names or ids. ``labels`` lists the label names in id order; by default they
    come from a ``ClassLabel`` column, else from the training labels (names sorted; ids 0..K-1 as
    "0", "1", ...). ``validation`` and ``test`` may be None (no best-epoch selection; no test
    scores). ``source``: where the data comes from and under which terms (the model card shows it).
    """
    label_names = list(labels) if labels is not None else _class_label_names(train, label_column)
    raw = {
        split: _rows(data, split, name, text_column, label_column, pair_column)
        for split, data in (("train", train), ("validation", validation), ("test", test))
        if data is not None
    }
    if not raw["train"][0]:
        raise DataError(f"Task {name!r}: the training data is empty.")
    if label_names is None:
        values = {y for y in raw["train"][2]}
        if all(isinstance(y, str) for y in values):
            label_names = sorted(values)
        elif all(isinstance(y, int) and not isinstance(y, bool) for y in values):
            label_names = [str(i) for i in range(max(values) + 1)]
        else:
            raise DataError(
                f"Task {name!r}: labels must be all names (strings) or all ids (integers); "
                f"got {sorted(map(repr, values))[:5]}. Pass labels=[...] too."
            )
    if len(label_names) < 2:
        raise DataError(
            f"Task {name!r} has one class only ({label_names}): a classifier needs at least two. "
            "Check the label column."
        )
    index = {str(n): i for i, n in enumerate(label_names)}
    splits = {}
    for split, (texts, pairs, ys) in raw.items():
        ids = []
        for row, y in enumerate(ys):
            if isinstance(y, str) and y in index:
                ids.append(index[y])
            elif isinstance(y, int) and not isinstance(y, bool) and 0 <= y < len(label_names):
                ids.append(int(y))
            else:
                raise DataError(
                    f"Task {name!r}: the {split} label {y!r} (row {row}) is not one of the labels {list(label_names)} "
                    f"(nor an id 0..{len(label_names) - 1}). Pass labels=[...] listing every class, in id order."
                )
        splits[split] = Split(texts, ids, pairs)
    has_pairs = [s.pairs is not None for s in splits.values()]
    if any(has_pairs) and not all(has_pairs):
        raise DataError(
            f"Task {name!r}: some splits are text pairs and others are not; give the second texts in every split."
        )
    empty = Split([], [], [] if any(has_pairs) else None)
    return TaskData(
        name=name,
        label_names=[str(n) for n in label_names],
        train=splits["train"],
        validation=splits.get("validation", empty),
        test=splits.get("test", empty),
        source=source or "given from Python",
    )


def _class_label_names(data: Any, column: str) -> list[str] | None:
    feature = getattr(data, "features", {}).get(column) if hasattr(data, "features") else None
    return list(feature.names) if feature is not None and hasattr(feature, "names") else None


def _rows(data: Any, split: str, task: str, text_column: str, label_column: str, pair_column: str | None):
    """(texts, pairs or None, labels) of one split, checked."""
    where = f"Task {task!r}, {split} data"
    if hasattr(data, "column_names") and hasattr(data, "features"):  # a datasets.Dataset
        missing = [c for c in (text_column, label_column, pair_column) if c and c not in data.column_names]
        if missing:
            raise DataError(
                f"{where}: no column {missing[0]!r} (columns: {data.column_names}). "
                "Pass text_column= / label_column= / pair_column=."
            )
        texts, labels = list(data[text_column]), list(data[label_column])
        pairs = list(data[pair_column]) if pair_column else None
    else:
        if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
            raise DataError(
                f"{where}: expected a datasets.Dataset or a list of (text, label) tuples, got {type(data).__name__}."
            )
        rows = list(data)
        texts, pairs, labels = [], [], []
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                try:
                    texts.append(row[text_column])
                    labels.append(row[label_column])
                    pairs.append(row[pair_column] if pair_column else None)
                except KeyError as err:
                    raise DataError(f"{where}: row {i} has no key {err.args[0]!r} (keys: {sorted(row)}).") from None
            elif isinstance(row, (tuple, list)) and len(row) in (2, 3):
                texts.append(row[0])
                pairs.append(row[1] if len(row) == 3 else None)
                labels.append(row[-1])
            else:
                raise DataError(
                    f"{where}: row {i} is {row!r}; give (text, label) or (text, second_text, label) tuples, or dicts."
                )
        pairs = pairs if any(p is not None for p in pairs) else None
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if pairs is not None:
        bad += [i for i, p in enumerate(pairs) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise DataError(f"{where}: rows {sorted(set(bad))[:5]} have an empty or non-string text; remove them.")
    labels = [int(y) if hasattr(y, "__index__") and not isinstance(y, (bool, str)) else y for y in labels]
    return texts, pairs, labels
