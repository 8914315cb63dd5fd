"""Out-of-distribution replay (Kim et al.'s outlier class per task head) for the per-task-module
methods in Domain-IL and Class-IL: the heads' extra row, the replayed examples it trains on, the
task-id score that reads it, the checkpoint that keeps it, and the refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ctr_plugin.continual.learner import ContinualLearner, get_continual_model
from ctr_plugin.continual.methods import get_method, method_class
from ctr_plugin.errors import CTRError, TaskError
from ctr_plugin.experiments.resume import changed_options
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.modeling.task_inference import all_task_logits, task_probabilities

from conftest import TINY_PLUGIN, keyword_task

FAST = dict(epochs=1, batch_size=8, lr=1e-2, progress=False)


def tasks():
    """Three tasks of new classes (Class-IL)."""
    specs = [
        ("sentiment", ["good", "bad"], [["good", "great"], ["bad", "awful"]]),
        ("colour", ["red", "blue", "green"], [["red", "pink"], ["blue"], ["green"]]),
        ("animal", ["cat", "dog"], [["cat", "cow"], ["dog", "hen"]]),
    ]
    return [
        dataclasses.replace(keyword_task(name, words, n_train=24, n_test=12), label_names=labels)
        for name, labels, words in specs
    ]


def learner_for(method: str, tiny_bert_dir: str, scenario: str = "class", **options) -> ContinualLearner:
    torch.manual_seed(0)
    config = dataclasses.replace(TINY_PLUGIN, plugin_type=method_class(method).plugin_type)
    model = get_continual_model(tiny_bert_dir, config, method=method)
    return ContinualLearner(model, get_method(method, options), scenario=scenario, **FAST)


@pytest.mark.parametrize("method", ["ctr", "adapter_one"])
def test_each_head_gets_an_outlier_row_trained_on_earlier_tasks_replayed_as_the_current_task(method, tiny_bert_dir):
    learner = learner_for(method, tiny_bert_dir, ood_replay=16, ood_batch_size=4)
    seen = []  # (task, labels, task ids) of every training batch
    loss = learner.method.loss

    def spy(model, logits, labels, step):
        seen.append((step.task, logits.shape[-1], labels.tolist(), step.inputs["task_ids"].tolist()))
        return loss(model, logits, labels, step)

    learner.method.loss = spy
    data = tasks()
    for task in data[:2]:
        learner.learn_task(task.name, task)
    model = learner.model
    assert [h.out_features for h in model.heads] == [3, 4]  # each task's labels + the outlier row
    assert model.scenario.outlier_class and model.scenario.to_config()["outlier_class"] is True
    first = [s for s in seen if s[0] == 0]
    second = [s for s in seen if s[0] == 1]
    assert all(width == 3 and 2 not in labels for _, width, labels, _ in first)  # no memory yet: no outlier label
    for _, width, labels, task_ids in second:  # training sees the outlier row; replayed examples are labelled with it
        assert width == 4 and labels[-4:] == [3, 3, 3, 3] and set(task_ids) == {1}
        assert all(y < 3 for y in labels[:-4])
    assert {t for t, ex in learner.method.ood_memory.items()} == {0, 1} and len(learner.method.ood_memory[0]) == 8
    # a forward given the task, outside training, reads the task's own labels only
    batch = model.tokenize(["red cat", "good dog"])
    with torch.no_grad():
        model.eval()
        assert model(**batch, task_ids=torch.tensor([1, 1])).logits.shape == (2, 3)
        with model.scenario.outlier_logits():
            assert model(**batch, task_ids=torch.tensor([1, 1])).logits.shape == (2, 4)
    results = learner.results.to_dict()
    assert results["task_id_acc"] and len(results["seen_acc"]) == 2


def test_task_inference_takes_each_heads_outlier_row_out_and_msp_reads_it(tiny_bert_dir):
    learner = learner_for("ctr", tiny_bert_dir, ood_replay=16)
    for task in tasks():
        learner.learn_task(task.name, task)
    model = learner.model.eval()
    batch = model.tokenize(["good cat", "blue hen", "awful green"], max_length=32)
    with torch.no_grad(), model.scenario.withholding():
        logits, outliers = all_task_logits(model, batch)
    assert logits.shape == (3, 3, 3) and outliers.shape == (3, 3)
    with torch.no_grad(), model.scenario.outlier_logits():
        for t, names in enumerate(model.label_names):
            own = model(**batch, task_ids=torch.full((3,), t)).logits  # (3, K_t + 1)
            k = len(names)
            assert torch.allclose(logits[:, t, :k], own[:, :k], atol=1e-5)
            assert torch.allclose(outliers[:, t], own[:, k], atol=1e-5)
            assert torch.isinf(logits[:, t, k:]).all()
    # msp: each task's largest own-class probability under the softmax that includes its outlier row
    msp = torch.stack(
        [
            torch.cat((logits[:, t, : len(n)], outliers[:, t, None]), -1).softmax(-1)[:, :-1].amax(-1)
            for t, n in enumerate(model.label_names)
        ],
        -1,
    )
    assert torch.allclose(task_probabilities(logits, "msp", outliers), msp / msp.sum(-1, keepdim=True))
    energy = logits.logsumexp(-1).softmax(-1)  # energy reads the own labels' logits only
    assert torch.allclose(task_probabilities(logits, "energy", outliers), energy)


def test_a_checkpoint_keeps_the_outlier_rows_and_predicts_as_the_run_did(tiny_bert_dir, tmp_path):
    learner = learner_for("adapter_one", tiny_bert_dir, ood_replay=16)
    for task in tasks()[:2]:
        learner.learn_task(task.name, task)
    learner.save_pretrained(tmp_path / "ckpt")
    loaded = ContinualModel.from_pretrained(tmp_path / "ckpt", encoder=tiny_bert_dir)
    assert loaded.scenario.outlier_class and [h.out_features for h in loaded.heads] == [3, 4]
    texts = ["red cat", "good dog", "bad green"]
    before = learner.model.predict(texts)
    after = loaded.predict(texts)
    assert [(p.label, p.task) for p in before] == [(p.label, p.task) for p in after]
    assert "outlier class" in (tmp_path / "ckpt" / "README.md").read_text()


def test_ood_replay_is_refused_where_no_task_is_inferred(tiny_bert_dir):
    with pytest.raises(TaskError, match="task id is given at test time"):
        learner_for("ctr", tiny_bert_dir, scenario="task", ood_replay=16)
    learner = learner_for("ctr", tiny_bert_dir, ood_replay=16)
    assert not learner.method.resumable and learner.method.needs_task_data  # its memory is not in a checkpoint
    assert learner_for("ctr", tiny_bert_dir).method.resumable  # off (the default): the method as it was
    with pytest.raises(CTRError, match="ood_replay"):
        get_method("ctr", {"ood_replay": "-1"})


def test_runs_recorded_before_the_option_existed_still_match_its_default():
    old = {"method": "ctr", "method_options": {"mask_lambda": 0.75, "anneal": "epoch", "mask_lr_scale": 1.0}}
    now = {"method": "ctr", "method_options": get_method("ctr").options()}
    assert "ood_replay" in now["method_options"]
    assert changed_options(old, now, ("method", "method_options")) == []
    now["method_options"]["ood_replay"] = 50
    assert changed_options(old, now, ("method", "method_options")) == ["method_options.ood_replay: None then, 50 now"]


def test_the_off_on_summary_pairs_runs_by_order_and_reads_the_last_row(tmp_path):
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import ood_replay_summary

    def write(arm, run, msp_acc, msp_task):
        folder = tmp_path / arm / "runs" / "ctr" / run
        folder.mkdir(parents=True)
        scores = {
            "msp": {"seen_acc": [90.0, msp_acc], "task_id_acc": [100.0, msp_task]},
            "energy": {"seen_acc": [90.0, 50.0], "task_id_acc": [100.0, 60.0]},
        }
        results = {"tasks": ["a", "b"], "seen_acc": [90.0, msp_acc], "task_scores": scores}
        (folder / "results.json").write_text(json.dumps(results))

    write("off", "order0_seed0", 30.0, 40.0)
    write("off", "order1_seed0", 34.0, 44.0)
    write("on", "order0_seed0", 40.0, 50.0)
    write("on", "order1_seed0", 40.0, 52.0)
    write("on", "order2_seed0", 99.0, 99.0)  # no partner in "off": in the arm's mean, not in the pairs
    assert ood_replay_summary.main([str(tmp_path)]) == 0
    text = (tmp_path / "table.md").read_text()
    assert "| ctr | msp | off | 2 | 32.00 [" in text
    assert "| ctr | msp | on | 3 | 59.67 [" in text
    assert "| ctr | msp | accuracy | 2 | +8.00 [" in text  # (40 - 30 + 40 - 34) / 2
    assert "| ctr | msp | task-id accuracy | 2 | +9.00 [" in text
    assert "| ctr | energy | accuracy | 2 | +0.00" in text
