"""Domain-IL and Class-IL grids end to end on a tiny encoder (issue 25, item 4): tuning a scenario
config with the same budget (validation scored without the task id; nothing to train, nothing
searched but the method's own options), the grid script over 2 orders × 2 methods in each
scenario, the tables with the scenario in the heading, the accuracy over all tasks seen so far
after each task and the task-id accuracy (msp, energy), and the refusals: a table never mixes
scenarios, and options tuned in one scenario are not used in another."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.tuning import read_tuned, search_space, summarize_tuned, trial_budget

from conftest import keyword_task
from test_cli import call, write_csv

ROOT = Path(__file__).resolve().parent.parent
TINY_TRAINING = {"epochs": 1, "batch_size": 8, "adapter_size": 16, "task_capsule_hidden": 4, "routing_filters": 8}
TINY_TRAINING |= {"pooling": "mean", "max_length": 16}


def grid_script():
    spec = importlib.util.spec_from_file_location("scenario_grid", ROOT / "scripts" / "scenario_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tasks(folder: Path, tasks: list[tuple[str, list[str], list[list[str]]]]) -> list[dict]:
    """Task specs over CSV files (train, validation, test) of keyword tasks with these labels."""
    specs = []
    for name, labels, keywords in tasks:
        data = keyword_task(name, keywords, n_train=24, n_test=16)
        paths = {}
        for split in ("train", "validation", "test"):
            part = getattr(data, split)
            rows = [(t, labels[y]) for t, y in zip(part.texts, part.labels)]
            paths[split] = write_csv(folder / f"{name}_{split}.csv", rows)
        specs.append({"name": name, "source": "files", **paths})
    return specs


@pytest.fixture
def configs(tmp_path, tiny_bert_dir) -> dict[str, Path]:
    """A Task-IL sequence with its orders file, its Domain-IL variant by ``base:`` (no orders file
    of its own), and a Class-IL sequence of disjoint label sets with its own orders."""
    folder = tmp_path / "configs"
    folder.mkdir()
    domain = write_tasks(
        folder,
        [
            ("apex", ["positive", "negative"], [["good", "great"], ["bad", "awful"]]),
            ("nokia", ["negative", "positive"], [["poor", "sad"], ["nice", "fine"]]),
        ],
    )
    classes = write_tasks(
        folder,
        [
            ("sentiment", ["good", "bad"], [["good", "great"], ["bad", "awful"]]),
            ("colour", ["red", "blue", "green"], [["red", "pink"], ["blue"], ["green"]]),
        ],
    )
    base = {"name": "seq", "encoder": tiny_bert_dir, "training": TINY_TRAINING, "tasks": domain}
    (folder / "seq.yaml").write_text(yaml.safe_dump(base))
    (folder / "seq.orders.yaml").write_text("orders:\n  - [0, 1]\n  - [1, 0]\n")
    (folder / "seq_domain.yaml").write_text(
        yaml.safe_dump({"base": "seq.yaml", "name": "seq_dom", "scenario": "domain"})
    )
    (folder / "seq_class.yaml").write_text(
        yaml.safe_dump(base | {"name": "seq_cls", "scenario": "class"} | {"tasks": classes})
    )
    (folder / "seq_class.orders.yaml").write_text("orders:\n  - [0, 1]\n  - [1, 0]\n")
    return {"task": folder / "seq.yaml", "domain": folder / "seq_domain.yaml", "class": folder / "seq_class.yaml"}


def run_script(argv: list[str], capsys) -> tuple[int, str, str]:
    script = grid_script()
    from ctr_plugin.commands.runner import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: script.main(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, " ".join(err.split())


# ---- tuning ------------------------------------------------------------------------------------


def test_methods_that_train_nothing_search_only_their_own_options_and_one_without_any_gets_one_trial():
    assert set(search_space("ncm")) == set() and set(search_space("slda")) == {"shrinkage"}
    assert {"lr", "epochs"} <= set(search_space("agem")) and {"lr", "epochs"} <= set(search_space("ctr"))
    assert trial_budget("ncm", 8) == 1 and trial_budget("slda", 8) == 8 and trial_budget("ctr", 8) == 8


def test_tuning_a_domain_config_scores_validation_without_the_task_id_into_its_own_file(configs, capsys):
    code, out, err = call(
        "tune",
        ["--config", str(configs["domain"]), "--methods", "ctr", "ncm", "--trials", "2", "--tasks", "2"]
        + ["--max-train-per-task", "24"],
        capsys,
    )
    assert code == 0, err
    folder = configs["domain"].parent
    tuned = read_tuned(folder / "seq_domain.tuned.yaml")
    assert not (folder / "seq.tuned.yaml").exists()  # the base's file is neither read nor written
    assert (folder / "seq_domain.tuning.journal").is_file()
    assert tuned["scenario"] == "domain" and tuned["sequence"] == "seq_dom"
    assert "without the task id" in tuned["objective"]
    ctr, ncm = tuned["methods"]["ctr"], tuned["methods"]["ncm"]
    assert ctr["trials"] == 2 and set(ctr["training"]) == {"lr", "epochs"} and "note" not in ctr
    assert ncm["trials"] == 1 and ncm["training"] == {} and ncm["method_options"] == {}
    assert ncm["search_space"] == {} and "one trial" in ncm["note"]
    summary = summarize_tuned(tuned)
    assert "Domain-IL" in summary and "1 (nothing to tune" in summary
    assert [json.loads(line)["method"] for line in out.splitlines() if line.startswith("{")] == ["ctr", "ctr", "ncm"]


def test_a_tuned_file_of_another_scenario_is_neither_extended_nor_used(configs, tmp_path, capsys):
    task_tuned = tmp_path / "task.tuned.yaml"
    task_tuned.write_text(
        "format: ctr_plugin.tuned/1\nsequence: seq\n"
        "methods:\n  ncm: {training: {}, method_options: {}, objective: 50}\n"
    )
    code, _, err = call(
        "tune",
        ["--config", str(configs["domain"]), "--methods", "ncm", "--tasks", "2", "--output", str(task_tuned)],
        capsys,
    )
    assert code == 2 and "holds options tuned in Task-IL" in err, err
    out = tmp_path / "grid"
    argv = ["--config", str(configs["domain"]), "--methods", "ncm", "--orders", "1", "--output-dir", str(out)]
    code, _, err = call("tables", [*argv, "--tuned", str(task_tuned)], capsys)
    assert code == 2 and "chosen in Task-IL" in err and "these runs are Domain-IL" in err, err
    assert not (out / "runs").exists()
    run_dir = tmp_path / "one_run"
    argv = ["--config", str(configs["domain"]), "--method", "ncm", "--output-dir", str(run_dir)]
    code, _, err = call("train", [*argv, "--tuned", str(task_tuned)], capsys)
    assert code == 2 and "chosen in Task-IL" in err and "these runs are Domain-IL" in err, err
    assert not run_dir.exists()


# ---- the grids and their tables ----------------------------------------------------------------


def table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """The rows of the markdown table under ``#### heading``, by method."""
    block = text.split(f"#### {heading}", 1)[1].split("\n\n", 2)[1]
    return {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in block.splitlines()[2:]}


