"""Model management as peft users know it (modeling/management.py): the trainable-parameter count,
``delete_task`` (the other tasks' predictions unchanged, or a refusal saying why), ``disable_plugins``
and ``unload`` (the encoder as freshly loaded), and task models (``*ForSequenceClassification``)
handed to ``get_continual_model``."""

from __future__ import annotations

import copy
import dataclasses
import logging
import re

import pytest
import torch
from torch import nn
from transformers import AutoModel, BertForSequenceClassification

from ctr_plugin.continual.learner import ContinualLearner, get_continual_model
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.errors import CTRError, TaskError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins.injection import PluggedOutput
from ctr_plugin.plugins.kinds import SublayerKind
from ctr_plugin.plugins.lora import lora_layers
from ctr_plugin.plugins.plugin import Plugin
from ctr_plugin.plugins.registry import PLUGIN_KINDS, register_kind

from conftest import TINY_PLUGIN, keyword_task

FAST = TrainingConfig(epochs=1, lr=1e-2, progress=False)
TASKS = [
    keyword_task("sentiment", [["good", "great"], ["bad", "awful"]], n_train=24, n_test=12),
    keyword_task("colour", [["red", "pink"], ["blue", "green"], ["cat", "dog"]], n_train=24, n_test=12),
    keyword_task("animal", [["cow", "hen"], ["sad", "poor"]], n_train=24, n_test=12),
]
PLUGIN_TYPE = {
    "ctr": "ctr",
    "adapter_hat": "hat_adapter",
    "adapter_one": "adapter_per_task",
    "lora_one": "lora_per_task",
    "adapter_ncl": "adapter",
    "lora_ncl": "lora",
    "frozen_heads": "none",
    "bert_one": "none",
}
_trained: dict[str, ContinualModel] = {}


def trained(tiny_bert_dir, method: str) -> ContinualModel:
    """A fresh copy of a model of ``method`` that learned the three tasks (trained once per method)."""
    if method not in _trained:
        torch.manual_seed(0)
        config = dataclasses.replace(TINY_PLUGIN, plugin_type=PLUGIN_TYPE[method])
        model = get_continual_model(tiny_bert_dir, config, method=method)
        ContinualLearner(model, training=FAST).learn_sequence(TASKS, evaluate_test=False)
        _trained[method] = model.eval()
    return copy.deepcopy(_trained[method])


@torch.no_grad()
def logits_by_task(model: ContinualModel) -> dict[str, torch.Tensor]:
    """Each task's logits on its test texts (a batch of its own), keyed by task name."""
    out = {}
    for task in TASKS:
        if task.name in model.task_names:
            inputs = model.tokenize(task.test.texts)
            task_ids = torch.full((len(task.test.texts),), model.task_id(task.name))
            out[task.name] = model(**inputs, task_ids=task_ids).logits
    return out


@torch.no_grad()
def mixed_predictions(model: ContinualModel) -> list:
    texts = [t for task in TASKS if task.name in model.task_names for t in task.test.texts]
    names = [task.name for task in TASKS if task.name in model.task_names for _ in task.test.texts]
    return [(p.label, p.logits) for p in model.predict(texts, task=names)]


def fresh_hidden_states(tiny_bert_dir, inputs) -> torch.Tensor:
    with torch.no_grad():
        return AutoModel.from_pretrained(tiny_bert_dir).eval()(**inputs).last_hidden_state


# ---- what trains ---------------------------------------------------------------------------------


def test_print_trainable_parameters_speaks_peft(tiny_bert_dir, capsys):
    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN, method="ctr")
    model.add_task("a", ["x", "y"])
    trainable, total = model.trainable_parameter_count()
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == sum(p.numel() for p in model.parameters()) > trainable > 0
    model.print_trainable_parameters()
    line = capsys.readouterr().out.strip()
    assert (
        line
        == f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
    )
    assert re.fullmatch(r"trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}", line)


