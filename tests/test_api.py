"""The public Python API, as the README's "From Python" section uses it: plugins injected into
one's own encoder, tasks learned from lists and ``datasets.Dataset``s, ``SequenceClassifierOutput``
from ``forward``, mixed-task ``predict``, JSON configs, the model card, and the Hub round trip
(offline: the upload through a stand-in for ``HfApi``, the download from a hub-cache layout)."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ctr_plugin import (
    CheckpointError,
    ContinualLearner,
    ContinualModel,
    CTRError,
    PluginConfig,
    TrainingConfig,
    UnprotectedTrainingWarning,
    get_continual_model,
)
from ctr_plugin._version import __version__
from ctr_plugin.data.bundled import BUNDLED_DATASETS

from conftest import TINY_PLUGIN, keyword_task

FAST = TrainingConfig(epochs=2, lr=1e-2, progress=False)
SENTIMENT = keyword_task("sentiment", [["good", "great"], ["bad", "awful"]])
COLOUR = keyword_task("colour", [["red", "pink"], ["blue", "green"], ["cat", "dog"]])


def as_pairs(split, names):
    """A split as the (text, label name) tuples a user would write."""
    return [(text, names[y]) for text, y in zip(split.texts, split.labels)]


@pytest.fixture(scope="module")
def learned(tiny_bert_dir):
    """A CTR model on a user-loaded encoder that learned two tasks: one from lists, one from Datasets."""
    from datasets import ClassLabel, Dataset, Features, Value

    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(tiny_bert_dir)
    model = get_continual_model(encoder, TINY_PLUGIN, method="ctr")
    learner = ContinualLearner(model, training=FAST)
    names = SENTIMENT.label_names
    row = learner.learn_task(
        "sentiment",
        as_pairs(SENTIMENT.train, names),
        as_pairs(SENTIMENT.validation, names),
        as_pairs(SENTIMENT.test, names),
    )
    features = Features({"text": Value("string"), "label": ClassLabel(names=COLOUR.label_names)})

    def dataset(split):
        return Dataset.from_dict({"text": split.texts, "label": split.labels}, features=features)

    row2 = learner.learn_task(
        "colour",
        dataset(COLOUR.train),
        dataset(COLOUR.validation),
        dataset(COLOUR.test),
        source=BUNDLED_DATASETS["bbc_news"].description,
    )
    return model, learner, encoder, [row, row2]


def test_get_continual_model_puts_plugins_into_the_users_own_encoder(learned):
    model, learner, encoder, rows = learned
    assert model.encoder is encoder and len(model.plugins) == 2 * encoder.config.num_hidden_layers
    assert not any(
        p.requires_grad for n, p in encoder.named_parameters() if ".plugin." not in n and "LayerNorm" not in n
    )
    assert model.method_name == "ctr" and model.task_names == ["sentiment", "colour"]
    assert model.label_names[1] == COLOUR.label_names  # from the ClassLabel feature
    assert list(rows[0]) == ["sentiment"] and list(rows[1]) == ["sentiment", "colour"]
    assert learner.results.acc_matrix[1] == [rows[1]["sentiment"], rows[1]["colour"]]


def test_evaluate_scores_a_task_on_its_test_data_or_on_data_given(learned):
    _, learner, _, rows = learned
    assert learner.evaluate("colour")["acc"] == pytest.approx(rows[1]["colour"], abs=0.01)
    given = learner.evaluate("sentiment", as_pairs(SENTIMENT.test, SENTIMENT.label_names))
    assert given["acc"] == pytest.approx(rows[1]["sentiment"], abs=0.01)


def test_a_method_contradicting_the_config_or_the_model_is_refused(tiny_bert_dir, learned):
    with pytest.raises(CTRError, match="plugin_type 'adapter'"):
        get_continual_model(tiny_bert_dir, TINY_PLUGIN, method="ewc")
    with pytest.raises(CTRError, match="already carries plugins"):
        get_continual_model(learned[0].encoder, TINY_PLUGIN)
    with pytest.raises(CTRError, match="trains plugin_type"):
        ContinualLearner(learned[0], method="adapter_ncl")


def test_forward_returns_a_sequence_classifier_output_with_the_loss_when_labels_are_given(learned):
    model = learned[0].eval()
    batch = model.tokenize(["good red cat", "blue", "the dog was bad"])
    task_ids, labels = torch.tensor([1, 0, 1]), torch.tensor([2, 0, 1])
    with torch.no_grad():
        out = model(**batch, task_ids=task_ids, labels=labels)
        bare = model(**batch, task_ids=task_ids)
    assert isinstance(out, SequenceClassifierOutput) and bare.loss is None
    assert out.logits.shape == (3, 3) and torch.isinf(out.logits[1, 2])  # sentiment has two labels
    assert out.loss == pytest.approx(torch.nn.functional.cross_entropy(out.logits, labels).item())
    with pytest.raises(CTRError, match="needs task_ids"):
        model(**batch)


def test_predict_on_a_mixed_task_list_equals_per_task_calls(learned):
    model = learned[0]
    texts = ["good red cat", "blue", "the dog was very bad", "pink hen", "a great cow", "green"]
    tasks = ["colour", "sentiment", "sentiment", "colour", "sentiment", "colour"]
    mixed = model.predict(texts, task=tasks, batch_size=4)  # batches hold both tasks
    for text, task, got in zip(texts, tasks, mixed):
        alone = model.predict([text], task=task)[0]
        assert (got.task, got.label, len(got.logits)) == (
            task,
            alone.label,
            len(model.label_names[model.task_id(task)]),
        )
        assert got.logits == pytest.approx(alone.logits, abs=1e-5)
    with pytest.raises(CTRError, match="one task per text"):
        model.predict(texts, task=tasks[:2])


def test_plugin_config_saves_as_json(tmp_path):
    config = PluginConfig(plugin_type="hat_adapter", adapter_size=24, routing_kernel_sizes=(2, 3))
    config.save_json(tmp_path / "plugin.json")
    assert PluginConfig.load_json(tmp_path / "plugin.json") == config


def test_training_a_hat_model_with_a_plain_optimizer_warns_and_the_learner_does_not(tiny_bert_dir):
    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN)
    model.add_task("t", ["a", "b"])
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnprotectedTrainingWarning)
        out = model(
            **model.tokenize(["good"]), task_ids=torch.tensor([0]), labels=torch.tensor([1])
        )  # calling is not training
    with pytest.warns(UnprotectedTrainingWarning, match="ContinualLearner"):
        out.loss.backward()
    fresh = get_continual_model(tiny_bert_dir, TINY_PLUGIN)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnprotectedTrainingWarning)
        ContinualLearner(fresh, epochs=1, progress=False).learn_task("t", [("good", "a"), ("bad", "b")] * 4)


# ---- the model card --------------------------------------------------------------------------------


def test_every_checkpoint_carries_a_model_card_the_hub_can_read(learned, tmp_path):
    from huggingface_hub import ModelCard

    _, learner, _, rows = learned
    learner.save_pretrained(tmp_path / "ckpt")
    card = ModelCard.load(tmp_path / "ckpt" / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "ctr_plugin" and "pipeline_tag" not in meta and meta["inference"] is False
    # the colour task was declared as BBC News data: non-commercial, said in the licence and on top
    assert meta["license"] == "other" and meta["license_name"] == "non-commercial-training-data"
    assert "non-commercial" in meta["tags"] and "ctr" in meta["tags"]
    text = card.text
    assert "Non-commercial use only" in text.split("## ")[0] and "`colour`" in text.split("## ")[0]
    for label in (*SENTIMENT.label_names, *COLOUR.label_names):
        assert f"`{label}`" in text
    assert "Greene & Cunningham" in text and "mask_lambda=0.75" in text
    assert f"ctr_plugin version: {__version__}" in text
    assert f"| colour | {rows[1]['sentiment']:.2f} | {rows[1]['colour']:.2f} |" in text


def test_the_card_names_the_bundled_encoder_and_its_licence():
    from ctr_plugin.checkpoint.model_card import model_card

    config = {
        "encoder": {"name_or_path": "bundled:all-MiniLM-L6-v2"},
        "plugin": PluginConfig().to_dict(),
        "tasks": [{"name": "spam", "labels": ["ham", "spam"], "source": BUNDLED_DATASETS["sms_spam"].description}],
    }
    meta = yaml.safe_load(model_card(config, "9.9").split("---")[1])
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    assert "CC BY 4.0" in model_card(config, "9.9")


# ---- from_pretrained with an encoder already loaded, and the Hub ------------------------------------


def test_from_pretrained_takes_an_encoder_already_loaded_without_loading_another(
    learned, tmp_path, tiny_bert_dir, monkeypatch
):
    model = learned[0]
    model.save_pretrained(tmp_path / "ckpt")
    serving = AutoModel.from_pretrained(tiny_bert_dir)

    def refuse(*_args, **_kwargs):
        raise AssertionError("the encoder was loaded a second time")

    monkeypatch.setattr("ctr_plugin.checkpoint.format.load_encoder", refuse)
    loaded = ContinualModel.from_pretrained(tmp_path / "ckpt", encoder=serving)
    assert loaded.encoder is serving
    assert loaded.predict(["good red cat"], task="colour")[0].logits == pytest.approx(
        model.predict(["good red cat"], task="colour")[0].logits, abs=1e-5
    )


def test_push_to_hub_uploads_the_checkpoint_and_never_the_encoder(learned, monkeypatch):
    from huggingface_hub import HfApi

    model = learned[0]
    calls, uploaded = {}, {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = (repo_id, kwargs)
        uploaded.update({p.name: p.stat().st_size for p in Path(folder_path).rglob("*") if p.is_file()})
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert model.push_to_hub("someone/ctr-demo", private=True) == "commit-info"
    assert calls["create_repo"] == ("someone/ctr-demo", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert calls["upload_folder"][0] == "someone/ctr-demo" and calls["upload_folder"][1]["repo_type"] == "model"
    assert {"plugins.safetensors", "ctr_config.json", "README.md", "tokenizer.json"} <= set(uploaded)
    assert not {"model.safetensors", "pytorch_model.bin", "config.json"} & set(uploaded)  # no encoder
    from safetensors import safe_open

    # the weights file holds no frozen encoder tensor: only plugins, heads and trained LayerNorms
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(f"{tmp}/c")
        with safe_open(f"{tmp}/c/plugins.safetensors", "pt") as f:
            keys = list(f.keys())
    encoder_keys = [k for k in keys if k.startswith("encoder.")]
    assert encoder_keys and all(".plugin." in k or "LayerNorm" in k for k in encoder_keys)


def _hub_cache_snapshot(cache, repo_id: str, checkpoint) -> str:
    """Lay ``checkpoint`` out as huggingface_hub's cache holds a downloaded repo."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(checkpoint, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return revision


