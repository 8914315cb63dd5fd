"""Property tests of the data loader: generated csv / tsv / json / jsonl files, label spellings and
small sequence configs. Whatever they hold, the loader gives a DataError with a message, or a
consistent task: label names distinct, ids indexing them, every split non-empty, no text in two
splits, every label the one its rows spell, no class outside train. Never any other exception.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ctr_plugin.data import TaskSpec, build_task, load_sequence_config, load_tasks
from ctr_plugin.data.splits import dedup_key
from ctr_plugin.errors import DataError

# Fixed examples, a few seconds in all, for CI; CTR_PROPERTY_EXAMPLES=5000 explores further with fresh ones.
EXAMPLES = int(os.environ.get("CTR_PROPERTY_EXAMPLES", "0")) or None
FAST = settings(
    max_examples=EXAMPLES or 80,
    deadline=None,
    derandomize=EXAMPLES is None,
    database=None,  # nothing written into the checkout
    suppress_health_check=list(HealthCheck),
)

# Label spellings that invite mistakes: numbers written several ways, case, padding, missing-value markers.
SPELLINGS = ["0", "1", "1.0", " 1 ", "+1", "01", "1.", ".5", "0.50", "-0", "-1", "1e3", "²", "pos", "Pos", " pos"]
SPELLINGS += ["neg", "NA", "nan", "", "None", "true", "ünï", "a,b", 'say "hi"']
# Labels a file may well hold: one class spelled several ways beside others.
FAIR_LABELS = st.one_of(
    st.sampled_from(["0", "1", "1.0", " 1 ", "+1", "01", "0.0", "1.50", "1.5", "pos", " pos", "Pos", "neg"]),
    st.integers(0, 1),
    st.sampled_from([0.0, 1.0, 1.5]),
)
ANY_LABELS = st.one_of(
    st.sampled_from(SPELLINGS),
    st.integers(-2, 3),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1.0, 0.5, 1e-7, True, False, None]),
    st.lists(st.integers(0, 1), max_size=2),
    st.text(max_size=4),
)
# Texts that repeat now and then (up to case and spacing), within and across files; some that csv and json must quote.
FAIR_TEXTS = st.sampled_from(["good", "GOOD ", "so  bad", "a, b", 'say "hi"', "ünï"])
ANY_TEXTS = st.one_of(
    st.sampled_from(["good", "GOOD ", "bad", "so  bad", "ok", " ", "", 'a "quote"', "comma, here", "line\nbreak"]),
    st.text(alphabet="ab ,\"'é\t", max_size=6),
)
# Half the tables are fair (they should mostly load), half hostile (they should mostly be refused).
FAIR_TABLE = st.lists(st.tuples(FAIR_TEXTS, FAIR_LABELS), min_size=8, max_size=50).map(
    lambda rows: [(f"{text} {i % 40}", label) for i, (text, label) in enumerate(rows)]
)
TABLE = FAIR_TABLE | st.lists(st.tuples(ANY_TEXTS, ANY_LABELS), max_size=25)
HELD_OUT = FAIR_TABLE.map(lambda rows: [(f"held out {text}", label) for text, label in rows])  # mostly new texts


def spelled(value) -> str:
    """How a csv / tsv file holds ``value``."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list) else str(value)


def write(path: Path, fmt: str, rows: list[tuple]) -> None:
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows((t, spelled(y)) for t, y in rows)
    elif fmt == "tsv":  # no quoting in tsv: tabs and line breaks inside a field make other rows
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{spelled(y)}\n" for t, y in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps([{"text": t, "label": y} for t, y in rows]), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")


