"""Tracking and curves: --report-to tensorboard writes event files (read back here, offline) with
the loss per step, the validation curves per epoch and the accuracy matrix after each task; the
same per-epoch curves are saved in results.json and drawn beside the heatmap."""

from __future__ import annotations

import importlib.util
import json

import pytest

from test_cli import TINY, call, task_csv


def _event_scalars(directory) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in directory.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return scalars


def test_tensorboard_gets_the_loss_the_curves_and_the_matrix_and_results_json_keeps_the_curves(
    tiny_bert_dir, tmp_path, capsys
):
    pytest.importorskip("tensorboard")
    files = [
        task_csv(tmp_path, "sentiment", [["good", "great"], ["bad", "awful"]]),
        task_csv(tmp_path, "colour", [["red"], ["blue"]]),
    ]
    out = tmp_path / "run"
    argv = [
        *TINY,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--datasets",
        *files,
        "--encoder",
        tiny_bert_dir,
        "--output-dir",
        str(out),
        "--report-to",
        "tensorboard",
    ]
    code, _, err = call("train", argv, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    curves = results["curves"]
    assert len(curves) == 2 and all(
        len(c[k]) == 2 for c in curves for k in ("train_loss", "validation_loss", "validation_accuracy")
    )
    steps_per_task = [c["steps"] for c in curves]
    assert steps_per_task == [
        2 * -(-results["task_sizes"][t]["train"] // 8) for t in results["tasks"]
    ]  # epochs x batches
    assert results["train_steps"] == sum(steps_per_task)
    assert (out / "training_curves.png").stat().st_size > 1000 and (out / "accuracy_matrix.png").is_file()

    scalars = _event_scalars(out / "tracking")
    assert [step for step, _ in sorted(scalars["train/loss"])] == list(range(1, results["train_steps"] + 1))
    for task, curve, first in zip(results["tasks"], curves, (0, steps_per_task[0])):
        logged = sorted(scalars[f"{task}/validation_accuracy"])
        assert [v for _, v in logged] == pytest.approx(curve["validation_accuracy"], abs=0.01)
        assert [s for s, _ in logged] == [
            first + steps_per_task[results["tasks"].index(task)] // 2 * (e + 1) for e in range(2)
        ]
        assert [v for _, v in sorted(scalars[f"{task}/validation_loss"])] == pytest.approx(
            curve["validation_loss"], abs=1e-4
        )
    # the accuracy matrix, row by row: after task 1 the first task; after task 2 both
    matrix = results["acc_matrix"]
    assert [s for s, _ in sorted(scalars["test_accuracy/sentiment"])] == [steps_per_task[0], results["train_steps"]]
    assert [v for _, v in sorted(scalars["test_accuracy/sentiment"])] == pytest.approx(
        [matrix[0][0], matrix[1][0]], abs=0.01
    )
    assert sorted(scalars["test_accuracy/colour"])[0] == (
        results["train_steps"],
        pytest.approx(matrix[1][1], abs=0.01),
    )


def test_a_tracker_that_is_not_installed_is_refused_before_anything_is_written(tiny_bert_dir, tmp_path, capsys):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    out = tmp_path / "run"
    code, _, err = call(
        "train",
        [
            *TINY,
            "--datasets",
            task_csv(tmp_path, "colour", [["red"], ["blue"]]),
            "--encoder",
            tiny_bert_dir,
            "--output-dir",
            str(out),
            "--report-to",
            "wandb",
        ],
        capsys,
    )
    assert code == 2 and "pip install wandb" in err and not out.exists()


def drawn_curves(curves: list[dict], path, monkeypatch) -> tuple[list[str], list[int], list[int]]:
    """What ``run_report.plot_curves`` draws: the task names written over the curves, and the number
    of points of each line of the loss and the accuracy plots."""
    import matplotlib.pyplot as plt

    from ctr_plugin.reporting.run_report import plot_curves

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), close(fig)))
    plot_curves(curves, path)
    assert path.stat().st_size > 1000
    loss_ax, acc_ax = figures[0].axes[:2]

    def points(ax) -> list[int]:  # the curves have markers; the lines where tasks begin have none
        return [len(line.get_xdata()) for line in ax.lines if line.get_marker() != "None"]

    return [t.get_text() for t in loss_ax.texts], points(loss_ax), points(acc_ax)


