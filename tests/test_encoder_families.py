"""Encoders as users load them: BERT, RoBERTa, DistilBERT, ModernBERT and DeBERTa-v2 each carry
the plugins at their own places (plugins/injection.py's PLACES, BERT-likes found by shape), and
LoRA goes where peft's own mapping says (plugins/lora.py). Each family is a tiny random model built
from its config in code; no tokenizer of its own is needed (a tiny WordPiece one feeds the ids)."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch
import transformers
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import AutoModelForSequenceClassification, BertTokenizerFast

from ctr_plugin.continual.learner import ContinualLearner, get_continual_model
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.errors import CTRError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins.injection import PluggedOutput
from ctr_plugin.plugins.lora import lora_layers

from conftest import SPECIAL, TINY_PLUGIN, WORDS, keyword_task

VOCAB = len(SPECIAL) + len(WORDS)
SIZE = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=80,
    initializer_range=0.1,
)
SPECIAL_IDS = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3)

# family -> (config, the encoder class, the last names of the norms that train with the plugins,
# the modules whose output the plugins take)
FAMILIES = {
    "bert": (lambda: transformers.BertConfig(**SIZE), transformers.BertModel, {"LayerNorm"}, {"dropout"}),
    "roberta": (
        lambda: transformers.RobertaConfig(**SIZE, **SPECIAL_IDS),
        transformers.RobertaModel,
        {"LayerNorm"},
        {"dropout"},
    ),
    "distilbert": (
        lambda: transformers.DistilBertConfig(
            vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=80
        ),
        transformers.DistilBertModel,
        {"sa_layer_norm", "output_layer_norm"},
        {"out_lin", "dropout"},
    ),
    "modernbert": (
        lambda: transformers.ModernBertConfig(
            **SIZE, **SPECIAL_IDS, cls_token_id=2, sep_token_id=3, attn_implementation="sdpa"
        ),
        transformers.ModernBertModel,
        {"attn_norm", "mlp_norm"},
        {"out_drop", "Wo"},
    ),
    "deberta-v2": (
        lambda: transformers.DebertaV2Config(**SIZE),
        transformers.DebertaV2Model,
        {"LayerNorm"},
        {"dropout"},
    ),
}
LORA_FAMILIES = [f for f in FAMILIES if f in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING]
FAST = TrainingConfig(epochs=1, lr=1e-2, batch_size=8, progress=False)
TASKS = [
    keyword_task("sentiment", [["good", "great"], ["bad", "awful"]], n_train=16, n_test=8),
    keyword_task("colour", [["red", "pink"], ["blue", "green"], ["cat", "dog"]], n_train=16, n_test=8),
]
PLUGIN_TYPE = {"ctr": "ctr", "adapter_ncl": "adapter", "lora_ncl": "lora"}


def encoder(family: str, seed: int = 0):
    """The family's tiny encoder; the same weights for the same seed (a fresh copy to load onto)."""
    config, model_class, _, _ = FAMILIES[family]
    torch.manual_seed(seed)
    return model_class(config()).eval()


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("vocab")
    (directory / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    return str(directory)


def tokenizer(family: str, vocab_dir: str):
    # As the families' own tokenizers: only BERT's and DeBERTa's give token_type_ids.
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if family in ("bert", "deberta-v2") else [])
    return BertTokenizerFast.from_pretrained(vocab_dir, do_lower_case=True, model_input_names=names)


def model_for(family: str, method: str, vocab_dir: str, **plugin) -> ContinualModel:
    config = dataclasses.replace(TINY_PLUGIN, plugin_type=PLUGIN_TYPE[method], **plugin)
    return get_continual_model(encoder(family), config, method=method, tokenizer=tokenizer(family, vocab_dir))


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIAL), VOCAB, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_carries_two_plugins_per_layer_at_its_own_places(family, vocab_dir):
    model = model_for(family, "ctr", vocab_dir)
    _, _, norms, outputs = FAMILIES[family]
    places = [name for name, m in model.encoder.named_modules() if isinstance(m, PluggedOutput)]
    assert len(places) == len(model.plugins) == 2 * model.encoder.config.num_hidden_layers
    assert {name.rsplit(".", 1)[-1] for name in places} == outputs
    trained_norms = {
        n.rsplit(".", 2)[-2] for n, p in model.encoder.named_parameters() if p.requires_grad and ".plugin." not in n
    }
    assert trained_norms == norms  # the norms of the places, and no other encoder weight (not the embeddings')