def test_a_domain_grid_tunes_runs_two_orders_skips_finished_runs_and_tables_task_id_accuracy(
    configs, tmp_path, capsys
):
    out = tmp_path / "domain_grid"
    argv = ["--config", str(configs["domain"]), "--output-dir", str(out), "--methods", "ctr", "ncm"]
    argv += ["--orders", "2", "--trials", "1", "--tune-tasks", "2", "--max-train-per-task", "24"]
    code, stdout, err = run_script(argv, capsys)
    assert code == 0, err
    assert "+ ctr-tune " in stdout and "+ ctr-tables " in stdout and "seq_domain.tuned.yaml" in stdout
    runs = sorted(p.relative_to(out).as_posix() for p in out.glob("runs/*/*/results.json"))
    assert runs == [f"runs/{m}/order{k}_seed0/results.json" for m in ("ctr", "ncm") for k in (0, 1)]
    tuned = read_tuned(configs["domain"].parent / "seq_domain.tuned.yaml")
    for method in ("ctr", "ncm"):
        for k in (0, 1):
            results = json.loads((out / f"runs/{method}/order{k}_seed0/results.json").read_text())
            assert results["scenario"] == "domain" and results["data"]["scenario"] == "domain"
            assert results["data"]["tuned"].endswith("seq_domain.tuned.yaml") and len(results["seen_acc"]) == 2
            assert results["training"]["epochs"] == tuned["methods"][method]["training"].get("epochs", 1)
    second = json.loads((out / "runs/ctr/order1_seed0/results.json").read_text())
    assert second["tasks"] == ["nokia", "apex"]  # order 1 of the base's orders file
    assert set(second["task_scores"]) == {"msp", "energy"}

    text = (out / "table.md").read_text()
    assert text.startswith("### seq_dom: Domain-IL, 2 tasks")
    seen = table_rows(text, "Accuracy over all tasks seen so far (Domain-IL, after each task)")
    assert set(seen) == {"ctr", "ncm"} and seen["ctr"][1] == "2" and len(seen["ctr"]) == 5
    task_id = table_rows(text, "Task-id inference (Domain-IL, per-task-module methods, after the last task)")
    assert set(task_id) == {"ctr"}  # ncm's shared head infers no task
    runs_ctr = [json.loads((out / f"runs/ctr/order{k}_seed0/results.json").read_text()) for k in (0, 1)]
    for score, column in (("msp", 2), ("energy", 4)):
        mean = sum(r["task_scores"][score]["task_id_acc"][-1] for r in runs_ctr) / 2
        assert task_id["ctr"][column].startswith(f"{mean:.2f} ± ")
    assert seen["ctr"][3].startswith(f"{sum(r['seen_acc'][-1] for r in runs_ctr) / 2:.2f} ± ")
    with open(out / "scenario.csv", newline="") as fh:
        metrics = {(r["method"], r["metric"], r["after_task"]) for r in csv.DictReader(fh)}
    assert ("ncm", "seen_acc", "2") in metrics and ("ctr", "task_id_acc.energy", "final") in metrics
    assert "Task-id inference" in (out / "table.tex").read_text()

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/results.json")}
    code, _, err = run_script([*argv, "--no-tune"], capsys)  # everything done: nothing re-runs
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_class_grid_tables_the_accuracy_over_every_class_seen_after_each_task(configs, tmp_path, capsys):
    out = tmp_path / "class_grid"
    argv = ["--config", str(configs["class"]), "--output-dir", str(out), "--methods", "adapter_one", "replay"]
    argv += ["--orders", "2", "--trials", "1", "--tune-tasks", "2", "--max-train-per-task", "24"]
    code, stdout, err = run_script(argv, capsys)
    assert code == 0, err
    text = (out / "table.md").read_text()
    assert text.startswith("### seq_cls: Class-IL, 2 tasks")
    assert "choosing among every class seen so far" in text
    seen = table_rows(text, "Accuracy over all tasks seen so far (Class-IL, after each task)")
    assert set(seen) == {"adapter_one", "replay"}
    replay = [json.loads((out / f"runs/replay/order{k}_seed0/results.json").read_text()) for k in (0, 1)]
    assert all(r["scenario"] == "class" and r["task_scores"] == {} for r in replay)
    assert seen["replay"][2].startswith(f"{sum(r['seen_acc'][0] for r in replay) / 2:.2f} ± ")
    task_id = table_rows(text, "Task-id inference (Class-IL, per-task-module methods, after the last task)")
    assert set(task_id) == {"adapter_one"}
    assert "| adapter_one | 2 |" in text.split("####")[0]  # the paper-style table above them

    # a Domain-IL run among the Class-IL ones: the table refuses to mix them, and writes nothing
    domain = tmp_path / "domain_grid"
    call(
        "tables",
        ["--config", str(configs["domain"]), "--methods", "ncm", "--orders", "1", "--output-dir", str(domain)],
        capsys,
    )
    shutil.copytree(domain / "runs" / "ncm", out / "runs" / "ncm")
    (out / "table.md").unlink()
    code, _, err = call(
        "tables", ["--config", str(configs["class"]), "--output-dir", str(out), "--rebuild-only"], capsys
    )
    assert code == 2 and "mix scenarios" in err and "Domain-IL: ncm/order0_seed0" in err, err
    assert not (out / "table.md").exists()
    shutil.rmtree(out / "runs" / "ncm")

    # the Task-IL config over Class-IL runs: neither tabled under its heading nor extended
    task_argv = ["--config", str(configs["task"]), "--output-dir", str(out)]
    code, _, err = call("tables", [*task_argv, "--rebuild-only"], capsys)
    assert code == 2 and "are Class-IL, but this command's config is Task-IL" in err, err
    code, _, err = call("tables", [*task_argv, "--methods", "replay", "--orders", "1"], capsys)
    assert code == 2 and "are Class-IL" in err, err


def test_a_task_il_grid_keeps_its_tables_without_the_scenario_sections(configs, tmp_path, capsys):
    out = tmp_path / "task_grid"
    argv = ["--config", str(configs["task"]), "--methods", "frozen_heads", "--orders", "1", "--output-dir", str(out)]
    code, stdout, err = call("tables", argv, capsys)
    assert code == 0, err
    assert stdout.startswith("### seq: Task-IL, 2 tasks") and "Task-id inference" not in stdout
    assert "seen so far" not in stdout and not (out / "scenario.csv").exists()


def test_the_scenario_check_names_the_runs_of_each_scenario():
    from ctr_plugin.experiments.grid_scenarios import scenario_of
    from ctr_plugin.experiments.grid_summary import Run

    runs = {"ctr": [Run("order0_seed0", {"scenario": "class"})], "ewc": [Run("order0_seed0", {})]}
    with pytest.raises(CTRError, match=r"Class-IL: ctr/order0_seed0; Task-IL: ewc/order0_seed0"):
        scenario_of(runs)
    assert scenario_of({"ctr": runs["ctr"]}, "class") == "class" and scenario_of({}, "domain") is None