def number(value) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    text = str(value).strip()
    if not text or not all(c in "0123456789+-." for c in text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def same_label(value, name: str) -> bool:
    """Whether a label written as ``value`` is the class named ``name`` (an oracle independent of the loader's)."""
    if number(value) is not None and number(name) is not None:
        return number(value) == number(name)
    if isinstance(value, bool):
        return name == str(value).lower()
    if isinstance(value, float):
        return name == str(value)
    return str(value).strip() == name


def read_back(path: Path, fmt: str, rows: list[tuple]) -> list[tuple]:
    """The (text, label) rows the file holds: as written, except tsv, which is read as tsv is."""
    if fmt != "tsv":
        return rows
    lines = path.read_text(encoding="utf-8").split("\n")[1:]
    return [tuple(line.split("\t")[:2]) for line in lines if "\t" in line]


def assert_consistent(task, given_rows: list[tuple]) -> None:
    names = task.label_names
    assert len(names) >= 2 and len(set(names)) == len(names) and all(isinstance(n, str) and n for n in names)
    labels_of: dict[tuple[str, str], list] = {}
    for text, label in given_rows:
        if isinstance(text, str):
            labels_of.setdefault(dedup_key(text), []).append(label)
    seen: dict[tuple[str, str], str] = {}
    for split_name in ("train", "validation", "test"):
        split = getattr(task, split_name)
        assert len(split.texts) == len(split.labels) > 0
        for text, y in zip(split.texts, split.labels):
            assert isinstance(text, str) and text.strip()
            assert type(y) is int and 0 <= y < len(names)
            key = dedup_key(text)
            assert seen.setdefault(key, split_name) == split_name, f"{text!r} in {seen[key]} and {split_name}"
            assert any(same_label(v, names[y]) for v in labels_of[key]), (text, names[y], labels_of[key])
    trained = set(task.train.labels)
    assert len(trained) >= 2 and set(task.validation.labels) <= trained and set(task.test.labels) <= trained


def build_or_refuse(spec: TaskSpec):
    try:
        task = build_task(spec, seed=0)
    except DataError as err:
        assert str(err).strip()
        event(f"refused: {str(err).split(':', 1)[1][:40]}")
        return None
    event("built a task")
    return task


@FAST
@given(
    fmt=st.sampled_from(["csv", "tsv", "json", "jsonl"]),
    train=TABLE,
    test=st.none() | TABLE | HELD_OUT,
    drop=st.booleans(),
)
def test_generated_files_give_a_consistent_task_or_a_data_error(fmt, train, test, drop):
    with tempfile.TemporaryDirectory() as tmp:
        paths, tables = {}, {"train": train, "test": test}
        for split, rows in tables.items():
            if rows is not None:
                paths[split] = Path(tmp) / f"{split}.{fmt}"
                write(paths[split], fmt, rows)
        spec = TaskSpec(
            name="t",
            **{split: str(path) for split, path in paths.items()},
            drop_empty_texts=drop,
            drop_test_overlap=drop,
            test_fraction=0.3,
        )
        task = build_or_refuse(spec)
        if task is not None:
            assert_consistent(task, [r for split, p in paths.items() for r in read_back(p, fmt, tables[split])])


@FAST
@given(
    labels=st.lists(st.sampled_from(SPELLINGS + ["2", "2.0", "02"]), min_size=2, max_size=40)
    | st.lists(st.sampled_from(["0", "1", "1.0", " 1 ", "+1", "01", "0.0", "1.5", "1.50", "pos", "Pos"]), max_size=40),
    declared=st.none() | st.lists(st.sampled_from(["0", "1", "1.0", "pos", 1, 2.0, "NA"]), min_size=2, max_size=3),
)
def test_label_spellings_are_one_class_per_label_or_a_data_error(labels, declared):
    rows = [(f"example number {i}", y) for i, y in enumerate(labels)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        write(path, "csv", rows)
        task = build_or_refuse(TaskSpec(name="t", train=str(path), labels=declared, drop_other_labels=True))
    if task is None:
        return
    assert_consistent(task, rows)
    classes = {}  # every row kept of one label spelling lands in one class, and one class is one label
    for split in (task.train, task.validation, task.test):
        for text, y in zip(split.texts, split.labels):
            classes.setdefault(y, set()).add(labels[int(text.rsplit(" ", 1)[1])])
    for y, values in classes.items():
        assert all(same_label(v, task.label_names[y]) for v in values), (task.label_names[y], values)


@FAST
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["csv", "tsv", "json", "jsonl"]))
def test_arbitrary_bytes_as_a_data_file_give_a_data_error_or_a_task(data, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d.{fmt}"
        path.write_bytes(data)
        task = build_or_refuse(TaskSpec(name="t", train=str(path)))
    if task is not None:
        assert len(set(task.label_names)) == len(task.label_names) >= 2


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 200),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
    st.sampled_from(["files", "bundled", "hub", "csv", "json", "text", "label", "utf-8", "latin-1", "no_such_set"]),
)
KEYS = st.sampled_from(
    ["source", "dataset", "train", "test", "format", "encoding", "text", "label", "labels", "label_names"]
    + ["drop_empty_texts", "drop_other_labels", "drop_test_overlap", "max_train", "max_test", "test_fraction"]
    + ["validation_fraction", "split_names", "nmae", "1"]
)


@pytest.fixture(scope="module")
def good_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("props") / "good.csv"
    write(path, "csv", [(f"review {i} is {'pos' if i % 2 else 'neg'}", "pos" if i % 2 else "neg") for i in range(40)])
    return str(path)


@FAST
@given(
    tasks=st.lists(st.dictionaries(KEYS, VALUES, max_size=5), min_size=1, max_size=3),
    top=st.dictionaries(
        st.sampled_from(["name", "description", "encoder", "training", "defaults", "data_root", "extra"]),
        VALUES,
        max_size=3,
    ),
    anchored=st.booleans(),
)
def test_generated_sequence_configs_load_or_give_a_data_error(good_csv, tasks, top, anchored):
    entries = [{"name": f"task{i}", "train": good_csv, **entry} for i, entry in enumerate(tasks)]
    text = yaml.safe_dump({**top, "tasks": entries}, sort_keys=False)
    if anchored:  # the first task's options repeated in the others through an anchor and merges
        first = yaml.safe_dump(entries[0], default_flow_style=True, width=10_000).strip()
        text = yaml.safe_dump(top) if top else ""
        text += f"tasks:\n  - &first {first}\n"
        text += "".join(f"  - {{<<: *first, name: task{i}}}\n" for i in range(1, len(entries)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seq.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_tasks(load_sequence_config(path))
        except DataError as err:
            assert str(err).strip()
            event(f"refused: {str(err)[:50]}")
            return
    event("loaded")
    assert [t.name for t in loaded] == [f"task{i}" for i in range(len(entries))]
    for task in loaded:
        assert len(set(task.label_names)) == len(task.label_names) >= 2
