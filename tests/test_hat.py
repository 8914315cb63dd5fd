"""HAT's training rules and the guarantee they give: protected weights do not move."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ctr_plugin.continual import hat
from ctr_plugin.continual.loop import run_sequence
from ctr_plugin.continual.methods import Step, get_method
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import CTRError
from ctr_plugin.plugins import PluginConfig

from conftest import TINY_PLUGIN, keyword_task


def test_temperature_anneals_from_inverse_smax_to_smax():
    assert hat.temperature(0, 10, 400.0) == 1 / 400
    assert hat.temperature(9, 10, 400.0) == 400.0
    assert hat.temperature(0, 1, 400.0) == 400.0
    values = [hat.temperature(b, 10, 400.0) for b in range(10)]
    assert values == sorted(values)


def test_gradient_masking_zeroes_exactly_the_units_earlier_tasks_use(tiny_bert_dir):
    method = get_method("ctr")
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    model = method.build_model(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    model.add_task("a", ["x", "y"])
    plugin = model.plugins[0]
    a, d = plugin.fc1.out_features, plugin.fc2.out_features
    used1 = torch.zeros(a).index_fill_(0, torch.tensor([0, 3]), 1.0)
    used2 = torch.zeros(d).index_fill_(0, torch.tensor([1]), 1.0)
    plugin.masks.cumulative(0).copy_(used1)
    plugin.masks.cumulative(1).copy_(used2)
    for p in (*plugin.fc1.parameters(), *plugin.fc2.parameters()):
        p.grad = torch.ones_like(p)
    hat.protect_previous_tasks(model)
    assert plugin.fc1.weight.grad[[0, 3]].abs().sum() == 0 and plugin.fc1.weight.grad[1].min() == 1
    assert plugin.fc1.bias.grad[0] == 0 and plugin.fc1.bias.grad[1] == 1
    assert plugin.fc2.weight.grad[1, 0] == 0  # both ends used by an earlier task
    assert plugin.fc2.weight.grad[1, 1] == 1 and plugin.fc2.weight.grad[0, 0] == 1  # one end free
    assert plugin.fc2.bias.grad[1] == 0 and plugin.fc2.bias.grad[0] == 1


def test_regulariser_counts_only_units_left_free(tiny_bert_dir):
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    model = get_method("ctr").build_model(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    model.add_task("a", ["x", "y"])
    model.add_task("b", ["x", "y"])
    for plugin in model.plugins:
        plugin.masks.cumulative(0).fill_(1.0)
        plugin.masks.cumulative(1).fill_(0.0)
        plugin.masks.embeddings[1][1].data.fill_(10.0)  # task b's m2 all ones
    assert torch.isclose(hat.mask_regulariser(model, 1, 400.0), torch.tensor(1.0))


def test_second_task_leaves_weights_protected_by_first_task_unchanged(tiny_bert_dir):
    torch.manual_seed(0)
    method = get_method("ctr")
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    model = method.build_model(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    tasks = [keyword_task("one", [["good"], ["bad"]]), keyword_task("two", [["red"], ["blue"]])]
    cfg = TrainingConfig(epochs=2, lr=1e-2, progress=False)
    snapshots, used_by_first = {}, {}

    def after(model, results):
        if results.completed_tasks == 1:
            snapshots.update(
                {
                    id(p): p.detach().clone()
                    for pl in model.plugins
                    for p in (pl.fc1.weight, pl.fc1.bias, pl.fc2.weight, pl.fc2.bias)
                }
            )
            used_by_first.update({id(pl): [pl.masks.cumulative(i).clone() for i in (0, 1)] for pl in model.plugins})

    run_sequence(model, method, tasks, cfg, on_task_end=after)
    protected_units = 0
    for plugin in model.plugins:
        m1, m2 = used_by_first[id(plugin)]
        used1, used2 = m1 == 1.0, m2 == 1.0  # exactly 1: 1 - m_pre is exactly zero
        protected_units += int(used1.sum())
        old = snapshots[id(plugin.fc1.weight)]
        assert torch.equal(plugin.fc1.weight[used1], old[used1])
        assert torch.equal(plugin.fc1.bias[used1], snapshots[id(plugin.fc1.bias)][used1])
        both = used2[:, None] & used1[None, :]
        assert torch.equal(plugin.fc2.weight[both], snapshots[id(plugin.fc2.weight)][both])
        assert torch.equal(plugin.fc2.bias[used2], snapshots[id(plugin.fc2.bias)][used2])
        # ... while free units did learn task two
        assert not torch.equal(plugin.fc1.weight[~used1], old[~used1])
    assert protected_units > 0, "task one should have claimed some units"


# ---- the knobs the CTR diagnosis ablates (docs/ctr_diagnosis.md) ---------------------------------


def test_the_knobs_default_to_the_papers_setting():
    method = get_method("ctr")
    assert (method.mask_lambda, method.anneal, method.mask_lr_scale) == (0.75, "epoch", 1.0)
    config = PluginConfig()
    assert (config.tsm_activation, config.mask_init_mean, config.mask_init_std, config.s_max) == (
        "relu",
        0.0,
        1.0,
        400.0,
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"anneal": "batch"}, "anneal='batch'"),
        ({"mask_lambda": "-1"}, "mask_lambda"),
        ({"mask_lr_scale": "0"}, "mask_lr_scale"),
    ],
)
def test_a_bad_hat_option_is_refused_by_name(options, message):
    with pytest.raises(CTRError, match=message):
        get_method("adapter_hat", options)
    with pytest.raises(CTRError, match="tsm_activation"):
        PluginConfig(tsm_activation="gelu")


def test_annealing_over_the_task_spans_every_epoch_once():
    s_max, per_epoch = 400.0, get_method("ctr")
    per_task = get_method("ctr", {"anneal": "task"})

    class Model:  # the method reads only the plugin config
        plugin_config = PluginConfig()

    steps = [Step(0, epoch, b, 4, 2) for epoch in range(2) for b in range(4)]
    by_epoch = [per_epoch.temperature(Model, s) for s in steps]
    by_task = [per_task.temperature(Model, s) for s in steps]
    assert by_epoch[0] == by_epoch[4] == 1 / s_max and by_epoch[3] == by_epoch[7] == s_max
    assert by_task == sorted(by_task) and by_task[0] == 1 / s_max and by_task[-1] == s_max
    assert by_task[4] == pytest.approx(hat.temperature(4, 8, s_max))


def test_the_mask_embeddings_get_their_own_learning_rate(tiny_bert_dir):
    from ctr_plugin.continual.loop import _optimizer

    encoder, tokenizer = load_encoder(tiny_bert_dir)
    method = get_method("ctr", {"mask_lr_scale": "50"})
    model = method.build_model(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    model.add_task("a", ["x", "y"])
    optimizer, _ = _optimizer(model, method, TrainingConfig(lr=1e-3), total_steps=10)
    embeddings = {id(p) for p in hat.mask_embeddings(model)}
    for group in optimizer.param_groups:
        is_mask = [id(p) in embeddings for p in group["params"]]
        assert all(is_mask) or not any(is_mask)
        assert group["lr"] == pytest.approx(5e-2 if all(is_mask) else 1e-3)
        if all(is_mask):
            assert group["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups if g["lr"] == pytest.approx(5e-2)) == len(embeddings)


@pytest.mark.parametrize("activation, can_subtract", [("relu", False), ("none", True)])
def test_without_the_up_projection_relu_the_task_module_can_subtract(activation, can_subtract):
    from ctr_plugin.plugins import PluginContext, build_plugin

    torch.manual_seed(0)
    config = dataclasses.replace(
        TINY_PLUGIN, plugin_type="hat_adapter", tsm_activation=activation, mask_init_mean=6.0, mask_init_std=0.0
    )
    context = PluginContext(
        task_ids=torch.zeros(3, dtype=torch.long), token_mask=torch.ones(3, 5), active_tasks=1, s=400.0
    )
    plugin = build_plugin(config, 32, context)
    plugin.add_task()
    assert all(torch.equal(e, torch.full_like(e, 6.0)) for e in hat.mask_embeddings(plugin))  # the init knobs
    x = torch.randn(3, 5, 32)
    delta = plugin(x) - x
    assert (delta < 0).any() == can_subtract and (delta > 0).any()


def test_mask_usage_reports_the_share_of_units_each_task_claims():
    from ctr_plugin.plugins import PluginContext, build_plugin

    plugin = build_plugin(
        dataclasses.replace(TINY_PLUGIN, plugin_type="hat_adapter", mask_init_mean=6.0, mask_init_std=0.0),
        32,
        PluginContext(),
    )
    plugin.add_task()
    plugin.add_task()
    with torch.no_grad():
        for per_task in plugin.masks.embeddings:
            per_task[1].fill_(-6.0)
            per_task[1][:4] = 6.0  # task 1 claims 4 units of each mask
    hat.accumulate_masks(plugin, 0, 400.0)
    usage = hat.mask_usage(plugin, 400.0)
    total = sum(plugin.masks.sizes)
    assert usage["open"] == [1.0, round(8 / total, 4)] and usage["used"] == 1.0
    assert usage["embedding_abs_mean"] == [6.0, 6.0]


def test_the_linear_up_variant_differs_from_ctr_only_in_the_up_projection(tiny_bert_dir):
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    variant = get_method("ctr_linear_up")
    model = variant.build_model(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    assert model.plugin_config.tsm_activation == "none" and TINY_PLUGIN.tsm_activation == "relu"
    assert all(isinstance(p.up_activation, torch.nn.Identity) for p in model.plugins)
    paper = get_method("ctr")
    assert (variant.mask_lambda, variant.anneal, variant.mask_lr_scale) == (
        paper.mask_lambda,
        paper.anneal,
        paper.mask_lr_scale,
    )
    assert type(variant).table_group == "CTR" and type(variant).search_space == type(paper).search_space


def subnormal_count(t: torch.Tensor) -> int:
    return int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())


@pytest.mark.parametrize("kind", ["ctr", "hat_adapter"])
def test_negligible_masks_act_as_zero_so_no_subnormal_number_reaches_the_products(kind):
    """At s = 100 a closed unit's mask (~e^-100) times an activation or a gradient is a subnormal
    float32 number, tens of times slower to compute with on a CPU: the masked module's forward and
    backward must carry none, while the masks' own gradient stays exactly sigmoid's."""
    from ctr_plugin.plugins.context import PluginContext
    from ctr_plugin.plugins.ctr_layer import CTRPlugin, negligible_as_zero

    torch.manual_seed(0)
    context = PluginContext()
    config = dataclasses.replace(TINY_PLUGIN, plugin_type=kind, adapter_size=64)
    plugin = CTRPlugin(config, 32, context, knowledge_sharing=kind == "ctr")
    plugin.add_task()
    context.task_ids, context.token_mask, context.active_tasks, context.s = (
        torch.zeros(4, dtype=torch.long),
        torch.ones(4, 10),
        1,
        100.0,
    )
    masks = [torch.sigmoid(100.0 * e[0]) for e in plugin.masks.embeddings]
    assert sum(int((m < torch.finfo(m.dtype).eps ** 2).sum()) for m in masks) > 10  # closed units exist

    x = torch.randn(4, 10, 32, requires_grad=True)
    y = plugin(x)
    (y.square().mean() * 1e-3).backward()
    assert subnormal_count(y) == 0 and subnormal_count(x.grad) == 0
    assert all(subnormal_count(p.grad) == 0 for p in (*plugin.fc1.parameters(), *plugin.fc2.parameters()))

    # forward: the values below eps^2 become 0, the others are kept exactly; backward: identity
    e = torch.randn(50) * 3
    m = torch.sigmoid(100.0 * e).requires_grad_(True)
    flushed = negligible_as_zero(m)
    small = m < torch.finfo(m.dtype).eps ** 2
    assert small.any() and (flushed[small] == 0).all() and torch.equal(flushed[~small], m[~small])
    weights = torch.randn(50)
    (flushed * weights).sum().backward()
    assert torch.equal(m.grad, weights)
