"""Turn a :class:`TaskSpec` into a :class:`TaskData`: read, check, encode labels, split, cap.

Three sources feed one pipeline (:func:`build_task`):

- ``bundled``: a pool from :data:`BUNDLED_DATASETS`, which has no splits;
- ``files``: local csv / tsv / json / jsonl files, one per split (json may use the ASC layout of
  CTR's released data: an object mapping id -> {"sentence", "term", "polarity"});
- ``hub``: ``datasets.load_dataset(path, config)``, which needs network access.

Missing splits are carved from the training pool: test first, then validation from the rest, each
a seeded stratified sample whose seed is derived from (task name, run seed), so the splits depend
on nothing else. The pool is de-duplicated before carving, so no text lands in two splits. Caps
(``max_train`` ...) subsample each split afterwards, so a cap never moves an example between
splits.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from decimal import Decimal
from typing import Any

from ctr_plugin.data.config import SPLITS, SequenceConfig, TaskSpec
from ctr_plugin.data.readers import SHOWN, Rows, read_bundled, read_files, read_hub, shown
from ctr_plugin.data.splits import dedup_key, deduplicate, derived_seed, stratified_sample, stratified_split
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.errors import DataError

log = logging.getLogger(__name__)


def load_tasks(config: SequenceConfig, seed: int = 0) -> list[TaskData]:
    """Load every task of ``config``, in config order, with splits determined by ``seed``."""
    return [build_task(spec, seed) for spec in config.tasks]


def build_task(spec: TaskSpec, seed: int = 0) -> TaskData:
    """Read, check and split one task. Raises DataError saying what to fix when the data is unusable.

    The result has train/validation/test splits that are non-empty and pairwise free of repeated
    texts whenever they were carved here, label ids ``0..K-1`` indexing ``label_names`` (K >= 2),
    and ``notes`` recording every change made to the data (dropped rows, carving, caps).
    """
    if spec.source == "bundled":
        raw, source, class_order = read_bundled(spec)
    elif spec.source == "files":
        raw, source, class_order = read_files(spec)
    else:
        raw, source, class_order = read_hub(spec)
    notes: list[str] = []
    raw = {split: _with_valid_texts(spec, split, rows, notes) for split, rows in raw.items()}
    keys = {split: _label_keys(spec, rows) for split, rows in raw.items()}
    note_label_spellings(spec.name, raw, keys, notes)
    vocab = _label_vocabulary(spec, raw, keys, class_order)
    splits: dict[str, Rows] = {}
    for split, rows in raw.items():
        keep = [i for i, key in enumerate(keys[split]) if key in vocab]
        if len(keep) < len(rows.labels):
            others = sorted({str(key) for key in keys[split] if key not in vocab})
            if not spec.drop_other_labels:
                raise DataError(
                    f"Task '{spec.name}': {len(rows.labels) - len(keep)} {split} examples have labels outside the "
                    f"declared `labels:` {list(vocab)} (e.g. {others[:5]}). Fix the label column, add those "
                    f"labels to `labels:`, or set `drop_other_labels: true` to keep only the listed classes."
                )
            notes.append(
                f"{split}: dropped {len(rows.labels) - len(keep)} examples with labels not in `labels:` "
                f"({', '.join(others[:5])})"
            )
        kept = rows.take(keep)
        kept.labels = [vocab[keys[split][i]] for i in keep]
        splits[split] = kept
    check_overlap(spec.name, splits, notes, drop=spec.drop_test_overlap)
    _carve_missing_splits(spec, seed, splits, notes)
    for split in SPLITS:
        cap = getattr(spec, f"max_{split}")
        if cap is not None and len(splits[split].labels) > cap:
            notes.append(f"{split}: capped {len(splits[split].labels)} -> {cap} (stratified)")
            keep = stratified_sample(splits[split].labels, cap, derived_seed(spec.name, seed, split, "cap"))
            splits[split] = splits[split].take(keep)
    _check_splits(spec, splits, list(vocab))
    names = _display_names(spec, list(vocab))
    return TaskData(
        name=spec.name,
        label_names=names,
        train=_to_split(splits["train"]),
        validation=_to_split(splits["validation"]),
        test=_to_split(splits["test"]),
        source=source,
        notes=notes,
    )


# --- checking and labels ---------------------------------------------------------------------


def _with_valid_texts(spec: TaskSpec, split: str, rows: Rows, notes: list[str]) -> Rows:
    """Return ``rows`` if every text is a non-blank string; else drop the others or raise.

    Rows are dropped (and the count noted) only when the task sets ``drop_empty_texts``.
    """
    columns = spec.text if isinstance(spec.text, list) else [spec.text]
    fields = [(columns[0], rows.texts)] + ([(columns[1], rows.pairs)] if rows.pairs is not None else [])
    bad: set[int] = set()
    for column, values in fields:
        invalid = [i for i, t in enumerate(values) if not isinstance(t, str) or not t.strip()]
        if invalid and not spec.drop_empty_texts:
            raise DataError(
                f"Task '{spec.name}': {len(invalid)} of {len(values)} examples in {rows.origin} have "
                f"a missing, empty or non-string text in column '{column}' "
                f"({shown([rows.row_ids[i] for i in invalid])}). Fill in or remove those rows, point "
                "`text:` at the column that holds the text, or set `drop_empty_texts: true`."
            )
        bad.update(invalid)
    if not bad:
        return rows
    notes.append(f"{split}: dropped {len(bad)} examples with a missing or empty text")
    return rows.take([i for i in range(len(rows.labels)) if i not in bad])


# Spellings of "no value" that spreadsheets and pandas write into empty cells (pandas' na_values).
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "-nan", "null", "none", "#n/a", "#na", "<na>", "nil"})


# A decimal number as a label may be spelled: 1, +1, 01, 1.0, 1., .5 (no exponent: "1e3" may be a code).
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


def number_key(text: str) -> str | None:
    """The one spelling of the decimal number ``text`` ("1.0", "+1", "01" -> "1"; "1.50" -> "1.5";
    "-0.0" -> "0"), exact for any number of digits; None when ``text`` is not a plain decimal."""
    if not NUMBER.fullmatch(text):
        return None
    sign, text = ("-", text[1:]) if text[0] == "-" else ("", text.lstrip("+"))
    whole, _, fraction = text.partition(".")
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    if whole == "0" and not fraction:
        return "0"
    return sign + whole + (f".{fraction}" if fraction else "")


def label_key(value: Any, markers: frozenset[str] = frozenset()) -> str | None:
    """The label value as a string, so that the spellings of one label are one key: 1, 1.0, "1",
    "1.0", " 1 " and "01" are "1"; "1.50" and 1.5 are "1.5". None when missing, or when it is one
    of ``markers`` (missing-value spellings such as "NA")."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer():
            return str(int(value))
        return number_key(format(Decimal(repr(value)), "f")) or repr(value)
    key = str(value).strip()
    if not key or key.lower() in markers:
        return None
    return number_key(key) or key