def test_curves_of_a_task_without_validation_data_draw_the_training_loss_alone(tmp_path, monkeypatch):
    curves = [
        {
            "task": "given",
            "train_loss": [0.7, 0.5, 0.4],
            "validation_loss": [],
            "validation_accuracy": [],
            "steps": 6,
        },  # from Python, no validation
        {
            "task": "validated",
            "train_loss": [0.6, 0.3],
            "validation_loss": [0.65, 0.4],
            "validation_accuracy": [55.0, 80.0],
            "steps": 4,
        },
    ]
    names, loss_lines, acc_lines = drawn_curves(curves, tmp_path / "curves.png", monkeypatch)
    assert names == ["given", "validated"] and loss_lines == [3, 2, 2] and acc_lines == [2]


def test_curves_name_their_task_and_results_json_checks_the_names(tmp_path, monkeypatch):
    import ctr_plugin.reporting.results as results_file

    curve = {"train_loss": [0.6, 0.3], "validation_loss": [0.65, 0.4], "validation_accuracy": [55.0, 80.0], "steps": 4}
    # a continued run: a and b re-tested from the checkpoint, only c trained here
    assert drawn_curves([curve | {"task": "c"}], tmp_path / "named.png", monkeypatch)[0] == ["c"]
    assert drawn_curves([curve | {"task": "a+b"}], tmp_path / "joint.png", monkeypatch)[0] == ["a+b"]
    matrix = [[80.0, None], [70.0, 90.0]]
    data = {"tasks": ["a", "b"], "acc_matrix": matrix, "f1_matrix": matrix, "completed_tasks": 2}
    assert results_file.validate(data | {"curves": [curve | {"task": "a"}, curve | {"task": "b"}]}) == []
    assert results_file.validate(data | {"curves": [curve | {"task": "a+b"}]}) == []
    assert "names task 'z'" in results_file.validate(data | {"curves": [curve | {"task": "z"}]})[0]
    assert "names task None" in results_file.validate(data | {"curves": [curve]})[0]
    assert (
        "one value per epoch"
        in results_file.validate(data | {"curves": [curve | {"task": "a", "validation_loss": [0.1]}]})[0]
    )


def test_a_results_json_of_an_earlier_version_reads_with_the_keys_it_lacks_as_not_recorded(tmp_path):
    import ctr_plugin.reporting.results as results_file
    from ctr_plugin.continual.progress import ContinualResults
    from ctr_plugin.reporting.metrics import cost_per_task

    matrix = [[80.0, None], [70.0, 90.0]]
    earlier = {
        "tasks": ["a", "b"],
        "acc_matrix": matrix,
        "f1_matrix": matrix,
        "completed_tasks": 2,
        "train_seconds": 10.0,
        "epochs_kept": [1, 1],
    }
    (tmp_path / "results.json").write_text(json.dumps(earlier))
    data = results_file.read(tmp_path)
    assert data == earlier | {
        "params_added": [],
        "checkpoint_bytes": [],
        "curves": [],
        "train_steps": 0,
        "scenario": "task",  # every run before the scenarios was task-incremental
        "seen_acc": [],
        "task_id_acc": [],
        "task_scores": {},
    }
    assert cost_per_task(data) == {"train_seconds_per_task": 5.0}  # the costs it did not record stay out of the tables
    assert ContinualResults.from_dict(earlier).to_dict()["curves"] == []
    recorded = earlier | {
        "curves": [{"task": "a", "train_loss": [0.5], "steps": 3}, {"task": "b", "train_loss": [0.4], "steps": 2}]
    }
    assert results_file.upgrade(recorded)["train_steps"] == 5
