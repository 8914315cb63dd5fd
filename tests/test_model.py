"""Inference by task id, save / load, and what a broken checkpoint gets."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ctr_plugin.checkpoint.format import CONFIG_FILE, WEIGHTS_FILE
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import CheckpointError, TaskError
from ctr_plugin.modeling.model import ContinualModel

from conftest import TINY_PLUGIN

TEXTS = ["good red cat", "the dog was very bad", "blue", "a hen is not a cow and the cow is not pink", "sad"]


@pytest.fixture
def model(tiny_bert_dir) -> ContinualModel:
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    model = ContinualModel(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    model.add_task("sentiment", ["negative", "positive"])
    model.add_task("colour", ["warm", "cold", "none"])
    with torch.no_grad():  # move away from the near-identity start so differences would show
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_predict_returns_label_probability_and_logits(model):
    preds = model.predict(TEXTS, task="colour")
    assert len(preds) == len(TEXTS)
    for p in preds:
        assert p.label in ("warm", "cold", "none") and 0 < p.probability <= 1 and len(p.logits) == 3
        assert p.probability == pytest.approx(torch.tensor(p.logits).softmax(-1).max().item(), abs=1e-6)


def test_predictions_do_not_depend_on_batch_size_or_neighbours(model):
    reference = model.predict(TEXTS, task="sentiment", batch_size=len(TEXTS))
    for batch_size in (1, 2, 3):
        other = model.predict(TEXTS, task="sentiment", batch_size=batch_size)
        assert [p.label for p in other] == [p.label for p in reference]
        for a, b in zip(other, reference):
            assert a.logits == pytest.approx(b.logits, abs=1e-5)
    alone = model.predict([TEXTS[3]], task="sentiment")[0]
    assert alone.logits == pytest.approx(reference[3].logits, abs=1e-5)


def test_evaluation_is_deterministic(model):
    first = model.predict(TEXTS, task=1)
    second = model.predict(TEXTS, task=1)
    assert [p.logits for p in first] == [p.logits for p in second]


def test_save_then_load_gives_identical_logits(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    loaded = ContinualModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.task_names == ["sentiment", "colour"] and loaded.label_names[1] == ["warm", "cold", "none"]
    for task in ("sentiment", "colour"):
        assert [p.logits for p in loaded.predict(TEXTS, task=task)] == [
            p.logits for p in model.predict(TEXTS, task=task)
        ]


def test_checkpoint_is_small_and_holds_no_encoder_copy(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "ckpt" / WEIGHTS_FILE)).keys()
    assert not any("word_embeddings" in k or "attention.self.query" in k for k in keys)
    assert any(k.endswith("masks.cumulative_0") for k in keys)  # HAT cumulative masks travel
    config = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())
    assert config["encoder"]["hidden_size"] == 32 and [t["name"] for t in config["tasks"]] == ["sentiment", "colour"]


def test_unknown_task_names_the_closest(model):
    with pytest.raises(TaskError, match="Did you mean 'colour'"):
        model.predict(TEXTS, task="color")
    with pytest.raises(TaskError, match="out of range"):
        model.predict(TEXTS, task=7)


@pytest.mark.parametrize(
    "damage", ["missing_weights", "truncated_weights", "corrupt_config", "newer_format", "missing_dir"]
)
def test_broken_checkpoints_get_clear_errors(model, tmp_path, damage):
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    weights, config = ckpt / WEIGHTS_FILE, ckpt / CONFIG_FILE
    if damage == "missing_weights":
        weights.unlink()
    elif damage == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:200])
    elif damage == "corrupt_config":
        config.write_text("{not json")
    elif damage == "newer_format":
        config.write_text(json.dumps(json.loads(config.read_text()) | {"format_version": 99}))
    else:
        shutil.rmtree(ckpt)
    expected = {
        "missing_weights": "missing",
        "truncated_weights": "corrupt or truncated",
        "corrupt_config": "corrupt",
        "newer_format": "Upgrade ctr_plugin",
        "missing_dir": "does not exist",
    }[damage]
    with pytest.raises(CheckpointError, match=expected):
        ContinualModel.from_pretrained(ckpt)


def test_checkpoint_refuses_a_different_encoder(model, tmp_path, tiny_roberta_dir):
    model.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="encoder given is different"):
        ContinualModel.from_pretrained(tmp_path / "ckpt", encoder=tiny_roberta_dir)


def test_saving_over_a_checkpoint_replaces_it_whole(model, tmp_path):
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    (ckpt / "stale.txt").write_text("from an older save")
    model.save_pretrained(ckpt)
    assert not (ckpt / "stale.txt").exists() and (ckpt / WEIGHTS_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging folders left behind


def test_a_malicious_pickle_in_a_checkpoint_is_never_executed(model, tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    for name in ("pytorch_model.bin", "plugins.bin", "training_args.bin", "optimizer.pt"):
        (ckpt / name).write_bytes(pickle.dumps(Exploit()))
    loaded = ContinualModel.from_pretrained(ckpt)
    assert loaded.task_names == ["sentiment", "colour"] and not marker.exists()
    (ckpt / WEIGHTS_FILE).write_bytes(pickle.dumps(Exploit()))  # a pickle posing as the weights
    with pytest.raises(CheckpointError, match="corrupt"):
        ContinualModel.from_pretrained(ckpt)
    assert not marker.exists()