@pytest.mark.parametrize("method", ["ctr", "adapter_ncl"])
@pytest.mark.parametrize("family", FAMILIES)
def test_with_its_plugins_disabled_each_family_computes_as_the_bare_encoder(family, method, vocab_dir):
    inputs = batch()
    with torch.no_grad():
        bare = encoder(family)(**inputs).last_hidden_state
        model = model_for(family, method, vocab_dir).eval()
        model.add_task("t", ["a", "b"])
        model.context.task_ids = torch.zeros(3, dtype=torch.long)
        model.context.token_mask = inputs["attention_mask"].float()
        model.context.active_tasks = 1
        plugged = model.encoder(**inputs).last_hidden_state
        with model.disable_plugins():
            disabled = model.encoder(**inputs).last_hidden_state
        unloaded = model.unload()(**inputs).last_hidden_state
    torch.testing.assert_close(disabled, bare, rtol=0, atol=0)
    torch.testing.assert_close(unloaded, bare, rtol=0, atol=0)
    assert not torch.equal(plugged, bare)  # the plugins are in the path when enabled


@pytest.mark.parametrize("family", LORA_FAMILIES)
def test_lora_at_init_leaves_each_mapped_family_as_the_bare_encoder(family, vocab_dir):
    inputs = batch()
    with torch.no_grad():
        bare = encoder(family)(**inputs).last_hidden_state
        model = model_for(family, "lora_ncl", vocab_dir)
        targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[family]
        named = [n for n, m in model.encoder.named_modules() if m in lora_layers(model.encoder)]
        assert named and {n.rsplit(".", 1)[-1] for n in named} == set(targets)  # peft's own targets
        torch.testing.assert_close(model.encoder(**inputs).last_hidden_state, bare, rtol=0, atol=0)  # B = 0


TRAINED = [(f, m) for f in FAMILIES for m in ("ctr", "adapter_ncl")] + [(f, "lora_ncl") for f in LORA_FAMILIES]


