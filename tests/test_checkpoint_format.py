"""Checkpoint formats: today's (3), the one before it (2), without the config's digest, and format 1,
which held one tensor per task; checkpoints of one-model-per-task methods written before those kept
every task's weights. The digests that make an edited config or a deleted digest a refusal, the
one sanctioned edit (relabelling a task), and the files' permissions.

tests/fixtures/checkpoint_v1 holds two format-1 checkpoints made by ctr_plugin as of commit d68fa21
(tests/fixtures/make_checkpoint_v1.py), on a tiny encoder saved beside them, and the logits that
code gave on a mixed-task batch.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ctr_plugin.checkpoint.format import CARD_FILE, CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE
from ctr_plugin.checkpoint.relabelling import relabel_task
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import CheckpointError, TaskError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins import PluginConfig

from conftest import TINY_PLUGIN

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v1"
EXPECTED = json.loads((FIXTURE / "expected_logits.json").read_text())


def logits_of(model: ContinualModel) -> torch.Tensor:
    with torch.no_grad():
        return model(**model.tokenize(EXPECTED["texts"]), task_ids=torch.tensor(EXPECTED["task_ids"])).logits


@pytest.mark.parametrize("name", ["ctr", "ctr_freeze_old_capsules"])
def test_a_format_1_checkpoint_loads_and_predicts_as_the_code_that_wrote_it(name, tmp_path):
    assert json.loads((FIXTURE / name / CONFIG_FILE).read_text())["format_version"] == 1
    model = ContinualModel.from_pretrained(FIXTURE / name, encoder=str(FIXTURE / "encoder"))
    assert model.plugin_config.freeze_old_capsules == (name == "ctr_freeze_old_capsules")
    torch.testing.assert_close(logits_of(model), torch.tensor(EXPECTED["logits"][name]), rtol=1e-5, atol=1e-5)

    model.save_pretrained(tmp_path / "again")  # written again in today's format, the same model
    assert json.loads((tmp_path / "again" / CONFIG_FILE).read_text())["format_version"] == FORMAT_VERSION == 3
    old_keys, new_keys = (
        load_file(str(FIXTURE / name / WEIGHTS_FILE)).keys(),
        load_file(str(tmp_path / "again" / WEIGHTS_FILE)).keys(),
    )
    assert any(k.endswith("task_capsules.w1.2") for k in old_keys) and not any(
        k.endswith("task_capsules.w1.2") for k in new_keys
    )
    again = ContinualModel.from_pretrained(tmp_path / "again", encoder=str(FIXTURE / "encoder"))
    torch.testing.assert_close(logits_of(again), logits_of(model), rtol=0, atol=0)
    old_size = sum(v.numel() for v in load_file(str(FIXTURE / name / WEIGHTS_FILE)).values())
    assert sum(v.numel() for v in load_file(str(tmp_path / "again" / WEIGHTS_FILE)).values()) == old_size


def test_a_format_1_checkpoint_of_frozen_capsules_keeps_earlier_tasks_out_of_training():
    model = ContinualModel.from_pretrained(FIXTURE / "ctr_freeze_old_capsules", encoder=str(FIXTURE / "encoder"))
    plugin = model.plugins[0]
    assert plugin.transfer_routing.routes_frozen.shape[0] == 2 and plugin.transfer_routing.routes.shape[0] == 1
    assert plugin.task_capsules.w1_frozen.shape[1] == 2 * plugin.task_capsules.capsule_hidden


@pytest.mark.parametrize(
    "method, plugin_type, serves_every_task",
    [("lora_one", "lora", False), ("bert_one", "none", False), ("lora_one", "lora_per_task", True)],
)
def test_an_old_one_model_per_task_checkpoint_serves_the_only_task_whose_weights_it_holds(
    method, plugin_type, serves_every_task, tmp_path
):
    """Before the one-model-per-task methods kept every task's weights (their own LoRA adapter, or
    their own copy of the encoder), their checkpoints held the last task's only: loaded, such a
    checkpoint refuses the earlier tasks rather than answer them with the last task's weights."""
    encoder, tokenizer = load_encoder(str(FIXTURE / "encoder"))
    model = ContinualModel(
        encoder, tokenizer, PluginConfig(plugin_type=plugin_type, pooling="mean"), str(FIXTURE / "encoder")
    )
    model.add_task("sentiment", ["negative", "positive"])
    model.add_task("colour", ["red", "blue"])
    model.method_name = method
    model.save_pretrained(tmp_path / "old")
    loaded = ContinualModel.from_pretrained(tmp_path / "old")
    assert loaded.predict(["a red one"], task="colour")[0].task == "colour"
    if serves_every_task:
        assert loaded.predict(["a good one"], task="sentiment")[0].task == "sentiment"
        return
    with pytest.raises(TaskError, match="holds only its last task's weights: it can classify task 'colour' only"):
        loaded.predict(["a good one"], task="sentiment")
    with pytest.raises(TaskError, match="holds only its last task's weights"):
        loaded.predict(["a good one", "a red one"], task=["sentiment", "colour"])