# ---- delete_task ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", ["adapter_hat", "adapter_one", "lora_one", "bert_one", "adapter_ncl", "frozen_heads"]
)
def test_deleting_a_middle_task_leaves_every_other_tasks_predictions_unchanged(tiny_bert_dir, tmp_path, method):
    model = trained(tiny_bert_dir, method)
    before, mixed_before = logits_by_task(model), mixed_predictions(model)
    moved = model.delete_task("colour")
    assert moved == {"animal": (2, 1)}
    assert model.task_names == ["sentiment", "animal"] and len(model.heads) == 2
    assert all(p.num_tasks == 2 for p in model.plugins)
    after = logits_by_task(model)
    assert after.keys() == {"sentiment", "animal"}
    for name, logits in after.items():
        assert torch.equal(logits, before[name]), name
    kept = [p for p, n in zip(mixed_before, [t.name for t in TASKS for _ in t.test.texts]) if n != "colour"]
    mixed_after = mixed_predictions(model)  # mixed-task batches, batched by length: equal to float rounding
    assert [label for label, _ in mixed_after] == [label for label, _ in kept]
    assert torch.allclose(torch.tensor([x for _, x in mixed_after]), torch.tensor([x for _, x in kept]), atol=1e-5)
    # the deletion is what a checkpoint holds: it loads back with the same outputs
    model.save_pretrained(tmp_path / "ckpt")
    loaded = ContinualModel.from_pretrained(tmp_path / "ckpt", encoder=tiny_bert_dir)
    for name, logits in logits_by_task(loaded).items():
        assert torch.allclose(logits, before[name], atol=1e-5), name


def test_per_task_parts_go_with_the_deleted_task(tiny_bert_dir):
    lora = trained(tiny_bert_dir, "lora_one")
    kept_b = [layer.lora_B["task_2"].weight.clone() for layer in lora_layers(lora.encoder)]
    lora.delete_task(1)
    for layer, weight in zip(lora_layers(lora.encoder), kept_b):
        assert list(layer.lora_A) == ["task_0", "task_1"] and torch.equal(layer.lora_B["task_1"].weight, weight)
    assert list(lora.encoder.peft_config) == ["task_0", "task_1"]
    bert_one = trained(tiny_bert_dir, "bert_one")
    copies = [bert_one.task_weights[0], bert_one.task_weights[2]]
    bert_one.delete_task("colour")
    assert sorted(bert_one.task_weights) == [0, 1]
    assert bert_one.task_weights[0] is copies[0] and bert_one.task_weights[1] is copies[1]


def test_hat_frees_only_the_units_no_remaining_task_claims(tiny_bert_dir):
    model = trained(tiny_bert_dir, "adapter_hat")
    s_max = model.plugin_config.s_max
    old = [[plugin.masks.cumulative(i).clone() for i in range(2)] for plugin in model.plugins]
    masks = [[plugin.masks.task_masks(t, s_max) for t in (0, 2)] for plugin in model.plugins]
    model.delete_task("colour")
    for plugin, before, (m0, m2) in zip(model.plugins, old, masks):
        assert len(plugin.masks.embeddings[0]) == 2
        for i in range(2):
            now = plugin.masks.cumulative(i)
            assert torch.all(now <= before[i]) and torch.all(now >= torch.maximum(m0[i], m2[i]))
    # the model learns on: a new learner adds a task after the deletion
    ContinualLearner(model, training=FAST).learn_task("third", [("good cow", "a"), ("bad hen", "b")] * 4)
    assert model.task_names == ["sentiment", "animal", "third"]


def test_ctr_deletes_its_last_task_and_refuses_an_earlier_one_saying_why(tiny_bert_dir):
    model = trained(tiny_bert_dir, "ctr")
    before = logits_by_task(model)
    with pytest.raises(TaskError, match=r"routes through this task's capsule.*Nothing was changed"):
        model.delete_task("colour")
    assert model.task_names == [t.name for t in TASKS]
    assert all(torch.equal(a, before[n]) for n, a in logits_by_task(model).items())
    assert model.delete_task("animal") == {}
    after = logits_by_task(model)
    assert after.keys() == {"sentiment", "colour"} and all(torch.equal(a, before[n]) for n, a in after.items())
    assert model.plugins[0].task_capsules.w2.shape[0] == 2 and model.plugins[0].transfer_routing.routes.shape[0] == 2