@pytest.mark.parametrize(("family", "method"), TRAINED)
def test_each_family_learns_two_tasks_changing_only_plugins_heads_and_norms_and_reloads_equal(
    family, method, tmp_path, vocab_dir
):
    model = model_for(family, method, vocab_dir)
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    learner = ContinualLearner(model, training=FAST)
    for task in TASKS:
        learner.learn_task(task.name, task)
    losses = [loss for curve in learner.results.curves for loss in curve["train_loss"]]
    assert len(learner.results.curves) == 2 and losses and all(math.isfinite(x) for x in losses)

    _, _, norms, _ = FAMILIES[family]
    changed = {n for n, p in model.encoder.named_parameters() if n not in before or not torch.equal(p, before[n])}
    own = {n for n in changed if ".plugin." not in n and "lora_" not in n}  # the encoder's own weights
    assert all(n.rsplit(".", 2)[-2] in norms for n in own), sorted(own)
    assert any(".plugin." in n or "lora_" in n for n in changed)

    model.save_pretrained(tmp_path / "ckpt")
    loaded = ContinualModel.from_pretrained(tmp_path / "ckpt", encoder=encoder(family)).eval()
    inputs = batch(seed=2)
    with torch.no_grad():
        for task in range(2):
            task_ids = torch.full((3,), task)
            expected = model.eval()(**inputs, task_ids=task_ids).logits
            torch.testing.assert_close(loaded(**inputs, task_ids=task_ids).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_task_model_of_each_family_gives_its_base_model_and_says_so(family, caplog, vocab_dir):
    config, model_class, _, _ = FAMILIES[family]
    task_config = config()
    task_config.num_labels = 3
    torch.manual_seed(0)
    wrapper = AutoModelForSequenceClassification.from_config(task_config)
    with caplog.at_level(logging.WARNING):
        model = model_for_module(wrapper, family, vocab_dir)
    assert type(model.encoder) is model_class and model.encoder is wrapper.base_model
    assert type(wrapper).__name__ in caplog.text and "is dropped" in caplog.text
    model.add_task("t", ["a", "b"])
    with torch.no_grad():
        assert model.eval()(**batch(), task_ids=torch.zeros(3, dtype=torch.long)).logits.shape == (3, 2)


def model_for_module(module, family: str, vocab_dir: str) -> ContinualModel:
    return get_continual_model(module, TINY_PLUGIN, method="ctr", tokenizer=tokenizer(family, vocab_dir))


def test_auto_model_for_sequence_classification_of_a_bert_trains_and_predicts(caplog, vocab_dir):
    torch.manual_seed(0)
    wrapper = AutoModelForSequenceClassification.from_config(FAMILIES["bert"][0]())  # two labels
    with caplog.at_level(logging.WARNING):
        model = model_for_module(wrapper, "bert", vocab_dir)
    assert (
        "BertForSequenceClassification is a task model" in caplog.text and "classifier (Linear 32 -> 2)" in caplog.text
    )
    ContinualLearner(model, training=FAST).learn_task(TASKS[0].name, TASKS[0])
    assert [p.task for p in model.predict(["good cat", "bad dog"], task="sentiment")] == ["sentiment"] * 2


def test_lora_on_a_family_peft_does_not_map_is_refused_before_any_work_naming_what_to_give(vocab_dir):
    distil = encoder("distilbert")
    flags = [p.requires_grad for p in distil.parameters()]
    config = dataclasses.replace(TINY_PLUGIN, plugin_type="lora")
    with pytest.raises(CTRError, match=r"no entry for model type 'distilbert'.*q_lin.*lora_target_modules"):
        get_continual_model(distil, config, method="lora_ncl", tokenizer=tokenizer("distilbert", vocab_dir))
    assert [p.requires_grad for p in distil.parameters()] == flags and not lora_layers(distil)
    wrong = dataclasses.replace(config, lora_target_modules=("query",))
    with pytest.raises(CTRError, match=r"linear modules named 'query' \(PluginConfig.lora_target_modules\)"):
        get_continual_model(distil, wrong, method="lora_ncl", tokenizer=tokenizer("distilbert", vocab_dir))


@pytest.mark.parametrize("family", ["distilbert", "modernbert"])
def test_lora_goes_where_the_user_names_when_peft_has_no_mapping(family, tmp_path, vocab_dir):
    targets = {"distilbert": ("q_lin", "v_lin"), "modernbert": ("Wqkv",)}[family]
    model = model_for(family, "lora_ncl", vocab_dir, lora_target_modules=targets)
    assert {n.rsplit(".", 1)[-1] for n, m in model.encoder.named_modules() if m in lora_layers(model.encoder)} == set(
        targets
    )
    ContinualLearner(model, training=FAST).learn_task(TASKS[0].name, TASKS[0])
    model.save_pretrained(tmp_path / "ckpt")
    loaded = ContinualModel.from_pretrained(tmp_path / "ckpt", encoder=encoder(family)).eval()
    assert loaded.plugin_config.lora_target_modules == targets
    with torch.no_grad():
        task_ids = torch.zeros(3, dtype=torch.long)
        expected = model.eval()(**batch(), task_ids=task_ids).logits
        torch.testing.assert_close(loaded(**batch(), task_ids=task_ids).logits, expected, rtol=0, atol=0)


def test_an_architecture_without_places_is_refused_naming_what_the_plugins_need(vocab_dir):
    torch.manual_seed(0)
    deberta_v1 = transformers.DebertaModel(transformers.DebertaConfig(**SIZE))  # its own LayerNorm class
    with pytest.raises(CTRError, match=r"cannot carry plugin kind 'ctr'.*BERT-style output sublayers"):
        get_continual_model(deberta_v1, TINY_PLUGIN, method="ctr", tokenizer=tokenizer("bert", vocab_dir))
    assert not any(isinstance(m, PluggedOutput) for m in deberta_v1.modules())
