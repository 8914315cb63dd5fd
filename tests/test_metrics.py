"""The field's metrics on hand-made accuracy matrices whose answers are worked out by hand."""

from __future__ import annotations

import pytest

from ctr_plugin.reporting.metrics import (
    average_incremental_accuracy,
    backward_transfer,
    cost_per_task,
    final_average,
    forgetting_rate,
    knowledge_transfer,
    learning_accuracy,
    max_forgetting,
    run_metrics,
    summarize,
)

# Task 0 peaks after task 1 (90 -> 95) and ends at 60; task 1 ends 10 below where it started.
A = [
    [90.0, None, None],
    [95.0, 80.0, None],
    [60.0, 70.0, 50.0],
]


def test_final_accuracy_is_the_mean_of_the_last_row():
    assert final_average(A) == pytest.approx((60 + 70 + 50) / 3)


def test_learning_accuracy_is_the_mean_of_the_diagonal():
    assert learning_accuracy(A) == pytest.approx((90 + 80 + 50) / 3)


def test_forgetting_as_the_ctr_paper_defines_it_compares_with_just_after_learning():
    assert forgetting_rate(A) == pytest.approx(((90 - 60) + (80 - 70)) / 2)  # 20


def test_chaudhrys_forgetting_compares_with_the_best_earlier_accuracy():
    assert max_forgetting(A) == pytest.approx(((95 - 60) + (80 - 70)) / 2)  # 22.5
    assert max_forgetting(A) >= forgetting_rate(A)


def test_both_forgettings_are_negative_when_later_tasks_help_and_zero_for_one_task():
    improving = [[50.0, None], [60.0, 70.0]]
    assert forgetting_rate(improving) == -10.0 and max_forgetting(improving) == -10.0
    assert forgetting_rate([[75.0]]) == 0.0 and max_forgetting([[75.0]]) == 0.0


def test_backward_transfer_is_minus_the_ctr_forgetting():
    assert backward_transfer(A) == pytest.approx(-20.0)


def test_average_incremental_accuracy_averages_each_rows_learned_tasks():
    assert average_incremental_accuracy(A) == pytest.approx((90 + (95 + 80) / 2 + (60 + 70 + 50) / 3) / 3)


def test_knowledge_transfer_is_the_final_accuracy_above_the_one_reference():
    assert knowledge_transfer(82.5, 80.0) == 2.5 and knowledge_transfer(70.0, 80.0) == -10.0


def test_summarize_holds_every_accuracy_metric_under_the_results_keys():
    F = [[80.0, None, None], [80.0, 70.0, None], [50.0, 60.0, 40.0]]
    s = summarize(A, F)
    assert s == pytest.approx(
        {
            "final_acc": 60.0,
            "final_mf1": 50.0,
            "forward_acc": 220 / 3,
            "forgetting_rate": 20.0,
            "max_forgetting": 22.5,
            "bwt": -20.0,
            "avg_incremental_acc": (90 + 87.5 + 60) / 3,
        }
    )


def test_cost_per_task_from_the_loops_records():
    results = {
        "tasks": ["a", "b", "c"],
        "train_seconds": 30.0,
        "params_added": [100, 200, 300],
        "checkpoint_bytes": [5000, 5600, 6200],
    }
    assert cost_per_task(results) == {
        "train_seconds_per_task": 10.0,
        "params_added_per_task": 200.0,
        "checkpoint_bytes_per_task": 600.0,
    }


def test_old_runs_without_cost_records_get_the_accuracy_metrics_computed_from_their_matrices():
    old = {
        "tasks": ["a", "b", "c"],
        "acc_matrix": A,
        "f1_matrix": A,
        "final_acc": 60.0,
        "forgetting_rate": 20.0,
        "train_seconds": 9.0,
    }
    m = run_metrics(old)
    assert m["max_forgetting"] == pytest.approx(22.5) and m["train_seconds_per_task"] == 3.0
    assert "params_added_per_task" not in m and "checkpoint_bytes_per_task" not in m


def test_a_run_records_the_parameters_and_checkpoint_bytes_each_task_adds(tiny_bert_dir, three_tasks, tmp_path):
    from ctr_plugin.continual.training_config import TrainingConfig
    from ctr_plugin.experiments.resume import directory_bytes
    from ctr_plugin.experiments.run import RunSettings, run

    from conftest import TINY_PLUGIN

    settings = RunSettings(
        method="adapter_one",
        encoder=tiny_bert_dir,
        training=TrainingConfig(epochs=1, progress=False),
        plugin=TINY_PLUGIN,
    )
    out = run(three_tasks, settings, tmp_path / "run")
    added, sizes = out["params_added"], out["checkpoint_bytes"]
    # One adapter per task, the same size each time, plus a head with one row per label (2, 3, 2).
    assert len(added) == 3 and added[0] == added[2] and added[1] > added[0] > 0
    assert (
        len(sizes) == 3
        and sizes[0] < sizes[1] < sizes[2]
        and sizes[2] == directory_bytes(tmp_path / "run" / "checkpoint")
    )
    cost = cost_per_task(out)
    assert (
        cost["params_added_per_task"] == sum(added) / 3
        and cost["checkpoint_bytes_per_task"] == (sizes[2] - sizes[0]) / 2
    )


def test_the_summary_refuses_a_matrix_with_an_untested_task_rather_than_averaging_what_is_there():
    from ctr_plugin.reporting.metrics import untested_tasks

    partial = [row[:] for row in A]
    partial[2][1] = None  # task 1 not tested by the final model
    assert untested_tasks(A) == [] and untested_tasks(partial) == [1]
    with pytest.raises(ValueError, match=r"no scores for task\(s\) \[1\]"):
        summarize(partial, A)
