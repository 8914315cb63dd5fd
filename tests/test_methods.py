"""Every continual-learning method on a tiny encoder: it runs two tasks through the one loop and
writes complete results, and the behaviour that defines it holds."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ctr_plugin.continual.evaluation import evaluate
from ctr_plugin.continual.loop import run_sequence
from ctr_plugin.continual.methods import METHODS, get_method
from ctr_plugin.continual.methods.base import shared_parameters
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.run import RunSettings, run
from ctr_plugin.modeling.model import ContinualModel

from conftest import TINY_PLUGIN, keyword_task

FAST = TrainingConfig(epochs=1, lr=1e-2, batch_size=8, progress=False)


@pytest.fixture
def two_tasks():
    return [
        keyword_task("sentiment", [["good", "great"], ["bad", "awful"]], n_train=24, n_test=12),
        keyword_task("colour", [["red", "pink"], ["blue", "green"], ["cat", "dog"]], n_train=24, n_test=12),
    ]


def build(name: str, encoder_dir: str, **options):
    torch.manual_seed(0)
    method = get_method(name, options)
    encoder, tokenizer = load_encoder(encoder_dir)
    return method, method.build_model(encoder, tokenizer, TINY_PLUGIN, encoder_dir)


def task0_logits(model: ContinualModel, method, tasks) -> torch.Tensor:
    """Task 0's test logits as the loop would test them (after the method's before_evaluate)."""
    method.before_evaluate(model, 0)
    model.eval()
    test = tasks[0].test
    with torch.no_grad():
        batch = model.tokenize(test.texts)
        return model(**batch, task_ids=torch.zeros(len(test), dtype=torch.long)).logits.clone()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_two_tasks_and_writes_complete_results(name, tiny_bert_dir, two_tasks, tmp_path):
    method = METHODS[name]
    assert method.plugin_type
    out = run(
        two_tasks, RunSettings(method=name, encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN), tmp_path / "run"
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (
        results["method"] == name
        and results["completed_tasks"] == 2
        and results["method_options"] == get_method(name).options()
    )
    assert [[v is None for v in row] for row in results["acc_matrix"]] == [[False, True], [False, False]]
    for key in ("final_acc", "final_mf1", "forward_acc", "forgetting_rate", "bwt", "wall_seconds"):
        assert isinstance(results[key], float), key
    # The checkpoint loads onto a fresh encoder and serves the last task as the run tested it.
    loaded = ContinualModel.from_pretrained(tmp_path / "run" / "checkpoint")
    assert loaded.task_names == ["sentiment", "colour"]
    assert evaluate(loaded, two_tasks[1].test, 1, FAST)["acc"] == pytest.approx(out["acc_matrix"][1][1], abs=0.01)


@pytest.mark.parametrize(
    "name, unchanged",
    [("adapter_one", True), ("frozen_heads", True), ("bert_one", True), ("lora_one", True), ("adapter_ncl", False)],
)
def test_one_variants_and_frozen_heads_never_change_an_earlier_tasks_predictions(
    name, unchanged, tiny_bert_dir, two_tasks
):
    method, model = build(name, tiny_bert_dir)
    seen = []
    run_sequence(
        model, method, two_tasks, FAST, on_task_end=lambda m, r: seen.append(task0_logits(m, method, two_tasks))
    )
    assert torch.equal(seen[0], seen[1]) == unchanged


def test_adapter_one_gives_each_example_its_own_tasks_adapter_in_a_mixed_batch(tiny_bert_dir, two_tasks):
    method, model = build("adapter_one", tiny_bert_dir)
    run_sequence(model, method, two_tasks, FAST)
    model.eval()
    texts = two_tasks[0].test.texts[:3] + two_tasks[1].test.texts[:3]
    with torch.no_grad():
        mixed = model(**model.tokenize(texts), task_ids=torch.tensor([0, 0, 0, 1, 1, 1])).logits
        alone0 = model(**model.tokenize(texts[:3]), task_ids=torch.zeros(3, dtype=torch.long)).logits
    assert torch.allclose(mixed[:3, :2], alone0, atol=1e-5)


def test_replay_memory_stays_within_its_bound_and_is_mixed_into_batches(tiny_bert_dir, two_tasks):
    method, model = build("replay", tiny_bert_dir, memory_size="10", replay_batch_size="4")
    batch_tasks, sizes = [], []
    loss = method.loss
    method.loss = lambda m, logits, labels, step: (
        batch_tasks.append(step.inputs["task_ids"].tolist()) or loss(m, logits, labels, step)
    )
    third = keyword_task("animal", [["cow", "hen"], ["sad", "poor"]], n_train=24, n_test=12)
    run_sequence(
        model,
        method,
        two_tasks + [third],
        FAST,
        on_task_end=lambda m, r: sizes.append({t: len(x) for t, x in method.memory.items()}),
    )
    assert [sum(s.values()) for s in sizes] == [10, 10, 9] and all(sum(s.values()) <= 10 for s in sizes)
    assert sizes[-1] == {0: 3, 1: 3, 2: 3}  # shared equally among the tasks learned so far
    first_task = [ids for ids in batch_tasks if set(ids) == {0}]
    assert first_task and all(len(ids) <= 8 for ids in first_task)  # task 0: nothing to replay
    assert any(0 in ids and 1 in ids for ids in batch_tasks)  # task 1: old examples in its batches
    assert max(len(ids) for ids in batch_tasks) == 8 + 4


def test_bert_ncl_fine_tunes_the_encoder(tiny_bert_dir, two_tasks):
    method, model = build("bert_ncl", tiny_bert_dir)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    run_sequence(model, method, two_tasks, FAST)
    after = model.encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "attention.self.query.weight" in k)


def test_the_optimizer_gives_the_encoder_its_own_rate_and_spares_biases_from_decay(tiny_bert_dir, two_tasks):
    from ctr_plugin.continual.loop import _optimizer

    method, model = build("bert_ncl", tiny_bert_dir, encoder_lr="3e-5")
    model.add_task("sentiment", two_tasks[0].label_names)
    optimizer, _ = _optimizer(model, method, FAST, total_steps=10)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    encoder = dict(model.encoder.named_parameters())
    assert group_of[id(encoder["encoder.layer.0.attention.self.query.weight"])]["lr"] == 3e-5
    assert group_of[id(encoder["encoder.layer.0.attention.self.query.weight"])]["weight_decay"] == FAST.weight_decay
    assert group_of[id(encoder["encoder.layer.0.attention.self.query.bias"])]["weight_decay"] == 0.0
    head = model.heads[0].weight
    assert group_of[id(head)]["lr"] == FAST.lr
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(model.trainable_parameters())


def test_bert_mtl_learns_all_tasks_at_once_and_reports_the_joint_model(tiny_bert_dir, two_tasks):
    method, model = build("bert_mtl", tiny_bert_dir)
    batch_tasks = []
    loss = method.loss
    method.loss = lambda m, logits, labels, step: (
        batch_tasks.append(set(step.inputs["task_ids"].tolist())) or loss(m, logits, labels, step)
    )
    results = run_sequence(model, method, two_tasks, FAST)
    assert any(ids == {0, 1} for ids in batch_tasks)  # mixed-task batches: one training on the union
    assert results.acc_matrix[0][0] == results.acc_matrix[1][0]
    assert results.to_dict()["forgetting_rate"] == 0.0


@pytest.mark.parametrize("name", ["ewc", "l2"])
def test_weight_penalty_is_zero_on_the_first_task_and_grows_when_weights_move(name, tiny_bert_dir, two_tasks):
    method, model = build(name, tiny_bert_dir)
    assert float(method.penalty(model).detach()) == 0.0  # no anchor before any task is learned
    run_sequence(model, method, two_tasks[:1], FAST)
    assert float(method.penalty(model).detach()) == 0.0  # at the anchor
    assert any(float(w.abs().sum()) > 0 for w in method.importance.values())
    with torch.no_grad():
        for p in shared_parameters(model).values():
            p.add_(0.05)
    assert float(method.penalty(model).detach()) > 0.0


def test_lwf_distills_the_previous_model_from_the_second_task_on(tiny_bert_dir, two_tasks):
    method, model = build("lwf", tiny_bert_dir)
    seen = []
    run_sequence(model, method, two_tasks, FAST, on_task_end=lambda m, r: seen.append(method.last_distillation))
    assert seen[0] is None and seen[1] is not None and seen[1] > 0.0


@pytest.mark.parametrize("name", ["lora_ncl", "lora_one"])
def test_lora_trains_low_rank_updates_and_leaves_the_base_encoder_unchanged(name, tiny_bert_dir, two_tasks):
    torch.manual_seed(0)
    method = get_method(name)
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    base = {id(p): (p, p.detach().clone()) for p in encoder.parameters()}
    model = method.build_model(encoder, tokenizer, dataclasses.replace(TINY_PLUGIN, lora_rank=2), tiny_bert_dir)
    run_sequence(model, method, two_tasks, FAST)
    assert all(torch.equal(p, before) for p, before in base.values())
    lora = {n: p for n, p in model.encoder.named_parameters() if "lora_B" in n}
    assert lora and any(float(p.detach().abs().sum()) > 0 for p in lora.values())
    assert all(p.shape[-1] == 2 for p in lora.values())


def test_method_options_come_from_strings_and_bad_ones_are_named():
    assert get_method("replay", {"memory_size": "50"}).memory_size == 50
    assert get_method("ewc", {"strength": "0.5"}).strength == 0.5
    with pytest.raises(CTRError, match="memory_size"):
        get_method("replay", {"memory": "50"})
    with pytest.raises(CTRError, match="is 'lots'; it must be a whole number"):
        get_method("replay", {"memory_size": "lots"})
    with pytest.raises(CTRError, match="Available methods"):
        get_method("gem")


def test_train_ctr_passes_method_args_and_names_a_malformed_one(tiny_bert_dir, two_tasks, tmp_path, capsys):
    from test_cli import call, write_csv

    task = two_tasks[0]
    data = write_csv(
        tmp_path / "sentiment.csv", [(x, task.label_names[y]) for x, y in zip(task.train.texts, task.train.labels)]
    )
    argv = [
        "--datasets",
        data,
        "--encoder",
        tiny_bert_dir,
        "--epochs",
        "1",
        "--no-progress",
        "--method",
        "replay",
        "--output-dir",
        str(tmp_path / "run"),
    ]
    code, _, err = call("train", argv + ["--method-arg", "memory_size=12"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "results.json").read_text())["method_options"]["memory_size"] == 12
    code, _, err = call("train", argv + ["--overwrite", "--method-arg", "memory_size"], capsys)
    assert code == 2 and "KEY=VALUE" in err


def test_methods_with_state_outside_the_checkpoint_refuse_to_resume(tiny_bert_dir, two_tasks):
    method, model = build("replay", tiny_bert_dir)
    results = run_sequence(model, method, two_tasks[:1], FAST)
    results.tasks.append("colour")
    with pytest.raises(CTRError, match="cannot be resumed"):
        run_sequence(model, get_method("replay"), two_tasks, FAST, results=results)
