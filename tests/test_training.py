"""The continual loop and ctr-train end to end on tiny encoders and synthetic tasks."""

from __future__ import annotations

import json

import pytest
import torch

from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.experiments.run import RunSettings, run
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.reporting.metrics import forgetting_rate, summarize

from conftest import TINY_PLUGIN, keyword_task

FAST = TrainingConfig(epochs=2, lr=1e-2, progress=False)


def test_metrics_follow_the_paper_definitions():
    acc = [[90.0, None, None], [80.0, 70.0, None], [60.0, 65.0, 50.0]]
    summary = summarize(acc, acc)
    assert summary["final_acc"] == pytest.approx((60 + 65 + 50) / 3)
    assert summary["forward_acc"] == pytest.approx((90 + 70 + 50) / 3)
    assert summary["forgetting_rate"] == pytest.approx(((90 - 60) + (70 - 65)) / 2)
    assert summary["bwt"] == -summary["forgetting_rate"]
    assert forgetting_rate([[75.0]]) == 0.0


def test_three_task_run_writes_complete_results(tiny_bert_dir, three_tasks, tmp_path):
    out = run(three_tasks, RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN), tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results == json.loads(json.dumps(out))
    assert results["tasks"] == ["sentiment", "colour", "animal"]
    for key in ("acc_matrix", "f1_matrix"):
        m = results[key]
        assert [[v is None for v in row] for row in m] == [
            [False, True, True],
            [False, False, True],
            [False, False, False],
        ]
        assert all(0 <= v <= 100 for row in m for v in row if v is not None)
    for key in ("final_acc", "final_mf1", "forward_acc", "forgetting_rate", "bwt", "train_seconds"):
        assert isinstance(results[key], float), key
    assert results["final_acc"] == pytest.approx(sum(results["acc_matrix"][-1]) / 3)
    assert (results["method"], results["encoder"], results["seed"]) == ("ctr", tiny_bert_dir, 0)
    assert (tmp_path / "run" / "accuracy_matrix.png").stat().st_size > 1000
    loaded = ContinualModel.from_pretrained(tmp_path / "run" / "checkpoint")
    assert loaded.task_names == results["tasks"]
    # the checkpoint's model card (README.md) shows the tasks, the final accuracy matrix and the metrics
    card = (tmp_path / "run" / "checkpoint" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ctr_plugin")
    last = " | ".join(f"{v:.2f}" for v in results["acc_matrix"][-1])
    assert f"| animal | {last} |" in card and f"| final_acc | {results['final_acc']:.2f} |" in card


def test_encoder_weights_are_bit_identical_after_training(tiny_bert_dir, three_tasks, tmp_path):
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    from ctr_plugin.continual.loop import run_sequence
    from ctr_plugin.continual.methods import get_method

    method = get_method("ctr")
    model = method.build_model(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    run_sequence(model, method, three_tasks[:2], FAST)
    after = encoder.state_dict()
    norms = [k for k in before if "output.LayerNorm" in k]
    assert norms, "the sublayer LayerNorms are trained by default (the paper's choice)"
    for key, value in before.items():
        if key not in norms:
            assert torch.equal(after[key], value), key
    assert any(not torch.equal(after[k], before[k]) for k in norms)


def test_the_loop_learns_an_easy_task(tiny_bert_dir, tmp_path):
    easy = keyword_task("easy", [["good", "great", "nice"], ["bad", "awful", "poor"]], n_train=160, n_test=60)
    cfg = TrainingConfig(epochs=6, lr=1e-2, progress=False)
    out = run([easy], RunSettings(encoder=tiny_bert_dir, training=cfg, plugin=TINY_PLUGIN), tmp_path / "run")
    # Chance is 50 %; 65 % of 60 test examples is beyond chance at p < 0.01. (A random tiny
    # encoder is a weak feature extractor: a fully converged logistic-regression probe on its
    # mean-pooled states reaches 93 %.)
    assert out["acc_matrix"][0][0] >= 65.0, out["acc_matrix"]


def test_same_seed_gives_the_same_results(tiny_bert_dir, three_tasks, tmp_path):
    settings = RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN)
    a = run(three_tasks[:2], settings, tmp_path / "a")
    b = run(three_tasks[:2], settings, tmp_path / "b")
    assert a["acc_matrix"] == b["acc_matrix"] and a["f1_matrix"] == b["f1_matrix"]


def test_a_loaded_checkpoint_goes_on_learning_new_tasks(tiny_bert_dir, three_tasks, tmp_path):
    run(three_tasks[:2], RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN), tmp_path / "first")
    settings = RunSettings(training=FAST, from_checkpoint=str(tmp_path / "first" / "checkpoint"))
    out = run(three_tasks[2:], settings, tmp_path / "second")
    assert out["tasks"] == ["animal"] and out["continued_from"].endswith("checkpoint")
    second = ContinualModel.from_pretrained(tmp_path / "second" / "checkpoint")
    assert second.task_names == ["sentiment", "colour", "animal"]
    assert second.predict(["a hen"], task="animal")[0].label in ("class_0", "class_1")


def test_a_continued_run_names_the_curve_of_each_task_it_trains(tiny_bert_dir, three_tasks, tmp_path, monkeypatch):
    from test_tracking import drawn_curves

    import ctr_plugin.reporting.results as results_file

    run(three_tasks[:1], RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN), tmp_path / "first")
    settings = RunSettings(training=FAST, from_checkpoint=str(tmp_path / "first" / "checkpoint"))
    out = run(three_tasks[:2], settings, tmp_path / "second")  # the first task re-tested, the second trained
    assert out["tasks"] == ["sentiment", "colour"] and [c["task"] for c in out["curves"]] == ["colour"]
    assert results_file.read(tmp_path / "second") == out
    assert drawn_curves(out["curves"], tmp_path / "curves.png", monkeypatch)[0] == ["colour"]
