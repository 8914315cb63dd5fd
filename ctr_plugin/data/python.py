"""Tasks given from Python: ``datasets.Dataset`` objects, lists of tuples or lists of dicts turned
into a checked :class:`~ctr_plugin.data.types.TaskData` (what ``ContinualLearner.learn_task``
takes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ctr_plugin.data.readers import Rows
from ctr_plugin.data.sources import (
    check_overlap,
    check_unseen_labels,
    is_scalar_label,
    label_key,
    note_label_spellings,
    ordered_labels,
)
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.errors import DataError

SPLIT_ARGUMENTS = ("train", "validation", "test")


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
    come from a ``ClassLabel`` column, else from the training labels (names sorted, numbers by
    value; ids 0..K-1 as "0", "1", ...). The ids of a ``ClassLabel`` column are read as that
    split's own names, so splits whose ``ClassLabel`` lists the names in another order agree.
    ``validation`` and ``test`` may be None (no best-epoch selection; no test scores).
    ``source``: where the data comes from and under which terms (the model card shows it).

    The checks are the file loader's (:mod:`ctr_plugin.data.sources`): validation or test examples
    that repeat training examples and classes that occur only in validation or test are refused;
    spellings of one label (" pos", "pos"; "1", "1.0") are one class, noted in ``notes``.
    """
    given = {split: data for split, data in zip(SPLIT_ARGUMENTS, (train, validation, test)) if data is not None}
    raw = {split: _rows(data, split, name, text_column, label_column, pair_column) for split, data in given.items()}
    if not raw["train"][0]:
        raise DataError(f"Task {name!r}: the training data is empty.")
    class_names = {split: _class_label_names(data, label_column) for split, data in given.items()}
    label_names = [str(n) for n in labels] if labels is not None else class_names["train"]
    values = {
        split: _named_labels(name, split, ys, class_names[split], label_names) for split, (_, _, ys) in raw.items()
    }
    notes: list[str] = []
    if label_names is None:
        present = {y for y in values["train"]}
        if all(isinstance(y, str) for y in present):
            label_names = ordered_labels({label_key(y) for y in present})
        elif all(isinstance(y, int) and not isinstance(y, bool) for y in present):
            label_names = [str(i) for i in range(max(present) + 1)]
        else:
            raise DataError(
                f"Task {name!r}: labels must be all names (strings) or all ids (integers); "
                f"got {sorted(map(repr, present))[:5]}. Pass labels=[...] too."
            )
    if len(label_names) < 2:
        raise DataError(
            f"Task {name!r} has one class only ({label_names}): a classifier needs at least two. "
            "Check the label column."
        )
    index = _label_index(name, label_names)
    rows: dict[str, Rows] = {}
    for split, (texts, pairs, _) in raw.items():
        ids = []
        for row, y in enumerate(values[split]):
            if isinstance(y, str) and label_key(y) in index:
                ids.append(index[label_key(y)])
            elif isinstance(y, int) and not isinstance(y, bool) and 0 <= y < len(label_names):
                ids.append(int(y))
            else:
                read = f" (read through its ClassLabel names {class_names[split]})" if class_names[split] else ""
                raise DataError(
                    f"Task {name!r}: the {split} label {y!r} (row {row}){read} is not one of the labels "
                    f"{list(label_names)} (nor an id 0..{len(label_names) - 1}). Pass labels=[...] listing every "
                    "class, in id order."
                )
        rows[split] = Rows(texts, ids, pairs, [f"row {i}" for i in range(len(ids))], f"the `{split}` argument")
    has_pairs = [r.pairs is not None for r in rows.values()]
    if any(has_pairs) and not all(has_pairs):
        raise DataError(
            f"Task {name!r}: some splits are text pairs and others are not; give the second texts in every split."
        )
    named = {split: rows[split].take(range(len(rows[split].labels))) for split in rows}
    for split in named:
        named[split].labels = values[split]
    keys = {split: [label_key(y) if isinstance(y, str) else label_names[y] for y in values[split]] for split in rows}
    note_label_spellings(name, named, keys, notes)
    check_overlap(name, rows, notes, api=True)
    check_unseen_labels(name, rows, label_names, api=True)
    empty = Split([], [], [] if any(has_pairs) else None)
    splits = {split: Split(r.texts, r.labels, r.pairs) for split, r in rows.items()}
    return TaskData(
        name=name,
        label_names=label_names,
        train=splits["train"],
        validation=splits.get("validation", empty),
        test=splits.get("test", empty),
        source=source or "given from Python",
        notes=notes,
    )


