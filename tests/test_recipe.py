"""The authors' recipe as options: BertAdam without bias correction, per-tensor clipping, the
doubled schedule, EWC's averaged Fisher, and the shipped `paper_reference` file that sets them,
each value with the reference file it comes from."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import yaml

from ctr_plugin.continual.loop import _optimizer, clip_gradients
from ctr_plugin.continual.methods import METHODS
from ctr_plugin.continual.methods.ewc import EWC
from ctr_plugin.continual.optim import BertAdam, clip_per_tensor_
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.config import resolve_config
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.settings import build_settings
from ctr_plugin.experiments.tuning import tuned_options


def test_bertadam_takes_adam_steps_without_bias_correction_and_adds_weight_decay_to_the_update():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = BertAdam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    grads = [torch.tensor([0.5, -1.0]), torch.tensor([0.2, 0.4])]
    expected, m, v = p.detach().clone(), torch.zeros(2), torch.zeros(2)
    for g in grads:
        p.grad = g.clone()
        optimizer.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected = expected - 0.1 * (m / (v.sqrt() + 1e-6) + 0.01 * expected)
    assert torch.allclose(p.detach(), expected, atol=1e-6)
    # Adam with bias correction would move the first step by ~lr; this one by (1 - b1)/sqrt(1 - b2) * lr
    adam = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    torch_adam = torch.optim.Adam([adam], lr=0.1)
    adam.grad = grads[0].clone()
    torch_adam.step()
    assert not torch.allclose(adam.detach(), p.detach())


class _Accelerator:
    """What ``clip_gradients`` asks of an accelerator, without mixed precision."""

    def unscale_gradients(self):
        pass

    def clip_grad_norm_(self, params, max_norm):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)


def test_per_tensor_clipping_bounds_each_gradient_and_global_clipping_their_joint_norm():
    def grads():
        a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
        a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4])  # norms 5 and 0.5
        return [a, b]

    per_tensor = grads()
    clip_gradients(per_tensor, TrainingConfig(max_grad_norm=1.0, clip="per_tensor"), _Accelerator())
    assert per_tensor[0].grad.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert per_tensor[1].grad.norm().item() == pytest.approx(0.5, abs=1e-6)  # under the bound: untouched
    joint = grads()
    clip_gradients(joint, TrainingConfig(max_grad_norm=1.0, clip="global"), _Accelerator())
    scale = 1.0 / math.hypot(5.0, 0.5)
    assert joint[1].grad.norm().item() == pytest.approx(0.5 * scale, rel=1e-4)  # shrunk with the other


def test_clipping_all_tensors_at_once_equals_clipping_each_tensor_on_its_own():
    """clip_per_tensor_ (a few foreach operations) must give clip_grad_norm_(p) for each p, bit for
    bit, across dtypes and with tensors above and below the bound."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (7,), (2, 2, 2), (11,)]
    grads = [
        torch.randn(s, generator=generator, dtype=d) * k
        for s, d, k in zip(shapes, 2 * [torch.float32, torch.float64], (5, 0.01, 3, 0.1))
    ]
    together = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    one_by_one = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for a, b, g in zip(together, one_by_one, grads):
        a.grad, b.grad = g.clone(), g.clone()
    clip_per_tensor_(together, 1.0)
    for b in one_by_one:
        torch.nn.utils.clip_grad_norm_([b], 1.0)
    for a, b in zip(together, one_by_one):
        assert torch.equal(a.grad, b.grad)
    assert together[0].grad.norm() == pytest.approx(1.0, abs=1e-5) and torch.equal(together[1].grad, grads[1])


def test_bertadam_over_many_tensors_equals_the_same_update_tensor_by_tensor():
    generator = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in [(4, 3), (5,), (2, 6)]]
    singles = [torch.nn.Parameter(p.detach().clone()) for p in params]
    together = BertAdam(params, lr=0.01, weight_decay=0.01)
    alone = [BertAdam([p], lr=0.01, weight_decay=0.01) for p in singles]
    for _ in range(3):
        for p, q in zip(params, singles):
            g = torch.randn(p.shape, generator=generator)
            p.grad, q.grad = g.clone(), g.clone()
        together.step()
        for optimizer in alone:
            optimizer.step()
    for p, q in zip(params, singles):
        assert torch.equal(p.detach(), q.detach())


