"""The CTR plugin and its injection: shapes, placement, routing semantics, batch independence."""

from __future__ import annotations

import pytest
import torch

from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins import CTRPlugin, PluginConfig
from ctr_plugin.plugins.injection import PluggedOutput

from conftest import TINY_PLUGIN


def build(path: str, plugin: PluginConfig = TINY_PLUGIN, tasks: int = 2) -> ContinualModel:
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(path)
    model = ContinualModel(encoder, tokenizer, plugin, path)
    for t in range(tasks):
        model.add_task(f"task{t}", [f"label{k}" for k in range(2 + t)])
    return model


@pytest.mark.parametrize("encoder", ["tiny_bert_dir", "tiny_roberta_dir"])
def test_two_plugins_per_layer_and_logit_shapes(encoder, request):
    model = build(request.getfixturevalue(encoder))
    layers = model.encoder.config.num_hidden_layers
    assert len(model.plugins) == 2 * layers
    wrapped = [n for n, m in model.encoder.named_modules() if isinstance(m, PluggedOutput)]
    assert sum(n.endswith("attention.output.dropout") for n in wrapped) == layers
    assert all(p.fc2.out_features == model.encoder.config.hidden_size for p in model.plugins)
    batch = model.tokenize(["good red cat", "the dog was very bad indeed"])
    assert model(**batch, task_ids=torch.tensor([1, 1])).logits.shape == (2, 3)
    mixed = model(**batch, task_ids=torch.tensor([0, 1])).logits
    assert mixed.shape == (2, 3) and torch.isinf(mixed[0, 2]) and torch.isfinite(mixed[1]).all()


def test_plugin_maps_hidden_states_to_same_shape(tiny_bert_dir):
    model = build(tiny_bert_dir)
    plugin = model.plugins[0]
    x = torch.randn(3, 7, model.hidden_size)
    model.context.task_ids, model.context.token_mask, model.context.active_tasks = (
        torch.tensor([0, 1, 1]),
        torch.ones(3, 7),
        2,
    )
    assert plugin(x).shape == x.shape


def test_only_plugins_heads_and_layernorms_are_trainable(tiny_bert_dir):
    model = build(tiny_bert_dir)
    names = [n for n, _ in model.trainable_parameters()]
    assert all(
        ".plugin." in n or n.startswith("heads.") or n.endswith(("LayerNorm.weight", "LayerNorm.bias")) for n in names
    )
    assert not any("embeddings" in n and ".plugin." not in n for n in names)
    frozen_norms = build(tiny_bert_dir, PluginConfig(**{**TINY_PLUGIN.to_dict(), "train_layernorm": False}))
    assert all(".plugin." in n or n.startswith("heads.") for n, _ in frozen_norms.trainable_parameters())


def test_example_output_does_not_depend_on_its_batch(tiny_bert_dir):
    model = build(tiny_bert_dir, tasks=3).eval()
    texts = ["good", "the red cat was very nice and the dog was not sad", "blue cow", "a hen"]
    together = model(**model.tokenize(texts), task_ids=torch.tensor([2, 0, 1, 2])).logits
    for i, (text, task) in enumerate(zip(texts, [2, 0, 1, 2])):
        alone = model(**model.tokenize([text]), task_ids=torch.tensor([task])).logits
        k = alone.shape[1]
        torch.testing.assert_close(together[i, :k], alone[0], atol=1e-5, rtol=1e-5)


def test_later_tasks_never_contribute(tiny_bert_dir):
    model = build(tiny_bert_dir, tasks=2).eval()
    batch = model.tokenize(["good red cat", "bad blue dog"])
    before = model(**batch, task_ids=torch.tensor([0, 0])).logits
    with torch.no_grad():  # change everything that belongs to task 1
        for plugin in model.plugins:
            k = plugin.task_capsules.capsule_hidden
            plugin.task_capsules.w1[:, k : 2 * k].add_(5.0)
            plugin.transfer_routing.routes[1].mul_(-3.0)
    model.add_task("task2", ["a", "b"])
    after = model(**batch, task_ids=torch.tensor([0, 0])).logits
    torch.testing.assert_close(before, after)


def test_routing_is_deterministic_at_evaluation_and_sampled_in_training(tiny_bert_dir):
    model = build(tiny_bert_dir, tasks=3)
    batch = model.tokenize(["good red cat", "bad blue dog", "a hen"] * 4)
    task_ids = torch.tensor([2] * 12)
    model.eval()
    torch.testing.assert_close(
        model(**batch, task_ids=task_ids).logits, model(**batch, task_ids=task_ids).logits, atol=0, rtol=0
    )
    model.train()
    model.head_dropout.p = 0.0
    for m in model.encoder.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    outs = [model(**batch, task_ids=task_ids).logits for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:]), "Gumbel noise should make training routes vary"


def test_task_capsules_are_added_per_task_not_preallocated(tiny_bert_dir):
    model = build(tiny_bert_dir, tasks=1)
    plugin: CTRPlugin = model.plugins[0]
    k = plugin.task_capsules.capsule_hidden
    assert plugin.task_capsules.w1.shape[1] == k and len(plugin.transfer_routing.routes) == 1
    model.add_task("later", ["x", "y"])
    assert plugin.task_capsules.w1.shape[1] == 2 * k and len(plugin.transfer_routing.routes) == 2
    assert len(plugin.masks.embeddings[0]) == 2


def test_freeze_old_capsules_option_freezes_earlier_tasks_only(tiny_bert_dir):
    model = build(tiny_bert_dir, PluginConfig(**{**TINY_PLUGIN.to_dict(), "freeze_old_capsules": True}), tasks=2)
    plugin = model.plugins[0]
    capsules, routing = plugin.task_capsules, plugin.transfer_routing
    trainable = {n for n, _ in plugin.named_parameters()}
    # task 0's capsules and routes are buffers now (never in an optimizer); task 1's are the parameters
    assert not any(n.endswith("_frozen") for n in trainable)
    assert capsules.w1_frozen.shape[1] == capsules.w1.shape[1] == capsules.capsule_hidden
    assert routing.routes_frozen.shape[0] == routing.routes.shape[0] == 1
    w1_before = capsules.w1_frozen.clone()
    model.add_task("third", ["x", "y"])
    assert capsules.w1.shape[1] == capsules.capsule_hidden and routing.routes_frozen.shape[0] == 2
    torch.testing.assert_close(capsules.w1_frozen[:, : capsules.capsule_hidden], w1_before, rtol=0, atol=0)


def test_encoder_without_output_sublayers_is_refused():
    from ctr_plugin.errors import CTRError
    from ctr_plugin.plugins.injection import inject_plugins

    with pytest.raises(CTRError, match="no BERT-style output sublayers"):
        inject_plugins(torch.nn.Sequential(torch.nn.Linear(4, 4)), 4, lambda: None)