# ---- the config's digest ------------------------------------------------------------------------
TEXTS = ["good red cat", "the dog was very bad", "blue", "a hen is not a cow", "sad"]


@pytest.fixture
def saved(tiny_bert_dir, tmp_path) -> Path:
    """A checkpoint of two tasks (one of text pairs), its weights moved off their start."""
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    model = ContinualModel(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    model.add_task("sentiment", ["negative", "positive"], source="synthetic")
    model.add_task("colour", ["warm", "cold", "none"], pair=True)
    model.method_name = "ctr"
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "ckpt", extra={"seed": 3, "progress": {"completed_tasks": 2}})
    return tmp_path / "ckpt"


def edit_config(directory: Path, change) -> None:
    config = json.loads((directory / CONFIG_FILE).read_text())
    change(config)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def swap(items: list, i: int = 0, j: int = 1) -> None:
    items[i], items[j] = items[j], items[i]


PREDICTION_EDITS = {
    "reordered labels": (
        lambda c: swap(c["tasks"][1]["labels"]),
        r"the labels \(their names or order\) of task 1 \('colour'\)",
    ),
    "renamed label": (
        lambda c: c["tasks"][0]["labels"].__setitem__(0, "bad"),
        r"the labels .* of task 0 \('sentiment'\)",
    ),
    "reordered tasks": (lambda c: swap(c["tasks"]), r"the name of task 0 \('colour'\).*the name of task 1"),
    "renamed task": (lambda c: c["tasks"][0].__setitem__("name", "mood"), r"the name of task 0 \('mood'\)"),
    "pair flag": (lambda c: c["tasks"][1].__setitem__("pair", False), r"the text-pair flag of task 1"),
    "plugin config": (lambda c: c["plugin"].__setitem__("pooling", "cls"), r"`plugin`"),
    "head dropout": (lambda c: c.__setitem__("head_dropout", 0.5), r"`head_dropout`"),
    "train_encoder": (lambda c: c.__setitem__("train_encoder", True), r"`train_encoder`"),
    "method": (lambda c: c.__setitem__("method", "lora_one"), r"`method`"),
    "task_weights": (lambda c: c.__setitem__("task_weights", [0]), r"`task_weights`"),
    "encoder identity": (lambda c: c["encoder"].__setitem__("fingerprint", "0" * 16), r"`encoder`"),
    "a task dropped": (lambda c: c["tasks"].pop(), r"the number of tasks \(2 when saved, 1 now\)"),
}


@pytest.mark.parametrize("edit", list(PREDICTION_EDITS))
def test_an_edit_of_the_config_that_changes_predictions_is_refused_naming_what_changed(saved, edit):
    """Reordering a task's labels flips every prediction of that task without a word, since the
    weights are unchanged: the config's digest (format 3) makes every such edit a refusal."""
    change, named = PREDICTION_EDITS[edit]
    edit_config(saved, change)
    with pytest.raises(CheckpointError, match=f"was edited after it was saved: .*{named}.*ctr-relabel"):
        ContinualModel.from_pretrained(saved)
    with pytest.raises(CheckpointError, match="was edited after it was saved"):
        ContinualModel.read_config(saved)  # what --resume and --from-checkpoint read


def test_edits_that_change_no_prediction_still_load(saved, tiny_bert_dir, tmp_path):
    before = ContinualModel.from_pretrained(saved).predict(TEXTS, task="sentiment")
    moved = tmp_path / "encoder_moved_here"
    moved.symlink_to(tiny_bert_dir)

    def change(config):
        config["seed"], config["progress"] = 4, {"completed_tasks": 1}
        config["tasks"][0]["source"] = "another source line"
        config["encoder"]["name_or_path"] = str(moved)  # where the same encoder lives now

    edit_config(saved, change)
    after = ContinualModel.from_pretrained(saved).predict(TEXTS, task="sentiment")
    assert [p.logits for p in after] == [p.logits for p in before]


@pytest.mark.parametrize("digest", ["weights_sha256", "config_sha256"])
def test_a_current_format_config_without_a_digest_is_refused(saved, digest):
    """Deleting a digest must not turn its check off: the format version says which are required."""
    config = json.loads((saved / CONFIG_FILE).read_text())
    assert config["format_version"] == 3 and digest in config
    edit_config(saved, lambda c: c.pop(digest))
    with pytest.raises(CheckpointError, match=f"has no (valid )?`{digest}`"):
        ContinualModel.from_pretrained(saved)


@pytest.mark.parametrize("damage", ["not a sha", "a list"])
def test_a_damaged_config_digest_is_refused(saved, damage):
    edit_config(saved, lambda c: c.__setitem__("config_sha256", "abc" if damage == "not a sha" else ["0" * 64]))
    with pytest.raises(CheckpointError, match="damaged `config_sha256`"):
        ContinualModel.from_pretrained(saved)