def test_from_pretrained_loads_a_repo_id_from_the_hub_cache_offline(learned, tmp_path, tiny_bert_dir, monkeypatch):
    import huggingface_hub

    model = learned[0]
    model.save_pretrained(tmp_path / "ckpt")
    cache = tmp_path / "hub"
    revision = _hub_cache_snapshot(cache, "someone/ctr-demo", tmp_path / "ckpt")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # as HF_HUB_CACHE=... would set it
    loaded = ContinualModel.from_pretrained("someone/ctr-demo", encoder=tiny_bert_dir)
    texts = ["good red cat", "blue"]
    for got, expected in zip(loaded.predict(texts, task="colour"), model.predict(texts, task="colour")):
        assert got.logits == pytest.approx(expected.logits, abs=1e-5)
    assert (
        ContinualModel.from_pretrained("someone/ctr-demo", encoder=tiny_bert_dir, revision=revision).task_names
        == model.task_names
    )
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE=1 is set"):
        ContinualModel.from_pretrained("someone/not-there", encoder=tiny_bert_dir)


# ---- learning task by task: tasks without test data, refused tasks, reused methods --------------------


def test_a_task_learned_without_test_data_saves_and_its_checkpoint_says_the_metrics_are_not_available(
    tiny_bert_dir, tmp_path, monkeypatch
):
    import json

    from huggingface_hub import HfApi

    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN)
    learner = ContinualLearner(model, training=TrainingConfig(epochs=1, lr=1e-2, progress=False))
    learner.learn_task("sentiment", as_pairs(SENTIMENT.train, SENTIMENT.label_names))  # no validation, no test data
    row = learner.learn_task(
        "colour", as_pairs(COLOUR.train, COLOUR.label_names), test=as_pairs(COLOUR.test, COLOUR.label_names)
    )
    assert row["sentiment"] is None and row["colour"] is not None
    learner.save_pretrained(tmp_path / "ckpt")  # the summary of a sequence with an untested task raised TypeError
    progress = json.loads((tmp_path / "ckpt" / "ctr_config.json").read_text())["progress"]
    assert not {"final_acc", "final_mf1", "forward_acc", "forgetting_rate"} & set(
        progress
    )  # no mean over colour alone
    assert "'sentiment'" in progress["metrics_unavailable"] and "without test data" in progress["metrics_unavailable"]
    card = (tmp_path / "ckpt" / "README.md").read_text()
    assert "Summary metrics not available" in card and "| metric | value |" not in card
    assert ContinualModel.from_pretrained(tmp_path / "ckpt").task_names == ["sentiment", "colour"]
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: None)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kwargs: "commit-info")
    assert learner.push_to_hub("someone/ctr-demo") == "commit-info"