def check_task_data(data: TaskData) -> None:
    """The checks of :func:`as_task_data` on a ready :class:`TaskData` (one made by hand): label ids
    index ``label_names``, no validation or test example repeats a training example, no class
    occurs only in validation or test. DataError otherwise."""
    rows = {}
    for split in SPLIT_ARGUMENTS:
        part = getattr(data, split)
        bad = [i for i, y in enumerate(part.labels) if not isinstance(y, int) or not 0 <= y < data.num_labels]
        if bad:
            raise DataError(
                f"Task {data.name!r}: the {split} split has label ids outside 0..{data.num_labels - 1} "
                f"(rows {bad[:5]}), which do not index its label_names {data.label_names}."
            )
        if part.labels or split == "train":
            origin = f"the {split} split of the TaskData"
            rows[split] = Rows(part.texts, part.labels, part.pairs, [f"row {i}" for i in range(len(part))], origin)
    check_overlap(data.name, rows, [], api=True)
    check_unseen_labels(data.name, rows, data.label_names, api=True)


def _named_labels(task: str, split: str, ys: list, names: list[str] | None, label_names: list[str] | None) -> list:
    """The labels of one split, ids of a ``ClassLabel`` column (its ``names``) read as names; ids of
    a ``ClassLabel`` that lists the task's names in the task's order stay ids."""
    listed = [i for i, y in enumerate(ys) if not is_scalar_label(y) or isinstance(y, float)]
    if listed:
        raise DataError(
            f"Task {task!r}: the {split} labels of rows {listed[:5]} are {ys[listed[0]]!r}, ...; a label is a name "
            "(string) or an id (integer)."
        )
    if names is None or names == label_names:
        return ys
    out = []
    for row, y in enumerate(ys):
        if isinstance(y, int) and not isinstance(y, bool):
            if not 0 <= y < len(names):
                raise DataError(
                    f"Task {task!r}: the {split} label id {y} (row {row}) is outside its ClassLabel names {names}."
                )
            y = names[y]
        out.append(y)
    return out


def _label_index(task: str, label_names: list[str]) -> dict[str, int]:
    """Label key -> id. Two names that are spellings of one label (" pos" and "pos", "1" and "1.0")
    are refused; a name listed twice as written is left to the model, which refuses it."""
    index: dict[str, int] = {}
    for i, n in enumerate(label_names):
        key = label_key(n)
        if key is None:
            raise DataError(f"Task {task!r}: the label names {label_names} include an empty one; name every class.")
        if key in index and label_names[index[key]] != n:
            raise DataError(
                f"Task {task!r}: the label names {label_names[index[key]]!r} and {n!r} are spellings of one "
                f"label ({key!r}), so its examples cannot be told apart. Name each class once."
            )
        index[key] = i
    return index


def _class_label_names(data: Any, column: str) -> list[str] | None:
    feature = getattr(data, "features", {}).get(column) if hasattr(data, "features") else None
    return [str(n) for n in feature.names] if feature is not None and hasattr(feature, "names") else None


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


def check_tokenized_splits(task: str, label_names: list[str], tokenizer, splits: dict) -> None:
    """The checks of :func:`as_task_data` on tokenized splits, as ``transformers.Trainer`` takes them
    (``{"train": dataset, "validation": dataset}``, each with ``input_ids`` and a ``label`` or
    ``labels`` column): label ids index ``label_names``, no validation example repeats a training
    example (compared as decoded text, up to case and spacing), no class occurs only in
    validation. DataError otherwise."""
    rows = {}
    for split, dataset in splits.items():
        if dataset is None:
            continue
        columns = set(getattr(dataset, "column_names", None) or [])
        column = next((c for c in ("labels", "label") if c in columns), None)
        if column is None or "input_ids" not in columns:
            continue  # not a tokenized datasets.Dataset: the Trainer's own checks apply
        labels = [int(y) for y in list(dataset[column])]
        bad = [i for i, y in enumerate(labels) if not 0 <= y < len(label_names)]
        if bad:
            raise DataError(
                f"Task {task!r}: the {split} dataset has label ids outside 0..{len(label_names) - 1} "
                f"(rows {bad[:5]}), which do not index the task's labels {label_names}."
            )
        texts = tokenizer.batch_decode([list(ids) for ids in dataset["input_ids"]], skip_special_tokens=True)
        origin = f"the {split} dataset given to the Trainer"
        rows[split] = Rows(texts, labels, None, [f"row {i}" for i in range(len(texts))], origin)
    if "train" in rows:
        check_overlap(task, rows, [], api=True)
        check_unseen_labels(task, rows, label_names, api=True)