def test_ctr_with_frozen_old_capsules_deletes_its_last_task_and_saves_as_a_fresh_model_would(tiny_bert_dir, tmp_path):
    torch.manual_seed(0)
    model = get_continual_model(tiny_bert_dir, dataclasses.replace(TINY_PLUGIN, freeze_old_capsules=True), "ctr")
    ContinualLearner(model, training=FAST).learn_sequence(TASKS, evaluate_test=False)
    before = logits_by_task(model.eval())
    model.delete_task("animal")
    capsules = model.plugins[0].task_capsules
    assert capsules.w2.shape[0] == 1 and capsules.w2_frozen.shape[0] == 1  # the layout add_task leaves
    model.save_pretrained(tmp_path / "ckpt")
    loaded = ContinualModel.from_pretrained(tmp_path / "ckpt", encoder=tiny_bert_dir)
    for name, logits in logits_by_task(loaded).items():
        assert torch.allclose(logits, before[name], atol=1e-5), name


def test_the_refusal_is_earned_cutting_an_earlier_ctr_task_changes_the_later_ones(tiny_bert_dir):
    """The evidence for the refusal: the same cut done by force changes the later task's logits."""
    model = trained(tiny_bert_dir, "ctr")
    before = logits_by_task(model)
    for plugin in model.plugins:
        plugin.remove_task(1)  # what delete_task refuses to do
    del model.heads[1], model.task_names[1], model.label_names[1], model.task_pairs[1], model.task_sources[1]
    after = logits_by_task(model)
    assert torch.equal(after["sentiment"], before["sentiment"])  # task 0 reads no later capsule
    assert not torch.allclose(after["animal"], before["animal"])  # task 2 routed through task 1's capsule


def test_a_plugin_that_grows_per_task_without_remove_task_is_refused(tiny_bert_dir):
    class Growing(Plugin):
        def __init__(self, config, hidden_size, context):
            super().__init__(context)
            self.scales = nn.ParameterList()

        def add_task(self):
            self.scales.append(nn.Parameter(torch.ones(1)))
            super().add_task()

        def forward(self, x):
            return x

    if "growing_test" not in PLUGIN_KINDS:
        register_kind(SublayerKind("growing_test", "a test plugin", Growing, default_method="adapter_ncl"))
    encoder = AutoModel.from_pretrained(tiny_bert_dir)
    model = ContinualModel(encoder, None, dataclasses.replace(TINY_PLUGIN, plugin_type="growing_test"))
    model.add_task("a", ["x", "y"])
    with pytest.raises(TaskError, match="does not say how to remove a task's parts"):
        model.delete_task("a")
    assert model.task_names == ["a"]


# ---- the encoder without its plugins -------------------------------------------------------------


@pytest.mark.parametrize("method", ["ctr", "lora_one", "lora_ncl", "adapter_one"])
def test_disable_plugins_runs_the_encoder_as_freshly_loaded_and_restores_it_after(tiny_bert_dir, method):
    model = trained(tiny_bert_dir, method)
    inputs = model.tokenize(TASKS[0].test.texts)
    fresh = fresh_hidden_states(tiny_bert_dir, inputs)
    before = logits_by_task(model)
    with torch.no_grad(), model.disable_plugins():
        plain = model.encoder(**inputs).last_hidden_state
        model(**inputs, task_ids=torch.zeros(len(TASKS[0].test.texts), dtype=torch.long))  # heads on the plain encoder
    assert torch.allclose(plain, fresh, atol=1e-6)
    assert all(torch.equal(a, before[n]) for n, a in logits_by_task(model).items())
    trainable_before = model.trainable_parameter_count()
    with pytest.raises(RuntimeError), model.disable_plugins():
        raise RuntimeError("inside the block")
    assert model.trainable_parameter_count() == trainable_before
    assert all(torch.equal(a, before[n]) for n, a in logits_by_task(model).items())