def test_a_format_2_checkpoint_loads_without_a_config_digest_but_not_without_its_weights_digest(saved):
    """Checkpoints of the release before format 3 have `weights_sha256` and no `config_sha256`."""
    before = ContinualModel.from_pretrained(saved).predict(TEXTS, task="colour", pairs=TEXTS)
    edit_config(saved, lambda c: (c.pop("config_sha256"), c.__setitem__("format_version", 2)))
    after = ContinualModel.from_pretrained(saved).predict(TEXTS, task="colour", pairs=TEXTS)
    assert [(p.label, p.logits) for p in after] == [(p.label, p.logits) for p in before]
    edit_config(saved, lambda c: c.pop("weights_sha256"))
    with pytest.raises(CheckpointError, match="has no valid `weights_sha256`"):
        ContinualModel.from_pretrained(saved)


def test_an_older_format_checks_a_config_digest_it_has(saved):
    edit_config(saved, lambda c: (c.__setitem__("format_version", 2), swap(c["tasks"][1]["labels"])))
    with pytest.raises(CheckpointError, match="was edited after it was saved"):
        ContinualModel.from_pretrained(saved)


# ---- relabelling on purpose ---------------------------------------------------------------------
def test_relabelling_a_task_rewrites_its_labels_and_digest_and_says_predictions_change_meaning(saved):
    before = ContinualModel.from_pretrained(saved).predict(TEXTS, task="colour", pairs=TEXTS)
    message = relabel_task(saved, "colour", ["cold", "warm", "none"])
    assert "output 0 'warm' -> 'cold', output 1 'cold' -> 'warm'" in message and "change meaning" in message
    loaded = ContinualModel.from_pretrained(saved)
    assert loaded.label_names == [["negative", "positive"], ["cold", "warm", "none"]]
    after = loaded.predict(TEXTS, task="colour", pairs=TEXTS)
    rename = {"warm": "cold", "cold": "warm", "none": "none"}
    assert [(rename[p.label], p.logits) for p in before] == [(p.label, p.logits) for p in after]
    assert "`cold`, `warm`, `none`" in (saved / CARD_FILE).read_text()
    assert json.loads((saved / CONFIG_FILE).read_text())["format_version"] == 3


def test_the_relabel_command_renames_labels_and_a_format_2_checkpoint_becomes_format_3(saved, capsys):
    from ctr_plugin.commands.relabel import main

    edit_config(saved, lambda c: (c.pop("config_sha256"), c.__setitem__("format_version", 2)))
    assert main([str(saved), "--task", "0", "--labels", "bad, good"]) == 0
    assert "Task 'sentiment'" in capsys.readouterr().out
    config = json.loads((saved / CONFIG_FILE).read_text())
    assert config["format_version"] == 3 and config["tasks"][0]["labels"] == ["bad", "good"]
    assert ContinualModel.from_pretrained(saved).label_names[0] == ["bad", "good"]
    edit_config(saved, lambda c: c.pop("config_sha256"))  # and now the digest is required
    with pytest.raises(CheckpointError, match="has no `config_sha256`"):
        ContinualModel.read_config(saved)


@pytest.mark.parametrize(
    "task, labels, error",
    [
        ("colour", ["a", "b"], "has 3 outputs .* but 2 labels were given"),
        ("colour", ["a", "a", "b"], "must be distinct.*'a' appear more than once"),
        ("colour", ["a", " ", "b"], r"must be distinct, non-empty strings; positions \[1\] are empty"),
        ("shape", ["a", "b"], "Unknown task 'shape'"),
        (5, ["a", "b"], "Unknown task 5"),
    ],
)
def test_a_relabel_that_does_not_fit_is_refused_and_changes_nothing(saved, task, labels, error):
    config = (saved / CONFIG_FILE).read_bytes()
    with pytest.raises((CheckpointError, TaskError), match=error):
        relabel_task(saved, task, labels)
    assert (saved / CONFIG_FILE).read_bytes() == config


def test_relabelling_refuses_a_config_edited_by_hand(saved):
    edit_config(saved, lambda c: swap(c["tasks"][1]["labels"]))
    config = (saved / CONFIG_FILE).read_bytes()
    with pytest.raises(CheckpointError, match="was edited after it was saved"):
        relabel_task(saved, "colour", ["warm", "cold", "none"])
    assert (saved / CONFIG_FILE).read_bytes() == config


# ---- permissions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_every_file_of_a_checkpoint_has_ordinary_permissions(tiny_bert_dir, tmp_path, umask):
    """As the umask allows (0666 & ~umask for files), not 0600 as the safetensors writer makes them;
    relabelling keeps them."""
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    model = ContinualModel(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    model.add_task("t", ["a", "b"])
    previous = os.umask(umask)
    try:
        model.save_pretrained(tmp_path / "ckpt")
        relabel_task(tmp_path / "ckpt", "t", ["b", "a"])
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ckpt").rglob("*")}
    assert WEIGHTS_FILE in modes and CONFIG_FILE in modes and CARD_FILE in modes
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o777 & ~umask
