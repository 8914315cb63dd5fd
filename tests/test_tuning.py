"""Tuning on validation data: test splits are never touched, every method gets the same budget,
studies resume, and the chosen options reach ctr-train through --tuned."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.tuning import best_entry, read_tuned, search_space, tune_method, tuned_options, write_tuned
from ctr_plugin.experiments.validation_runs import (
    EncoderCache,
    SealedSplit,
    SealedSplitError,
    seal_test_splits,
    validation_run,
)

from conftest import TINY_PLUGIN, keyword_task

FAST = TrainingConfig(epochs=1, lr=1e-2, batch_size=8, progress=False)


class ExplodingSplit:
    """A test split that fails the test the moment anything reads it."""

    def __getattr__(self, name):
        pytest.fail(f"the test split was read ({name}) during tuning")

    def __len__(self):
        pytest.fail("the test split was read (len) during tuning")


def poisoned(tasks):
    return [dataclasses.replace(t, test=ExplodingSplit()) for t in tasks]


@pytest.fixture
def tasks():
    return [
        keyword_task("sentiment", [["good", "great"], ["bad", "awful"]], n_train=24, n_test=12),
        keyword_task("colour", [["red", "pink"], ["blue", "green"]], n_train=24, n_test=12),
    ]


def test_a_sealed_test_split_refuses_every_use(tasks):
    sealed = seal_test_splits(tasks)[0].test
    for use in (len, lambda s: s.texts, lambda s: s.labels, lambda s: list(s), lambda s: s[0], bool):
        with pytest.raises(SealedSplitError, match="validation-only run"):
            use(sealed)
    assert isinstance(sealed, SealedSplit) and tasks[0].test.texts  # the caller's tasks are not changed


@pytest.mark.parametrize("method", ["ctr", "replay", "lwf", "bert_mtl"])
def test_a_validation_run_scores_validation_data_and_never_reads_test_data(method, tasks, tiny_bert_dir):
    row = validation_run(poisoned(tasks), method, {}, FAST, TINY_PLUGIN, EncoderCache(tiny_bert_dir))
    acc = row["val_acc_matrix"]
    assert acc[0][1] is None and all(0 <= v <= 100 for v in (acc[0][0], acc[1][0], acc[1][1]))
    assert row["val_final_acc"] == pytest.approx((acc[1][0] + acc[1][1]) / 2)
    assert row["val_forgetting_rate"] == pytest.approx(acc[0][0] - acc[1][0])


def test_every_method_searches_the_shared_ranges_plus_its_own():
    for method in ("ctr", "adapter_one", "ewc", "replay", "bert_ncl"):
        space = search_space(method)
        assert {"lr", "epochs"} <= set(space)
    assert set(search_space("adapter_one")) == {"lr", "epochs"}
    assert "mask_lambda" in search_space("ctr") and "strength" in search_space("ewc")


def test_a_search_space_names_the_methods_options_or_its_plugins():
    import dataclasses

    from ctr_plugin.continual.methods import METHODS
    from ctr_plugin.plugins import PluginConfig

    plugin = {f.name for f in dataclasses.fields(PluginConfig)}
    for name, method in METHODS.items():
        own = {f.name for f in dataclasses.fields(method)}
        assert set(method.search_space) <= own | plugin, name
    assert "lora_rank" in search_space(
        "lora_ncl"
    )  # LoRA's rank is a plugin option: tuned files hold it under `training:`


def test_each_method_gets_the_budget_and_an_interrupted_study_resumes(tasks, tiny_bert_dir, tmp_path):
    import optuna

    journal, encoders = tmp_path / "journal.log", EncoderCache(tiny_bert_dir)
    sealed = poisoned(tasks)
    seen = []
    for method in ("adapter_one", "ewc"):
        study = tune_method(method, sealed, 2, journal, FAST, TINY_PLUGIN, encoders, seed=0, on_trial=seen.append)
        assert len(study.trials) == 2
    assert [r["method"] for r in seen] == ["adapter_one", "adapter_one", "ewc", "ewc"]
    for row in seen:  # sampled inside the declared ranges
        assert 3e-4 <= row["params"]["lr"] <= 3e-3 and row["params"]["epochs"] in (3, 5)
    ewc_trials = [r for r in seen if r["method"] == "ewc"]
    assert all(1e2 <= r["params"]["strength"] <= 1e5 for r in ewc_trials)

    # A trial killed mid-run stays RUNNING in the journal: it is marked failed, not counted, and
    # the study goes on to the budget.
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="ewc", storage=storage)
    study.ask()
    study = tune_method("ewc", sealed, 3, journal, FAST, TINY_PLUGIN, encoders, seed=0)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1
    assert (
        len(tune_method("ewc", sealed, 3, journal, FAST, TINY_PLUGIN, encoders).trials) == 4
    )  # budget met: nothing runs

    entry = best_entry(study, "ewc")
    assert (
        entry["trials"] == 3
        and set(entry["training"]) == {"lr", "epochs"}
        and set(entry["method_options"]) == {"strength"}
    )
    assert entry["objective"] == pytest.approx(max(t.value for t in study.trials if t.value is not None), abs=0.01)


def test_the_tuned_file_round_trips_and_a_contradicting_flag_is_refused(tmp_path):
    path = tmp_path / "seq.tuned.yaml"
    write_tuned(
        path,
        {"ctr": {"training": {"lr": 0.002, "epochs": 5}, "method_options": {"mask_lambda": 0.5}}},
        {"sequence": "seq"},
    )
    write_tuned(
        path,
        {"replay": {"training": {"lr": 0.001, "epochs": 3}, "method_options": {"memory_size": 100}}},
        {"sequence": "seq"},
    )
    assert set(read_tuned(path)["methods"]) == {"ctr", "replay"}  # a second write keeps the first method
    assert tuned_options(path, "ctr") == ({"lr": 0.002, "epochs": 5}, {"mask_lambda": 0.5})
    with pytest.raises(CTRError, match="no tuned options for method 'lwf'.*ctr, replay"):
        tuned_options(path, "lwf")
    from ctr_plugin.experiments.settings import build_settings

    assert (
        build_settings("ctr", flags={"lr": 2e-3, "seed": 1}, tuned=str(path)).training.lr == 0.002
    )  # agreeing is fine
    with pytest.raises(CTRError, match="lr=0.01, which contradicts the tuned value lr=0.002"):
        build_settings("ctr", flags={"lr": 0.01}, tuned=str(path))
    (tmp_path / "bad.yaml").write_text("methods: [1, 2]\n")
    with pytest.raises(CTRError, match="not a tuned-options file"):
        read_tuned(tmp_path / "bad.yaml")


def test_the_summary_ranks_methods_and_flags_values_at_a_range_edge(tmp_path):
    from ctr_plugin.experiments.tuning import summarize_tuned
    from ctr_plugin.search_space import Choice, LogUniform, Uniform

    assert (
        LogUniform(1e-4, 1e-2).edge(1.1e-4) == "low" and LogUniform(1e-4, 1e-2).edge(1e-3) is None
    )  # log space: 1e-3 is the middle
    assert LogUniform(1e-4, 1e-2).edge(9e-3) == "high"
    assert Uniform(0.0, 1.5).edge(0.1) == "low" and Uniform(0.0, 1.5).edge(0.75) is None
    assert Choice((3, 5)).edge(5) == "high" and Choice(("a", "b")).edge("a") is None
    path = tmp_path / "seq.tuned.yaml"
    write_tuned(
        path,
        {
            "ctr": {
                "training": {"lr": 2.9e-3, "epochs": 3},
                "method_options": {"mask_lambda": 0.7},
                "objective": 85.5,
                "objective_mf1": 80.25,
                "trials": 8,
                "failed_trials": 0,
            },
            "replay": {
                "training": {"lr": 1e-3, "epochs": 5},
                "method_options": {"memory_size": 200},
                "objective": 88.0,
                "objective_mf1": None,
                "trials": 8,
                "failed_trials": 1,
            },
        },
        {"objective": "mean validation accuracy"},
    )
    lines = summarize_tuned(read_tuned(path)).splitlines()
    rows = [line for line in lines if line.startswith("| ctr ") or line.startswith("| replay ")]
    assert [row.split(" | ")[0] for row in rows] == ["| replay", "| ctr"]  # best first
    assert rows[0].endswith("| 8 (1 failed) | epochs high |") and "| 88.00 | - |" in rows[0]
    assert rows[1].endswith("| 8 | lr high, epochs low |") and "mask_lambda 0.7" in rows[1]


def _files_config(tmp_path: Path, tasks, encoder_dir: str) -> Path:
    """A sequence config over local CSV files made from the synthetic tasks."""
    import csv

    specs = []
    for task in tasks:
        paths = {}
        for split in ("train", "validation", "test"):
            path = tmp_path / f"{task.name}_{split}.csv"
            data = getattr(task, split)
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                writer.writerows((t, task.label_names[y]) for t, y in zip(data.texts, data.labels))
            paths[split] = str(path)
        specs.append({"name": task.name, "source": "files", **paths})
    config = tmp_path / "seq.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "seq",
                "encoder": encoder_dir,
                "training": {
                    "epochs": 1,
                    "batch_size": 8,
                    "adapter_size": 16,
                    "task_capsule_hidden": 4,
                    "routing_filters": 8,
                    "pooling": "mean",
                },
                "tasks": specs,
            }
        )
    )
    return config


def test_tune_script_writes_options_that_train_ctr_uses_and_never_loads_test_data(
    tasks, tiny_bert_dir, tmp_path, monkeypatch, capsys
):
    import ctr_plugin.data
    from ctr_plugin.commands import train as train_ctr
    from ctr_plugin.commands import tune

    config = _files_config(tmp_path, tasks, tiny_bert_dir)
    real_load = ctr_plugin.data.load_tasks
    monkeypatch.setattr(ctr_plugin.data, "load_tasks", lambda *a, **k: poisoned(real_load(*a, **k)))
    assert (
        tune.main(
            [
                "--config",
                str(config),
                "--methods",
                "replay",
                "--trials",
                "2",
                "--tasks",
                "2",
                "--max-train-per-task",
                "24",
            ]
        )
        == 0
    )
    monkeypatch.setattr(ctr_plugin.data, "load_tasks", real_load)
    tuned_file = tmp_path / "seq.tuned.yaml"
    tuned = read_tuned(tuned_file)
    assert set(tuned["methods"]) == {"replay"} and (tmp_path / "seq.tuning.journal").is_file()
    assert tuned["methods"]["replay"]["trials"] == 2 and "memory_size" in tuned["methods"]["replay"]["search_space"]

    train_values, options = tuned_options(tuned_file, "replay")
    out = tmp_path / "run"
    assert (
        train_ctr.main(
            [
                "--config",
                str(config),
                "--method",
                "replay",
                "--tuned",
                str(tuned_file),
                "--output-dir",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert (
        results["training"]["lr"] == pytest.approx(train_values["lr"])
        and results["training"]["epochs"] == train_values["epochs"]
    )
    assert all(results["method_options"][k] == v for k, v in options.items())
    assert results["data"]["tuned"] == str(tuned_file)
    with pytest.raises(CTRError, match="contradicts the tuned value"):
        train_ctr.main(
            [
                "--config",
                str(config),
                "--method",
                "replay",
                "--tuned",
                str(tuned_file),
                "--lr",
                "0.123",
                "--output-dir",
                str(tmp_path / "run2"),
            ]
        )


# --- a journal cut off by a kill, damaged, or not a journal at all ---------------------------------


def test_a_journal_whose_last_record_was_cut_off_by_a_kill_is_repaired_not_made_worse(
    tasks, tiny_bert_dir, tmp_path, caplog
):
    import optuna

    journal, encoders = tmp_path / "journal.log", EncoderCache(tiny_bert_dir)
    sealed = poisoned(tasks)
    tune_method("frozen_heads", sealed, 1, journal, FAST, TINY_PLUGIN, encoders, seed=0)
    whole = journal.read_bytes()
    last = whole.splitlines(keepends=True)[-1]
    journal.write_bytes(whole + last[: len(last) // 2])  # killed while Optuna wrote a record
    with caplog.at_level("WARNING"):
        study = tune_method("frozen_heads", sealed, 2, journal, FAST, TINY_PLUGIN, encoders, seed=0)
    assert len(study.trials) == 2
    assert "cut off" in caplog.text and str(journal) in caplog.text
    assert (tmp_path / "journal.log.cut-off").read_bytes() == last[: len(last) // 2]
    assert journal.read_bytes().startswith(whole)
    assert all(line.endswith(b"\n") and json.loads(line) for line in journal.read_bytes().splitlines(keepends=True))
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    assert len(optuna.load_study(study_name="frozen_heads", storage=storage).trials) == 2  # Optuna reads it all


def test_a_journal_damaged_inside_is_refused_with_its_line_and_left_as_it_was(tasks, tiny_bert_dir, tmp_path):
    journal = tmp_path / "journal.log"
    good = b'{"op_code":0,"worker_id":"w","study_name":"x","directions":[1]}\n'
    damaged = good + b'{"op_code":4,"worker_id"\n' + good
    journal.write_bytes(damaged)
    encoders = EncoderCache(tiny_bert_dir)
    with pytest.raises(CTRError, match=r"damaged at line 2 of 3.*head -n 1"):
        tune_method("frozen_heads", poisoned(tasks), 1, journal, FAST, TINY_PLUGIN, encoders)
    assert journal.read_bytes() == damaged

    from ctr_plugin.experiments.tuning import check_journal

    with pytest.raises(CTRError, match=r"damaged at line 2 of 3.*head -n 1"):
        check_journal(journal)
    assert journal.read_bytes() == damaged


@pytest.mark.parametrize(
    "content, expected",
    [
        ("methods:\n  ctr: {}\n", "not an Optuna journal"),
        ('{"a": 1}\n', "not an Optuna journal"),
        (b"\x00\xff\xfe binary", "not an Optuna journal"),
        (None, "is not a file"),
    ],
    ids=["yaml", "json-not-journal", "binary", "directory"],
)
def test_a_storage_that_is_not_a_journal_is_refused_before_the_data_loads(
    content, expected, tasks, tiny_bert_dir, tmp_path, monkeypatch, capsys
):
    import ctr_plugin.data

    from test_cli import call

    config = _files_config(tmp_path, tasks, tiny_bert_dir)
    storage = tmp_path / "storage"
    if content is None:
        storage.mkdir()
    elif isinstance(content, bytes):
        storage.write_bytes(content)
    else:
        storage.write_text(content)
    before = None if content is None else storage.read_bytes()
    monkeypatch.setattr(ctr_plugin.data, "load_tasks", lambda *a, **k: pytest.fail("the data was loaded"))
    code, _, err = call(
        "tune", ["--config", str(config), "--methods", "replay", "--tasks", "2", "--storage", str(storage)], capsys
    )
    assert code == 2 and expected in err and str(storage) in err and "Traceback" not in err, err
    assert before is None or storage.read_bytes() == before
    assert not (tmp_path / "seq.tuned.yaml").exists()