def test_a_refused_task_changes_nothing_and_the_learner_goes_on(tiny_bert_dir):
    from ctr_plugin import TaskError

    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN)
    learner = ContinualLearner(model, training=TrainingConfig(epochs=1, lr=1e-2, progress=False))
    sentiment = as_pairs(SENTIMENT.train, SENTIMENT.label_names)
    learner.learn_task("sentiment", sentiment, test=as_pairs(SENTIMENT.test, SENTIMENT.label_names))
    with pytest.raises(TaskError, match="already has a task named 'sentiment'"):
        learner.learn_task("sentiment", sentiment)
    with pytest.raises(TaskError, match="two distinct label names"):
        learner.learn_task("twice", [("good", "a"), ("bad", "b")], labels=["a", "b", "a"])
    assert (
        [t.name for t in learner.tasks] == ["sentiment"]
        and learner.results.tasks == ["sentiment"]
        and model.task_names == ["sentiment"]
    )
    row = learner.learn_task(
        "colour", as_pairs(COLOUR.train, COLOUR.label_names), test=as_pairs(COLOUR.test, COLOUR.label_names)
    )
    assert list(row) == ["sentiment", "colour"] and None not in row.values()
    assert (
        learner.results.tasks == ["sentiment", "colour"]
        and learner.results.completed_tasks == 2
        and len(learner.results.acc_matrix) == 2
    )
    assert model.task_names == ["sentiment", "colour"] and len(learner.results.curves) == 2


def test_a_method_reused_with_other_training_options_gets_the_new_ones(tiny_bert_dir):
    from ctr_plugin.continual.methods import get_method
    from ctr_plugin.continual.services import LoopServices

    method = get_method("ctr")
    method.services = LoopServices(TrainingConfig(batch_size=2, max_length=8))  # left by an earlier run
    learner = ContinualLearner(
        get_continual_model(tiny_bert_dir, TINY_PLUGIN), method=method, epochs=1, batch_size=16, progress=False
    )
    learner.learn_task("sentiment", as_pairs(SENTIMENT.train, SENTIMENT.label_names))
    assert method.services.training is learner.training and method.services.training.batch_size == 16
