"""Every fault of the checkpoint writer ends in a clear CheckpointError that says what is on disk,
and the previous checkpoint still loads with the same predictions; no staging folder is left.

Each write of the save path (creating the staging folder, the safetensors writer, the digest's
read-back, ``Path.write_text`` for the config and the card, the tokenizer's ``save_pretrained``,
the card's builder, ``os.chmod``, the two ``os.replace`` renames) is made to fail in turn with a
full disk (``OSError(ENOSPC)``), a ``PermissionError``, the safetensors writer's own error (its
message for a full disk) and a ``KeyboardInterrupt`` (which propagates, leaving a loadable
checkpoint). A crash between the two renames (the checkpoint only under ``.<name>.old``) is
recovered by the next load; staging folders a crash left are removed by the next save.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

import ctr_plugin.checkpoint.format as checkpoint_format
from ctr_plugin.checkpoint.format import CONFIG_FILE, WEIGHTS_FILE
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import CheckpointError
from ctr_plugin.modeling.model import ContinualModel

from conftest import TINY_PLUGIN

TEXTS = ["good red cat", "the dog was very bad", "blue", "a hen is not a cow", "sad"]
DISK_FULL_SAFETENSORS = (
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
)
ERRORS = {
    "disk full": lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    "permission": lambda: PermissionError(errno.EACCES, os.strerror(errno.EACCES)),
    "safetensors": lambda: SafetensorError(DISK_FULL_SAFETENSORS),
    "interrupt": lambda: KeyboardInterrupt(),
}
HINTS = {"disk full": "Free disk space", "permission": "writable", "safetensors": "Free disk space"}


def perturbed(model: ContinualModel, seed: int) -> ContinualModel:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture
def model(tiny_bert_dir) -> ContinualModel:
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    model = ContinualModel(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
    model.add_task("sentiment", ["negative", "positive"])
    model.add_task("colour", ["warm", "cold", "none"])
    return perturbed(model, 1).eval()


def predictions(directory: Path) -> list:
    loaded = ContinualModel.from_pretrained(directory)
    return [[(p.label, p.logits) for p in loaded.predict(TEXTS, task=task)] for task in loaded.task_names]


def failing(error: str, calls: set[int] | None = None, real=None):
    """A stand-in that raises ``error`` on the given calls (1-based; all if None), else calls ``real``."""
    count = {"n": 0}

    def fake(*args, **kwargs):
        count["n"] += 1
        if calls is None or count["n"] in calls:
            raise ERRORS[error]()
        return real(*args, **kwargs)

    return fake


real_replace, real_write_text, real_chmod = os.replace, Path.write_text, os.chmod
# (what fails, how to make it fail, the step the message names)
FAULTS = {
    "staging folder": (
        lambda mp, m, e: mp.setattr(tempfile, "mkdtemp", failing(e)),
        "creating its staging folder",
    ),
    "weights file": (lambda mp, m, e: mp.setattr(checkpoint_format, "save_file", failing(e)), "writing plugins"),
    "weights digest": (
        lambda mp, m, e: mp.setattr(checkpoint_format, "sha256", failing(e)),
        "reading back plugins.safetensors",
    ),
    "config": (
        lambda mp, m, e: mp.setattr(Path, "write_text", failing(e, {1}, real_write_text)),
        "writing ctr_config.json",
    ),
    "tokenizer": (
        lambda mp, m, e: mp.setattr(m.tokenizer, "save_pretrained", failing(e)),
        "writing the tokenizer's files",
    ),
    "card builder": (lambda mp, m, e: mp.setattr(checkpoint_format, "model_card", failing(e)), "writing README.md"),
    "card": (
        lambda mp, m, e: mp.setattr(Path, "write_text", failing(e, {2}, real_write_text)),
        "writing README.md",
    ),
    "permissions": (
        lambda mp, m, e: mp.setattr(os, "chmod", failing(e, {1}, real_chmod)),
        "setting the files' permissions",
    ),
    "first rename": (
        lambda mp, m, e: mp.setattr(os, "replace", failing(e, {1}, real_replace)),
        "moving the previous checkpoint aside",
    ),
    "second rename": (
        lambda mp, m, e: mp.setattr(os, "replace", failing(e, {2}, real_replace)),
        "moving the new checkpoint into place",
    ),
    "second rename and the way back": (
        lambda mp, m, e: mp.setattr(os, "replace", failing(e, {2, 3}, real_replace)),
        "moving the new checkpoint into place",
    ),
}


@pytest.mark.parametrize("error", list(ERRORS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failing_write_keeps_the_previous_checkpoint_and_says_so(model, tmp_path, monkeypatch, fault, error):
    ckpt = tmp_path / "run" / "checkpoint"
    model.save_pretrained(ckpt)
    before = predictions(ckpt)
    perturbed(model, 2)  # the checkpoint it fails to write would predict otherwise
    make_fail, step = FAULTS[fault]
    with monkeypatch.context() as mp:
        make_fail(mp, model, error)
        if error == "interrupt":
            with pytest.raises(KeyboardInterrupt):
                model.save_pretrained(ckpt)
        else:
            with pytest.raises(CheckpointError) as caught:
                model.save_pretrained(ckpt)
    left_aside = fault == "second rename and the way back"
    if error != "interrupt":
        message = str(caught.value)
        assert message.startswith(f"Saving the checkpoint to {ckpt} failed while {step}"), message
        assert HINTS[error] in message
        if left_aside:
            assert f"is intact under {ckpt.parent / '.checkpoint.old'}" in message and "mv " in message
        else:
            assert f"the previous checkpoint in {ckpt} is intact and unchanged" in message
    expected = [".checkpoint.old"] if left_aside else ["checkpoint"]
    assert sorted(p.name for p in ckpt.parent.iterdir()) == expected  # no staging folder left
    assert predictions(ckpt) == before  # a checkpoint left aside is moved back by the load
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["checkpoint"]
    model.save_pretrained(ckpt)  # with the fault gone, the save goes through
    assert predictions(ckpt) != before


@pytest.mark.parametrize("error", ["disk full", "safetensors", "interrupt"])
def test_a_failing_first_save_leaves_nothing_behind(model, tmp_path, monkeypatch, error):
    ckpt = tmp_path / "checkpoint"
    monkeypatch.setattr(checkpoint_format, "save_file", failing(error))
    with pytest.raises(KeyboardInterrupt if error == "interrupt" else CheckpointError) as caught:
        model.save_pretrained(ckpt)
    if error != "interrupt":
        assert f"no checkpoint was written to {ckpt}" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_save_failure_reaches_the_command_line_as_one_paragraph(model, tmp_path, monkeypatch, capsys):
    from ctr_plugin.commands.runner import run_main

    model.save_pretrained(tmp_path / "checkpoint")
    monkeypatch.setattr(checkpoint_format, "save_file", failing("safetensors"))
    with pytest.raises(SystemExit) as exited:
        run_main(lambda: model.save_pretrained(tmp_path / "checkpoint"))
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("error: Saving the checkpoint") and "Traceback" not in err


def test_a_crash_between_the_two_renames_is_recovered_by_the_next_load(model, tmp_path, caplog):
    """The state a crash (power, kill -9) between the save's renames leaves: the only checkpoint is
    `.checkpoint.old`. The next load, or reading its config (what --resume does), moves it back."""
    ckpt = tmp_path / "checkpoint"
    model.save_pretrained(ckpt)
    before = predictions(ckpt)
    os.replace(ckpt, tmp_path / ".checkpoint.old")
    with caplog.at_level(logging.WARNING):
        assert ContinualModel.read_config(ckpt)["tasks"][0]["name"] == "sentiment"
    assert "interrupted between its two renames" in caplog.text and "Moved it back" in caplog.text
    assert predictions(ckpt) == before
    os.replace(ckpt, tmp_path / ".checkpoint.old")  # the load itself, and through a relative path
    os.chdir(tmp_path)
    try:
        assert predictions(Path("checkpoint")) == before
    finally:
        os.chdir(Path(__file__).parent.parent)
    os.replace(ckpt, tmp_path / ".checkpoint.old")  # and the next save, which then replaces it
    model.save_pretrained(ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_checkpoint_left_aside_that_cannot_be_moved_back_gets_the_command_to_restore_it(
    model, tmp_path, monkeypatch
):
    ckpt = tmp_path / "checkpoint"
    model.save_pretrained(ckpt)
    os.replace(ckpt, tmp_path / ".checkpoint.old")
    monkeypatch.setattr(os, "replace", failing("permission"))
    with pytest.raises(CheckpointError, match=r"holds it: a save was interrupted.*mv '.*\.checkpoint\.old'"):
        ContinualModel.from_pretrained(ckpt)


def test_the_next_save_removes_what_a_crash_left_and_nothing_else(model, tmp_path, caplog):
    ckpt = tmp_path / "checkpoint"
    model.save_pretrained(ckpt)
    for name in (".checkpoint.staging-k2j4h1", ".checkpoint.a1b2c3d4", ".checkpoint.old"):
        shutil.copytree(ckpt, tmp_path / name)  # a crashed save's staging folders (this release's, older)
    (tmp_path / ".checkpoint.x9y8z7w6").mkdir()  # looks like an old staging folder, but holds a user's file
    (tmp_path / ".checkpoint.x9y8z7w6" / "notes.txt").write_text("mine")
    shutil.copytree(ckpt, tmp_path / ".checkpoint.backup")  # a user's copy
    with caplog.at_level(logging.WARNING):
        model.save_pretrained(ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".checkpoint.backup", ".checkpoint.x9y8z7w6", "checkpoint"]
    assert caplog.text.count("Removed ") == 3 and "staging folder of a save that was interrupted" in caplog.text
    assert json.loads((ckpt / CONFIG_FILE).read_text())["weights_sha256"]
    assert (ckpt / WEIGHTS_FILE).is_file()
