"""Paper-style tables: built from hand-made results.json files with known numbers, and
ctr-tables end to end on a tiny encoder (runs, skipping, rebuilding)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ctr_plugin.experiments.grid_summary import (
    compare_methods,
    group_of,
    load_runs,
    one_reference,
    summarize_runs,
)
from ctr_plugin.experiments.grid_tables import build_tables
from ctr_plugin.reporting.metrics import summarize

from conftest import keyword_task
from test_cli import call, write_csv


def write_run(grid: Path, method: str, run: str, acc, f1=None, complete: bool = True, **extra) -> None:
    f1 = f1 or acc
    T = len(acc)
    data = {
        "tasks": ["a", "b", "c"][:T],
        "acc_matrix": acc,
        "f1_matrix": f1,
        "completed_tasks": T if complete else T - 1,
        "method": method,
    }
    if complete:
        data |= summarize(acc, f1) | {"wall_seconds": 1.0}
    path = grid / "runs" / method / run
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(data | extra))


@pytest.fixture
def grid(tmp_path) -> Path:
    # ctr: final acc 80 and 90 (mean 85, std 7.07), forgetting (90-80)=10 and (90-90)=0 -> 5.
    write_run(tmp_path, "ctr", "order0_seed0", [[90.0, None], [80.0, 80.0]])
    write_run(tmp_path, "ctr", "order1_seed0", [[90.0, None], [90.0, 90.0]])
    write_run(tmp_path, "ctr", "order2_seed0", [[10.0, None], [10.0, None]], complete=False)  # ignored
    # adapter_one: final acc 70 in both runs, no forgetting.
    write_run(tmp_path, "adapter_one", "order0_seed0", [[70.0, None], [70.0, 70.0]], [[60.0, None], [60.0, 60.0]])
    write_run(tmp_path, "adapter_one", "order1_seed0", [[70.0, None], [70.0, 70.0]], [[60.0, None], [60.0, 60.0]])
    write_run(tmp_path, "bert_ncl", "order0_seed0", [[80.0, None], [50.0, 90.0]])
    return tmp_path


def test_rows_hold_mean_std_ci_forgetting_and_transfer_against_the_one_variant(grid):
    runs = load_runs(grid)
    assert {m: len(r) for m, r in runs.items()} == {"ctr": 2, "adapter_one": 2, "bert_ncl": 1}
    rows = {r.method: r for r in summarize_runs(runs)}
    ctr = rows["ctr"]
    assert ctr.runs == 2 and ctr.group == "CTR"
    assert ctr.mean["final_acc"] == pytest.approx(85.0) and ctr.std["final_acc"] == pytest.approx(7.0711, abs=1e-3)
    # two runs: t_{1, 0.975} = 12.7062, so 85 ± 12.7062 * 7.0711 / sqrt(2) = 85 ± 63.53
    e = ctr.estimates["final_acc"]
    assert (e.ci_low, e.ci_high) == pytest.approx((85 - 63.531, 85 + 63.531), abs=1e-2)
    assert ctr.mean["forgetting_rate"] == pytest.approx(5.0) and ctr.mean["forward_acc"] == pytest.approx(87.5)
    assert ctr.mean["max_forgetting"] == pytest.approx(5.0) and ctr.mean["avg_incremental_acc"] == pytest.approx(
        (90 + 80 + 90 + 90) / 4
    )
    assert ctr.transfer.mean == pytest.approx(15.0) and ctr.transfer.n == 2 and ctr.reference == "adapter_one"
    assert ctr.mean_acc_matrix == [[90.0, None], [85.0, 85.0]]
    one = rows["adapter_one"]
    assert one.mean["final_mf1"] == 60.0 and one.std["final_acc"] == 0.0 and one.transfer.mean == 0.0
    assert rows["bert_ncl"].transfer is None  # its reference, bert_one, was not run
    assert rows["bert_ncl"].mean["forgetting_rate"] == 30.0 and rows["bert_ncl"].estimates["final_acc"].ci_low is None
    assert [r.method for r in summarize_runs(runs)] == ["adapter_one", "bert_ncl", "ctr"]  # grouped like the paper


def test_knowledge_transfer_uses_only_runs_matched_by_order_and_seed(tmp_path):
    write_run(tmp_path, "ctr", "order0_seed0", [[90.0, None], [80.0, 80.0]])
    write_run(tmp_path, "ctr", "order1_seed0", [[90.0, None], [60.0, 60.0]])  # no adapter_one run to match
    write_run(tmp_path, "adapter_one", "order0_seed0", [[75.0, None], [75.0, 75.0]])
    write_run(tmp_path, "adapter_one", "order2_seed0", [[10.0, None], [10.0, 10.0]])
    ctr = {r.method: r for r in summarize_runs(load_runs(tmp_path))}["ctr"]
    assert ctr.transfer.mean == 5.0 and ctr.transfer.n == 1


def test_groups_and_one_references_come_from_the_method_classes():
    assert [
        one_reference(m) for m in ("ctr", "adapter_hat", "ewc", "bert_ncl", "bert_mtl", "lora_ncl", "lora_one")
    ] == ["adapter_one", "adapter_one", "adapter_one", "bert_one", "bert_one", "lora_one", "lora_one"]
    assert [group_of(m) for m in ("ctr", "adapter_hat", "bert_one", "bert_mtl", "replay", "not_a_method")] == [
        "CTR",
        "continual baselines",
        "non-continual",
        "non-continual",
        "continual baselines",
        "other",
    ]
    assert one_reference("not_a_method") is None


def test_paired_comparison_of_ctr_with_each_method_gives_wins_and_a_verdict(tmp_path):
    for k, (ctr, one, ncl) in enumerate([(80.0, 70.0, 79.0), (84.0, 73.0, 86.0), (90.0, 81.0, 88.0)]):
        write_run(tmp_path, "ctr", f"order{k}_seed0", [[ctr, None], [ctr, ctr]])
        write_run(tmp_path, "adapter_one", f"order{k}_seed0", [[one, None], [one, one]])
        write_run(tmp_path, "adapter_ncl", f"order{k}_seed0", [[ncl, None], [ncl, ncl]])
    write_run(tmp_path, "frozen_heads", "order0_seed0", [[60.0, None], [60.0, 60.0]])  # one matched run only
    got = {(c.method, c.metric): c for c in compare_methods(load_runs(tmp_path))}
    vs_one = got["adapter_one", "final_acc"]  # differences 10, 11, 9
    assert (
        vs_one.verdict == "better"
        and (vs_one.wins, vs_one.losses, vs_one.ties) == (3, 0, 0)
        and vs_one.difference.mean == 10.0
    )
    vs_ncl = got["adapter_ncl", "final_acc"]  # differences 1, -2, 2
    assert vs_ncl.verdict == "within noise" and (vs_ncl.wins, vs_ncl.losses) == (2, 1)
    assert got["frozen_heads", "final_acc"].verdict == "too few runs"
    assert {m for m, _ in got} == {
        "adapter_one",
        "adapter_ncl",
        "frozen_heads",
    }  # ctr is the reference, never compared with itself

    build_tables(tmp_path, "tiny")
    md = (tmp_path / "table.md").read_text()
    assert "| ctr | adapter_one | 3 | +10.00 [+7.52, +12.48] | 3 / 0 / 0 | better |" in md
    assert "| ctr | adapter_ncl | 3 | +0.33 [" in md and "| within noise |" in md
    rows = list(csv.DictReader((tmp_path / "comparisons.csv").open()))
    assert {(r["method"], r["metric"], r["verdict"]) for r in rows} >= {
        ("adapter_one", "final_acc", "better"),
        ("adapter_ncl", "final_mf1", "within noise"),
    }
    assert (tmp_path / "comparisons.png").stat().st_size > 1000


def test_cost_table_and_sizes_come_from_what_the_runs_recorded(tmp_path):
    cost = {"train_seconds": 30.0, "params_added": [100, 300], "checkpoint_bytes": [5000, 5600]}
    write_run(
        tmp_path,
        "ctr",
        "order0_seed0",
        [[90.0, None], [80.0, 80.0]],
        task_sizes={"a": {"train": 200, "test": 76}, "b": {"train": 200, "test": 300}},
        **cost,
    )
    write_run(
        tmp_path,
        "ctr",
        "order1_seed0",
        [[90.0, None], [80.0, 80.0]],
        task_sizes={"b": {"train": 200, "test": 300}, "a": {"train": 180, "test": 76}},
        **cost,
    )
    write_run(
        tmp_path, "replay", "order0_seed0", [[90.0, None], [80.0, 80.0]], train_seconds=10.0
    )  # an older run: no params or bytes
    rows = {r.method: r for r in summarize_runs(load_runs(tmp_path))}
    assert rows["ctr"].mean["train_seconds_per_task"] == 15.0 and rows["ctr"].mean["params_added_per_task"] == 200.0
    assert (
        rows["ctr"].mean["checkpoint_bytes_per_task"] == 600.0
        and "params_added_per_task" not in rows["replay"].estimates
    )
    build_tables(tmp_path)
    md = (tmp_path / "table.md").read_text()
    assert "| ctr | 2 | 15 ± 0 | 200 ± 0 | 600 ± 0 |" in md and "| replay | 1 | 5 ± 0 | — | — |" in md
    assert "a 180–200 / 76, b 200 / 300" in md


def test_build_tables_writes_markdown_latex_csv_and_plots(grid):
    build_tables(grid, "tiny")
    md = (grid / "table.md").read_text()
    assert "| ctr | 2 | 85.00 ± 7.07 | [21.47, 148.53] |" in md and "+15.00 [-48.53, +78.53] vs adapter_one" in md
    assert md.index("*non-continual*") < md.index("*continual baselines*") < md.index("*CTR*")
    assert "forgetting (Chaudhry)" in md and "Paired comparison" in md and "Cost per task" in md
    tex = (grid / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and r"85.00 $\pm$ 7.07" in tex and r"adapter\_one" in tex and r"95 \% CI" in tex
    rows = {r["method"]: r for r in csv.DictReader((grid / "table.csv").open())}
    assert float(rows["ctr"]["final_acc_mean"]) == 85.0 and float(rows["ctr"]["transfer"]) == 15.0
    assert (
        float(rows["ctr"]["final_acc_ci_low"]) == pytest.approx(21.47, abs=1e-2)
        and float(rows["ctr"]["bwt_mean"]) == -5.0
    )
    assert rows["bert_ncl"]["transfer"] == "" and rows["bert_ncl"]["final_acc_ci_low"] == ""
    for png in (
        "heatmaps/ctr.png",
        "heatmaps/adapter_one.png",
        "heatmaps/bert_ncl.png",
        "final_scores.png",
        "comparisons.png",
    ):
        assert (grid / png).stat().st_size > 1000, png


def test_ctr_tables_runs_the_grid_skips_finished_runs_and_rebuilds(tiny_bert_dir, tmp_path, capsys):
    specs = []
    for name, keywords in (
        ("sentiment", [["good", "great"], ["bad", "awful"]]),
        ("colour", [["red", "pink"], ["blue", "green"]]),
    ):
        task = keyword_task(name, keywords, n_train=40)
        rows = [(x, task.label_names[y]) for x, y in zip(task.train.texts, task.train.labels)]
        specs.append(
            f"  - {{name: {name}, source: files, train: {write_csv(tmp_path / f'{name}.csv', rows)}, max_test: 3}}"
        )
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "name: tiny\ntraining: {epochs: 1, lr: 1.0e-2, adapter_size: 16}\ntasks:\n" + "\n".join(specs) + "\n"
    )
    (tmp_path / "tiny.orders.yaml").write_text("orders:\n  - [0, 1]\n  - [1, 0]\n")
    out = tmp_path / "grid"
    argv = [
        "--config",
        str(config),
        "--methods",
        "frozen_heads",
        "replay",
        "--orders",
        "2",
        "--seeds",
        "1",
        "--encoder",
        tiny_bert_dir,
        "--output-dir",
        str(out),
        "--max-length",
        "16",
        "--method-arg",
        "replay:memory_size=8",
    ]
    code, stdout, err = call("tables", argv, capsys)
    assert code == 0, err
    runs = sorted(p.relative_to(out).as_posix() for p in out.glob("runs/*/*/results.json"))
    assert runs == [f"runs/{m}/order{k}_seed0/results.json" for m in ("frozen_heads", "replay") for k in (0, 1)]
    second = json.loads((out / "runs/frozen_heads/order1_seed0/results.json").read_text())
    assert second["tasks"] == ["colour", "sentiment"] and second["data"]["order"] == 1
    replay = json.loads((out / "runs/replay/order0_seed0/results.json").read_text())
    assert replay["training"]["max_length"] == 16 and replay["method_options"]["memory_size"] == 8
    assert replay["task_sizes"]["sentiment"]["test"] > 3  # the config's test cap is lifted by default
    assert "| frozen_heads | 2 |" in stdout and (out / "table.csv").is_file()
    train, test = replay["task_sizes"]["sentiment"]["train"], replay["task_sizes"]["sentiment"]["test"]
    assert f"sentiment {train} / {test}" in stdout  # the sizes are stated

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/results.json")}
    (out / "table.md").unlink()
    code, _, err = call("tables", argv, capsys)  # everything done: nothing re-runs
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and (out / "table.md").is_file()
    code, stdout, _ = call("tables", ["--config", str(config), "--output-dir", str(out), "--rebuild-only"], capsys)
    assert code == 0 and "| replay | 2 |" in stdout

    # the same grid under other options, or on other data: the old runs are not counted as its own
    table = (out / "table.md").read_text()
    code, stdout, err = call("tables", [*argv, "--epochs", "2"], capsys)
    assert code == 2 and "training.epochs: 1 then, 2 now" in err and "order0_seed0" in err, err
    assert stdout == "" and (out / "table.md").read_text() == table
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    sentiment = tmp_path / "sentiment.csv"
    sentiment.write_text(sentiment.read_text().replace("good", "fine", 1))
    code, stdout, err = call("tables", argv, capsys)
    assert code == 2 and "the data of task 'sentiment'" in err and str(sentiment) in err, err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_ctr_tables_rejects_unknown_methods_before_training(tmp_path, capsys):
    code, _, err = call("tables", ["--methods", "gem", "--output-dir", str(tmp_path)], capsys)
    assert code == 2 and "Unknown method 'gem'" in err
