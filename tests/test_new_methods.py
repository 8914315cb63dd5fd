"""A-GEM (gradient projection) and the prototype methods (cosine nearest class mean, streaming LDA):
each checked against a direct computation of what its paper defines, and run end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctr_plugin.continual.loop import run_sequence
from ctr_plugin.continual.methods import Step, get_method
from ctr_plugin.continual.methods.agem import projected
from ctr_plugin.continual.methods.prototypes import ClassStatistics
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.encoders.loading import load_encoder
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


def mean_pooled(model: ContinualModel, texts: list[str]) -> np.ndarray:
    """The frozen encoder's mean-pooled features (TINY_PLUGIN's pooling), computed here directly."""
    with torch.no_grad():
        batch = model.tokenize(texts, max_length=FAST.max_length)
        model.encoder.eval()
        hidden = model.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"][:, :, None].to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1)).double().numpy()


def logits_of(model: ContinualModel, texts: list[str], task: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        batch = model.tokenize(texts, max_length=FAST.max_length)
        return model(**batch, task_ids=torch.full((len(texts),), task)).logits


# ---- A-GEM ---------------------------------------------------------------------------------------


def test_agem_projection_removes_the_conflicting_component_as_the_formula_says():
    g, g_ref = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 1.0])
    # g . g_ref = -1.5 < 0 and g_ref . g_ref = 2: g - (-1.5 / 2) g_ref
    assert torch.allclose(projected(g, g_ref), torch.tensor([1.0, -1.25, 1.25]))
    assert float(torch.dot(projected(g, g_ref), g_ref)) == pytest.approx(0.0, abs=1e-7)


def test_agem_projection_leaves_a_non_conflicting_gradient_untouched():
    g = torch.tensor([1.0, 1.0, 0.0])
    assert projected(g, torch.tensor([0.0, 1.0, 1.0])) is g  # g . g_ref = 1 > 0
    assert projected(g, torch.tensor([0.0, 0.0, 1.0])) is g  # orthogonal
    assert projected(g, torch.zeros(3)) is g  # no reference gradient


def test_agem_step_projects_the_models_gradient_against_the_memory_gradient(tiny_bert_dir, two_tasks):
    # The whole memory (6 examples) is the reference batch, so g_ref is known without the draw.
    method, model = build("agem", tiny_bert_dir, memory_size="6", memory_batch_size="6")
    run_sequence(model, method, two_tasks[:1], FAST)
    assert len(method.memory) == 6 and set(method.memory.examples) == {0}
    model.add_task("colour", two_tasks[1].label_names)
    model.train()
    params = [p for _, p in model.trainable_parameters()]

    memory = method.memory.examples[0]
    with model.evaluating():
        batch = model.tokenize([x for x, _, _ in memory], max_length=FAST.max_length)
        loss = F.cross_entropy(model(**batch, task_ids=torch.zeros(6)).logits, torch.tensor([y for _, _, y in memory]))
        refs = torch.autograd.grad(loss, params, allow_unused=True)
    g_ref = torch.cat([(torch.zeros_like(p) if r is None else r).reshape(-1) for p, r in zip(params, refs)])

    # A current gradient that conflicts with the memory's: -g_ref plus a random part, on every
    # parameter but task 0's head (which the current task's loss never reaches).
    torch.manual_seed(1)
    g = -g_ref + 0.1 * torch.randn_like(g_ref)
    head0 = {id(p) for p in model.heads[0].parameters()}
    offset = 0
    for p in params:
        part = g[offset : offset + p.numel()]
        offset += p.numel()
        p.grad = None if id(p) in head0 else part.view_as(p).clone()
    reached = [p for p in params if p.grad is not None]
    g_reached = torch.cat([p.grad.reshape(-1) for p in reached])
    keep = torch.cat([torch.full((p.numel(),), id(p) not in head0) for p in params])
    ref_reached = g_ref[keep]
    assert float(torch.dot(g_reached, ref_reached)) < 0

    method.before_step(model, Step(task=1, epoch=0, batch=0, num_batches=1))
    expected = g_reached - torch.dot(g_reached, ref_reached) / torch.dot(ref_reached, ref_reached) * ref_reached
    after = torch.cat([p.grad.reshape(-1) for p in reached])
    assert torch.allclose(after, expected, atol=1e-5)
    assert float(torch.dot(after, ref_reached)) == pytest.approx(0.0, abs=1e-4)
    assert all(p.grad is None for p in model.heads[0].parameters())  # task 0's head is left as it is
    assert method.projected_steps == 1


def test_agem_trains_two_tasks_end_to_end_with_the_memory_of_the_first(tiny_bert_dir, two_tasks):
    method, model = build("agem", tiny_bert_dir, memory_size="10", memory_batch_size="4")
    adapters_before = {n: p.detach().clone() for n, p in model.trainable_parameters()}
    memory_sizes = []
    results = run_sequence(
        model, method, two_tasks, FAST, on_task_end=lambda m, r: memory_sizes.append(dict(method.memory.examples))
    )
    assert [[v is None for v in row] for row in results.acc_matrix] == [[False, True], [False, False]]
    assert [len(m) for m in memory_sizes] == [1, 2] and len(method.memory) == 10
    assert method.reference_steps == 3  # every step of task 1 (24 examples, batches of 8) had a reference gradient
    after = dict(model.trainable_parameters())
    assert any(not torch.equal(adapters_before[n], after[n]) for n in adapters_before)


# ---- prototypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ncm", "slda"])
def test_prototype_methods_train_nothing_so_the_loop_runs_no_epoch(name, tiny_bert_dir, two_tasks):
    method, model = build(name, tiny_bert_dir)

    def no_loss(*args):
        raise AssertionError("a prototype method has no training loss")

    method.loss = no_loss
    results = run_sequence(model, method, two_tasks, FAST)
    assert results.epochs_kept == [0, 0] and results.train_steps == 0
    assert not model.trainable_parameters()
    assert all(c["train_loss"] == [] for c in results.curves)


def test_ncm_prototypes_are_the_class_means_of_the_frozen_encoders_pooled_features(tiny_bert_dir, two_tasks):
    method, model = build("ncm", tiny_bert_dir)
    run_sequence(model, method, two_tasks, FAST)
    for t, task in enumerate(two_tasks):
        features, labels = mean_pooled(model, task.train.texts), np.array(task.train.labels)
        means = np.stack([features[labels == c].mean(0) for c in range(task.num_labels)])
        assert np.allclose(method.statistics[t].means.numpy(), means, atol=1e-5)
        unit = means / np.linalg.norm(means, axis=1, keepdims=True)
        assert np.allclose(model.heads[t].weight.detach().numpy(), unit, atol=1e-5)
        # predictions: the class of the nearest mean by cosine
        test = mean_pooled(model, task.test.texts)
        cosine = (test / np.linalg.norm(test, axis=1, keepdims=True)) @ unit.T
        assert logits_of(model, task.test.texts, t).argmax(-1).tolist() == cosine.argmax(1).tolist()


def test_slda_predictions_equal_a_closed_form_lda_on_the_same_features(tiny_bert_dir, two_tasks):
    eps = 0.01
    method, model = build("slda", tiny_bert_dir, shrinkage=str(eps))
    run_sequence(model, method, two_tasks, FAST)
    # Closed form over every example seen: class means per task, the pooled within-class covariance
    # (1/N) sum_i (f_i - mu_{y_i})(f_i - mu_{y_i})^T, shrunk, inverted.
    per_task, scatter, n = [], 0.0, 0
    for task in two_tasks:
        features, labels = mean_pooled(model, task.train.texts), np.array(task.train.labels)
        means = np.stack([features[labels == c].mean(0) for c in range(task.num_labels)])
        centred = features - means[labels]
        scatter, n = scatter + centred.T @ centred, n + len(labels)
        per_task.append(means)
    sigma = scatter / n
    precision = np.linalg.inv((1 - eps) * sigma + eps * np.eye(len(sigma)))
    for t, (task, means) in enumerate(zip(two_tasks, per_task)):
        test = mean_pooled(model, task.test.texts)
        scores = test @ precision @ means.T - 0.5 * np.einsum("cd,de,ce->c", means, precision, means)
        logits = logits_of(model, task.test.texts, t).double().numpy()
        assert np.allclose(logits, scores, rtol=1e-4, atol=1e-3)
        assert logits.argmax(1).tolist() == scores.argmax(1).tolist()


def test_slda_streaming_covariance_equals_the_batch_one_when_a_class_comes_again():
    torch.manual_seed(0)
    first, second = torch.randn(7, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64) + 1.0
    y1, y2 = torch.tensor([0, 1, 0, 1, 0, 2, 2]), torch.tensor([1, 1, 0, 2, 2])
    method, stats = get_method("slda"), ClassStatistics.empty(3, 4)
    for features, labels in ((first, y1), (second, y2)):
        method.observe(stats, features, labels)
        stats.add(features, labels)
    everything, labels = torch.cat([first, second]), torch.cat([y1, y2])
    centred = everything - stats.means[labels]
    assert torch.allclose(method.scatter, centred.T @ centred) and method.seen == 12


@pytest.mark.parametrize("name", ["ncm", "slda"])
def test_prototype_checkpoints_load_with_equal_predictions(name, tiny_bert_dir, two_tasks, tmp_path):
    method, model = build(name, tiny_bert_dir)
    run_sequence(model, method, two_tasks, FAST)
    model.save_pretrained(tmp_path / "checkpoint")
    loaded = ContinualModel.from_pretrained(tmp_path / "checkpoint")
    for t, task in enumerate(two_tasks):
        assert torch.equal(logits_of(loaded, task.test.texts, t), logits_of(model, task.test.texts, t))
        assert [p.label for p in loaded.predict(task.test.texts, task.name)] == [
            p.label for p in model.predict(task.test.texts, task.name)
        ]


@pytest.mark.parametrize("scenario", ["class", "domain"])
def test_prototypes_fill_a_shared_head_over_every_class_seen_so_far(scenario, tiny_bert_dir, two_tasks):
    from ctr_plugin.continual.services import LoopServices

    first = dataclasses.replace(two_tasks[0], label_names=["positive", "negative"])
    if scenario == "class":  # new classes: the shared head grows from 2 to 5 rows
        second = dataclasses.replace(two_tasks[1], label_names=["red", "blue", "animal"])
    else:  # the same classes, in another order: their rows gather both tasks' examples
        second = keyword_task("mood", [["sad", "poor"], ["fine", "nice"]], n_train=24, n_test=12)
        second = dataclasses.replace(second, label_names=["negative", "positive"])
    method, model = build("ncm", tiny_bert_dir)
    model.scenario.configure(model, scenario, shared_head=True)
    method.services = LoopServices(FAST)
    features, classes = [], []
    for task in (first, second):
        t = model.add_task(task.name, task.label_names)
        method.before_task(model, t, task)
        method.after_task(model, t, task)
        features.append(mean_pooled(model, task.train.texts))
        classes.append(np.array(model.scenario.class_ids[t])[task.train.labels])
    everything, labels = np.concatenate(features), np.concatenate(classes)
    means = np.stack([everything[labels == c].mean(0) for c in range(len(model.scenario.class_names))])
    assert len(model.heads) == 1 and model.heads[0].out_features == (5 if scenario == "class" else 2)
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    assert np.allclose(model.heads[0].weight.detach().numpy(), unit, atol=1e-5)
    assert not model.trainable_parameters()


@pytest.mark.parametrize("scenario", ["class", "domain"])
@pytest.mark.parametrize("name", ["agem", "ncm", "slda"])
def test_new_methods_learn_without_task_ids_at_test_time_through_one_shared_head(
    name, scenario, tiny_bert_dir, two_tasks
):
    from ctr_plugin.continual.scenarios import configure_scenario

    first = dataclasses.replace(two_tasks[0], label_names=["positive", "negative"])
    if scenario == "class":
        second = dataclasses.replace(two_tasks[1], label_names=["red", "blue", "animal"])
    else:
        second = keyword_task("mood", [["sad", "poor"], ["fine", "nice"]], n_train=24, n_test=12)
        second = dataclasses.replace(second, label_names=["negative", "positive"])
    method, model = build(name, tiny_bert_dir, **({"memory_size": "8"} if name == "agem" else {}))
    configure_scenario(model, method, scenario)
    results = run_sequence(model, method, [first, second], FAST)
    assert [[v is None for v in row] for row in results.acc_matrix] == [[False, True], [False, False]]
    assert len(model.heads) == 1 and model.heads[0].out_features == (5 if scenario == "class" else 2)
    if name == "agem":
        assert method.reference_steps == 3 and len(method.memory) == 8
    else:
        assert results.epochs_kept == [0, 0] and not model.trainable_parameters()