def test_the_squared_schedule_is_the_linear_one_applied_twice():
    model = torch.nn.Linear(2, 2)

    class Method:
        def learning_rates(self, model, lr):
            return {}

    def factors(schedule: str) -> list[float]:
        cfg = TrainingConfig(lr=1.0, warmup_ratio=0.2, lr_schedule=schedule)
        import ctr_plugin.continual.loop as loop

        original = loop.parameter_groups
        loop.parameter_groups = lambda model, method, lr, wd: [{"params": list(model.parameters())}]
        try:
            optimizer, scheduler = _optimizer(model, Method(), cfg, total_steps=10)
        finally:
            loop.parameter_groups = original
        out = []
        for _ in range(10):
            out.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        return out

    linear, squared = factors("linear"), factors("linear_squared")
    assert squared == pytest.approx([f * f for f in linear])
    assert linear[0] == pytest.approx(0.5) and squared[0] == pytest.approx(0.25)


def test_ewc_averages_the_fisher_over_tasks_when_asked_and_sums_it_by_default():
    new = {"w": torch.tensor([4.0])}
    for merge, expected in (("sum", 4.0 + 2.0), ("average", (4.0 + 2 * 2.0) / 3)):
        method = EWC(fisher_merge=merge)
        method.importance = {"w": torch.tensor([2.0])}
        assert method.merged(new, task=2)["w"].item() == pytest.approx(expected)
    with pytest.raises(CTRError, match=r"`fisher_merge`.*'median'.*one of 'sum', 'average'"):
        EWC.from_options({"fisher_merge": "median"})


def test_a_choice_outside_its_list_is_refused_naming_the_choices():
    with pytest.raises(CTRError, match=r"`optimizer`.*'sgd'.*one of 'adamw', 'bertadam'"):
        TrainingConfig(optimizer="sgd")


RECIPE = resolve_config("paper_reference", kind="tuned")


def test_the_paper_reference_recipe_builds_every_method_it_names_and_sources_every_value():
    data = yaml.safe_load(RECIPE.read_text())
    assert set(data["methods"]) == {
        "ctr", "adapter_hat", "adapter_one", "adapter_ncl", "ewc", "l2", "replay", "bert_ncl", "bert_one",
    }  # fmt: skip
    for method, entry in data["methods"].items():
        assert method in METHODS
        training, options = tuned_options(RECIPE, method)
        unsourced = set(training) | set(options)
        unsourced -= set(entry["sources"])
        assert not unsourced, f"{method}: no source for {sorted(unsourced)}"
        settings = build_settings(method, tuned=str(RECIPE))
        assert settings.training.lr == 5e-5 and settings.training.epochs == 30
        assert settings.training.optimizer == "bertadam" and settings.training.clip == "per_tensor"
        assert settings.training.lr_schedule == "linear_squared"
        assert dataclasses.asdict(settings.method).items() >= options.items()
    assert build_settings("ewc", tuned=str(RECIPE)).method.fisher_merge == "average"
    assert build_settings("ctr", tuned=str(RECIPE)).plugin.mask_init_std == 0.02


def test_the_loop_learns_an_easy_task_with_the_reference_optimizer_clipping_and_schedule(tiny_bert_dir, tmp_path):
    from ctr_plugin.experiments.run import RunSettings, run

    from conftest import TINY_PLUGIN, keyword_task

    easy = keyword_task("easy", [["good", "great", "nice"], ["bad", "awful", "poor"]], n_train=160, n_test=60)
    cfg = TrainingConfig(
        epochs=6, lr=1e-2, progress=False, optimizer="bertadam", clip="per_tensor", lr_schedule="linear_squared"
    )
    out = run([easy], RunSettings(encoder=tiny_bert_dir, training=cfg, plugin=TINY_PLUGIN), tmp_path / "run")
    assert out["training"]["optimizer"] == "bertadam" and out["training"]["clip"] == "per_tensor"
    assert out["acc_matrix"][0][0] >= 65.0, out["acc_matrix"]  # chance is 50 % (as test_training's bar)