@pytest.mark.parametrize("method", ["ctr", "lora_one", "adapter_one"])
def test_unload_returns_the_clean_encoder_which_a_new_model_can_take(tiny_bert_dir, method):
    model = trained(tiny_bert_dir, method)
    inputs = model.tokenize(TASKS[1].test.texts)
    encoder = model.unload()
    fresh = AutoModel.from_pretrained(tiny_bert_dir)
    assert type(encoder) is type(fresh)
    assert not any(isinstance(m, (Plugin, PluggedOutput)) for m in encoder.modules()) and not lora_layers(encoder)
    assert encoder.state_dict().keys() == fresh.state_dict().keys()
    assert all(p.requires_grad for p in encoder.parameters()) and "peft_config" not in vars(encoder)
    with torch.no_grad():
        assert torch.allclose(encoder.eval()(**inputs).last_hidden_state, fresh.eval()(**inputs).last_hidden_state)
    with pytest.raises(CTRError, match="unload"):
        model.predict(["good"], task=0)
    with pytest.raises(CTRError, match="unload"):
        model.unload()
    again = get_continual_model(encoder, TINY_PLUGIN, method="ctr", tokenizer=model.tokenizer)
    ContinualLearner(again, training=FAST).learn_task("sentiment", [("good", "pos"), ("bad", "neg")] * 4)
    assert len(again.plugins) == 4


def test_a_model_that_fine_tunes_its_encoder_refuses_to_disable_or_unload(tiny_bert_dir):
    model = get_continual_model(tiny_bert_dir, dataclasses.replace(TINY_PLUGIN, plugin_type="none"), method="bert_ncl")
    with pytest.raises(CTRError, match="train_encoder=True"), model.disable_plugins():
        pass
    with pytest.raises(CTRError, match="train_encoder=True"):
        model.unload()
    frozen = get_continual_model(tiny_bert_dir, TINY_PLUGIN, method="ctr")
    frozen.encoder.embeddings.word_embeddings.weight.requires_grad_(True)
    with pytest.raises(CTRError, match="embeddings.word_embeddings.weight"):
        frozen.unload()


# ---- encoders as users load them -----------------------------------------------------------------


def test_a_sequence_classification_model_is_unwrapped_to_its_encoder_saying_which_head_went(tiny_bert_dir, caplog):
    torch.manual_seed(0)
    wrapper = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=4)
    with caplog.at_level(logging.WARNING):
        model = get_continual_model(wrapper, TINY_PLUGIN, method="ctr")
    assert model.encoder is wrapper.bert
    assert "BertForSequenceClassification" in caplog.text and "classifier (Linear 32 -> 4)" in caplog.text
    ContinualLearner(model, training=FAST).learn_task("sentiment", [("good great", "pos"), ("bad awful", "neg")] * 4)
    assert [p.label for p in model.predict(["good", "bad"], task="sentiment")]


def _tiny(model_cls, config_cls, **size):
    torch.manual_seed(0)
    return model_cls(config_cls(vocab_size=30, **size))


def test_an_encoder_the_plugins_cannot_go_into_is_refused_before_any_work(tiny_bert_dir):
    from transformers import (
        AutoTokenizer,
        DebertaConfig,
        DebertaModel,
        DistilBertConfig,
        DistilBertModel,
        T5Config,
        T5Model,
    )

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    deberta_v1 = _tiny(DebertaModel, DebertaConfig, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    with pytest.raises(CTRError, match=r"cannot carry plugin kind 'ctr'.*output sublayers"):
        get_continual_model(deberta_v1, TINY_PLUGIN, method="ctr", tokenizer=tokenizer)
    distil = _tiny(DistilBertModel, DistilBertConfig, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    flags = [p.requires_grad for p in distil.parameters()]
    lora = dataclasses.replace(TINY_PLUGIN, plugin_type="lora")
    with pytest.raises(CTRError, match=r"cannot carry plugin kind 'lora'.*no entry for model type 'distilbert'"):
        get_continual_model(distil, lora, method="lora_ncl", tokenizer=tokenizer)
    assert [p.requires_grad for p in distil.parameters()] == flags and not lora_layers(distil)
    # with no plugin to place, DistilBERT (no token_type_ids) serves frozen heads
    heads = get_continual_model(distil, dataclasses.replace(TINY_PLUGIN, plugin_type="none"), tokenizer=tokenizer)
    heads.add_task("t", ["a", "b"])
    assert len(heads.predict(["good", "bad"], task="t")) == 2
    t5 = _tiny(T5Model, T5Config, d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16)
    with pytest.raises(CTRError, match="encoder-decoder"):
        get_continual_model(t5, TINY_PLUGIN, method="ctr", tokenizer=tokenizer)
    with pytest.raises(CTRError, match=r"must be a transformers model.*no a `config`"):
        get_continual_model(nn.Linear(3, 3), TINY_PLUGIN, method="ctr", tokenizer=tokenizer)