def label_spelling(value: Any) -> str:
    """How ``value`` is written in the data, for messages and notes."""
    return repr(value) if isinstance(value, float) else str(value).strip()


def is_scalar_label(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _label_keys(spec: TaskSpec, rows: Rows) -> list[str]:
    # A missing-value marker is a label only where `labels:` lists it.
    declared = {str(v).strip().lower() for v in spec.labels or []}
    markers = frozenset(MISSING_MARKERS - declared)
    listed = [i for i, y in enumerate(rows.labels) if not is_scalar_label(y)]
    if listed:
        raise DataError(
            f"Task '{spec.name}': {len(listed)} of {len(rows.labels)} examples in {rows.origin} have a list or "
            f"mapping as the label in column '{spec.label}' ({shown([rows.row_ids[i] for i in listed])}); a label "
            "is one value (a name or a number). Write one label per example."
        )
    keys = [label_key(y, markers) for y in rows.labels]
    missing = [i for i, k in enumerate(keys) if k is None]
    if missing:
        spelled = sorted(
            {
                repr(str(rows.labels[i]).strip())
                for i in missing
                if rows.labels[i] is not None and str(rows.labels[i]).strip()
            }
        )
        markers_note = (
            f" ({', '.join(spelled)} {'is a spelling' if len(spelled) == 1 else 'are spellings'} of a missing value; "
            "if it is a real class, list it in `labels:`)"
            if spelled
            else ""
        )
        raise DataError(
            f"Task '{spec.name}': {len(missing)} of {len(keys)} examples in {rows.origin} have no "
            f"label in column '{spec.label}'{markers_note} ({shown([rows.row_ids[i] for i in missing])}). "
            "Label or remove those rows."
        )
    return keys


def note_label_spellings(task: str, raw: dict[str, Rows], keys: dict[str, list[str]], notes: list[str]) -> None:
    """Warn (log and notes) about labels that differ only in case: they stay separate classes,
    as written, but are likely one class spelled two ways. Labels that differ only in surrounding
    spaces are one class; so are the spellings of one number ("1", "1.0", 1.0, "01"); both are
    noted. ``keys`` are the :func:`label_key` of the labels in ``raw``, split by split.

    The file loader and the Python API (:mod:`ctr_plugin.data.python`) both call this."""
    present = sorted({k for split_keys in keys.values() for k in split_keys})
    numbers: dict[str, set[str]] = {}
    for split, rows in raw.items():
        for value, key in zip(rows.labels, keys[split]):
            if isinstance(value, str | float) and NUMBER.fullmatch(key):
                numbers.setdefault(key, set()).add(label_spelling(value))
    merged = [
        f"{', '.join(repr(s) for s in sorted(spellings))} -> {key!r}"
        for key, spellings in sorted(numbers.items())
        if spellings - {key}
    ]
    if merged:
        message = f"number-like labels were read as numbers, each number one label: {'; '.join(merged[:SHOWN])}"
        message += f" and {len(merged) - SHOWN} more" if len(merged) > SHOWN else ""
        log.info("Task '%s': %s.", task, message)
        notes.append(message)
    by_case: dict[str, list[str]] = {}
    for key in present:
        by_case.setdefault(key.casefold(), []).append(key)
    for spellings in by_case.values():
        if len(spellings) > 1:
            message = (
                f"warning: labels {spellings} differ only in case and are kept as {len(spellings)} separate classes; "
                "if they are one class, write them the same way in the data"
            )
            log.warning("Task '%s': %s.", task, message)
            notes.append(message)
    padded = sorted({repr(y) for rows in raw.values() for y in rows.labels if isinstance(y, str) and y != y.strip()})
    if padded:
        notes.append(f"labels with surrounding spaces ({shown(padded)}) were read without them")


def _label_vocabulary(
    spec: TaskSpec, raw: dict[str, Rows], keys: dict[str, list[str]], class_order: list[str] | None
) -> dict[str, int]:
    """Map label keys to ids: the declared ``labels:`` order, else the data set's own order."""
    present = Counter(key for split_keys in keys.values() for key in split_keys)
    if spec.labels is None:
        if class_order is not None:
            ordered = list(dict.fromkeys(key for key in map(label_key, class_order) if key in present))
            ordered += sorted(set(present) - set(ordered))
        else:
            ordered = ordered_labels(present)
        return {key: i for i, key in enumerate(ordered)}
    declared = []
    for value in spec.labels:
        # A ClassLabel column may be filtered by id as well as by name.
        if class_order is not None and type(value) is int and 0 <= value < len(class_order):
            value = class_order[value]
        declared.append(label_key(value))  # listed values are labels even if they spell "missing"
    if len(set(declared)) < len(declared):
        raise DataError(f"Task '{spec.name}': `labels:` lists a value twice ({spec.labels!r}): list each label once.")
    in_train = set(keys["train"])
    absent = [k for k in declared if k not in in_train]
    if absent:
        raise DataError(
            f"Task '{spec.name}': `labels:` lists {', '.join(repr(k) for k in absent)}, which "
            f"never occurs in column '{spec.label}' of {raw['train'].origin}. The labels that "
            f"occur are: {shown(sorted(in_train, key=str))}. Correct `labels:` to use those values."
        )
    return {key: i for i, key in enumerate(declared)}


def ordered_labels(keys) -> list[str]:
    """Label keys in id order when nothing else gives one: by value when all are numbers, else sorted."""
    if all(NUMBER.fullmatch(k) for k in keys):
        return sorted(keys, key=Decimal)
    return sorted(keys)


def _display_names(spec: TaskSpec, keys: list[str]) -> list[str]:
    if spec.label_names is None:
        return keys
    if len(spec.label_names) != len(keys):
        raise DataError(
            f"Task '{spec.name}': `label_names:` gives {len(spec.label_names)} names but the task "
            f"has {len(keys)} classes ({', '.join(keys)}). Give one name per class, in that order."
        )
    return [str(name) for name in spec.label_names]


# --- splitting and final checks --------------------------------------------------------------


def _carve_missing_splits(spec: TaskSpec, seed: int, splits: dict[str, Rows], notes: list[str]) -> None:
    """Add test and then validation, each carved from train (de-duplicated first), if absent."""
    if "test" in splits and "validation" in splits:
        return
    train = splits["train"]
    keep, n_repeats, n_conflicting = deduplicate(train.texts, train.labels, train.pairs)
    if n_repeats or n_conflicting:
        notes.append(
            f"train pool: dropped {n_repeats} repeated texts and {n_conflicting} texts "
            "whose copies disagree on the label"
        )
    train = train.take(keep)
    for split, fraction in (("test", spec.test_fraction), ("validation", spec.validation_fraction)):
        if split not in splits:
            rest, carved = stratified_split(train.labels, fraction, derived_seed(spec.name, seed, split))
            notes.append(f"{split}: carved {len(carved)} of {len(train.labels)} training examples (stratified)")
            splits[split] = train.take(carved)
            splits[split].origin = f"the {split} split carved from {train.origin}"
            train = train.take(rest)
    splits["train"] = train


def check_overlap(task: str, splits: dict[str, Rows], notes: list[str], drop: bool = False, api: bool = False) -> None:
    """Refuse given validation / test data that repeats training examples (the same text, or text
    pair, up to case and spacing): scores on them would measure memory, not generalisation.
    ``drop`` (the task's ``drop_test_overlap``) drops them from the validation / test split instead
    (noted). ``api``: the splits came as arguments of the Python API, which the message names."""
    if "train" not in splits:
        return
    train = splits["train"]
    seen: dict[tuple[str, str], str] = {}
    for i, text in enumerate(train.texts):
        seen.setdefault(dedup_key(text, train.pairs[i] if train.pairs is not None else None), train.row_ids[i])
    for split in ("validation", "test"):
        if split not in splits:
            continue
        rows = splits[split]
        keys = [dedup_key(t, rows.pairs[i] if rows.pairs is not None else None) for i, t in enumerate(rows.texts)]
        repeated = [i for i, key in enumerate(keys) if key in seen]
        if not repeated:
            continue
        if not drop:
            where = [f"{rows.row_ids[i]} = {seen[keys[i]]} of the training data" for i in repeated]
            fix = (
                f"Remove them from `{split}` (or from `train`), or pass the {split} data the task really means."
                if api
                else f"Remove them from one of the files, give the {split} file the task really means, "
                f"or set `drop_test_overlap: true` to drop them from the {split} split."
            )
            raise DataError(
                f"Task '{task}': {len(repeated)} of {len(keys)} examples in {rows.origin} also occur in "
                f"{train.origin} ({shown(where)}); scores on them would measure memory, not the task. {fix}"
            )
        notes.append(f"{split}: dropped {len(repeated)} examples that also occur in train")
        splits[split] = rows.take([i for i, key in enumerate(keys) if key not in seen])


def check_unseen_labels(task: str, splits: dict[str, Rows], names: list[str], api: bool = False) -> None:
    """Refuse classes (label ids, naming ``names``) that occur in the validation or test split but
    never in the training split: no model can learn them. ``api`` as for :func:`check_overlap`."""
    classes = set(splits["train"].labels)
    for split in ("validation", "test"):
        rows = splits.get(split)
        if rows is None:
            continue
        unseen = sorted({y for y in rows.labels if y not in classes})
        if unseen:
            where = [rows.row_ids[i] for i, y in enumerate(rows.labels) if y in unseen]
            fix = (
                f"Add training examples of them, remove those rows from `{split}`, or correct their spelling."
                if api
                else "Add training examples of them, leave them out with `labels:` "
                "(and `drop_other_labels: true`), or correct their spelling."
            )
            raise DataError(
                f"Task '{task}': the label(s) {[names[y] for y in unseen]} occur in the {split} split "
                f"({rows.origin}: {shown(where)}) but never in the training data, so no model can learn them "
                f"and the scores would be wrong. {fix}"
            )


def _check_splits(spec: TaskSpec, splits: dict[str, Rows], names: list[str]) -> None:
    for split in SPLITS:
        if not splits[split].labels:
            raise DataError(
                f"Task '{spec.name}': the {split} split is empty ({splits[split].origin} holds no "
                "usable examples after filtering). Provide examples for it, check `labels:`, or "
                "remove the file so the split is carved from train."
            )
    check_unseen_labels(spec.name, splits, names)
    classes = set(splits["train"].labels)
    num_labels = len(names)
    if len(classes) < 2 or num_labels < 2:
        raise DataError(
            f"Task '{spec.name}': the training data has {len(classes)} class(es); a classification "
            f"task needs at least two. Check `label:` ('{spec.label}') and `labels:`."
        )


def _to_split(rows: Rows) -> Split:
    return Split(
        texts=list(rows.texts), labels=list(rows.labels), pairs=list(rows.pairs) if rows.pairs is not None else None
    )
