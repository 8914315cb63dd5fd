"""Bad inputs, interruptions and tampered files, tried as a new user would: each gets a clear
error (or, where a user may mean it, a warning and a note), and nothing a failed command touched
has changed. One table per pattern: silent wrong answers, the output directory, option values,
prediction input."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SPECIAL, TINY_PLUGIN, WORDS, keyword_task
from ctr_plugin.continual.loop import TrainingConfig, evaluate
from ctr_plugin.data import TaskSpec, build_task, load_sequence_config
from ctr_plugin.errors import CheckpointError, CTRError, DataError, TaskError
from ctr_plugin.experiment import RunSettings, run, split_training_options
from ctr_plugin.model import CONFIG_FILE, WEIGHTS_FILE, ContinualModel, load_encoder
from ctr_plugin.plugins import PluginConfig
from ctr_plugin.run_dir import LOCK_FILE
from test_cli import TINY, call, load_script, task_csv, write_csv, write_text

FAST = TrainingConfig(epochs=1, lr=1e-2, batch_size=8, progress=False)


def tree_digest(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (hidden ones too) by relative path, with its SHA-256."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


def rows(n: int, labels=("pos", "neg"), prefix: str = "") -> list[tuple[str, str]]:
    """``n`` distinct texts cycling through ``labels``, each text carrying its label's keyword."""
    keyword = {lab: w for lab, w in zip(labels, ["good", "bad", "red", "blue", "cat", "dog"])}
    return [(f"{prefix} {keyword[labels[i % len(labels)]]} text number {i}".strip(), labels[i % len(labels)]) for i in range(n)]


@pytest.fixture(scope="module")
def finished(tiny_bert_dir, tmp_path_factory):
    """A finished two-task CLI run (CSV files), made once for the module."""
    tmp = tmp_path_factory.mktemp("finished")
    files = [task_csv(tmp, "sentiment", [["good", "great"], ["bad", "awful"]]), task_csv(tmp, "colour", [["red"], ["blue"]])]
    module = load_script("train_ctr")
    assert module.main(["--datasets", *files, "--encoder", tiny_bert_dir, "--output-dir", str(tmp / "run"), *TINY]) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def tiny_distilbert_dir(tmp_path_factory) -> str:
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    directory = tmp_path_factory.mktemp("tiny_distilbert")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + WORDS)}, do_lower_case=True)
    DistilBertModel(DistilBertConfig(vocab_size=len(SPECIAL) + len(WORDS), dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=80)).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return str(directory)


def yaml_config(tmp: Path, name: str, tasks: str, training: str = "") -> str:
    return write_text(tmp / f"{name}.yaml", (f"training:\n{training}\n" if training else "") + f"tasks:\n{tasks}\n")


# --- 2 and 3: every option, file and value is checked before the output directory changes -------


def training_cases(tmp: Path, finished_run: Path, distilbert: str) -> dict[str, tuple[list[str], str]]:
    """name -> (train_ctr.py arguments, a phrase the error must contain); each is run with
    --output-dir on the finished run and --overwrite, which must not change it."""
    ok = write_csv(tmp / "ok.csv", rows(20))
    ok_test = write_csv(tmp / "ok_test.csv", rows(10, prefix="held out"))
    ckpt = str(finished_run / "checkpoint")
    elsewhere = shutil.copytree(ckpt, tmp / "copied_checkpoint")  # a source outside the output directory
    return {
        "negative lr": (["--datasets", ok, "--lr", "-0.001"], "`lr`"),
        "nan lr": (["--datasets", ok, "--lr", "nan"], "finite number > 0"),
        "zero lr": (["--datasets", ok, "--lr", "0"], "`lr`"),
        "negative seed": (["--datasets", ok, "--seed", "-1"], "`seed`"),
        "seed too large for numpy": (["--datasets", ok, "--seed", "99999999999"], "<= 4294966"),
        "max length below the special tokens": (["--datasets", ok, "--max-length", "2"], "special tokens"),
        "max length above the position limit": (["--datasets", ok, "--max-length", "1000"], "position limit"),
        "zero batch size": (["--datasets", ok, "--batch-size", "0"], "--batch-size must be at least 1"),
        "yaml lr as a negative string": (["--config", yaml_config(tmp, "neg_lr", f"  - {{name: a, train: {ok}}}", "  lr: -1e-3")], "`lr`"),
        "yaml lr not a number": (["--config", yaml_config(tmp, "word_lr", f"  - {{name: a, train: {ok}}}", "  lr: fast")], "'fast'"),
        "yaml zero epochs": (["--config", yaml_config(tmp, "ep", f"  - {{name: a, train: {ok}}}", "  epochs: 0")], "`epochs`"),
        "yaml fractional batch size": (["--config", yaml_config(tmp, "bs", f"  - {{name: a, train: {ok}}}", "  batch_size: 2.5")], "whole number"),
        "yaml zero adapter size": (["--config", yaml_config(tmp, "ad", f"  - {{name: a, train: {ok}}}", "  adapter_size: 0")], "adapter_size"),
        "yaml negative s_max": (["--config", yaml_config(tmp, "smax", f"  - {{name: a, train: {ok}}}", "  s_max: -4")], "`s_max`"),
        "yaml warmup above one": (["--config", yaml_config(tmp, "wu", f"  - {{name: a, train: {ok}}}", "  warmup_ratio: 1.5")], "`warmup_ratio`"),
        "header names a column twice": (["--datasets", write_csv(tmp / "dup.csv", [(t, y, str(i)) for i, (t, y) in enumerate(rows(20))], ("text", "label", "label"))], "more than once"),
        "NA as a label": (["--datasets", write_csv(tmp / "na.csv", rows(20) + [("an unlabelled text", "NA")])], "missing value"),
        "nan as a label": (["--datasets", write_csv(tmp / "nan.csv", rows(20) + [("an unlabelled text", "nan")])], "missing value"),
        "class only in test": (["--config", yaml_config(tmp, "only_test", f"  - {{name: a, train: {ok}, test: {write_csv(tmp / 'test3.csv', rows(9, ('pos', 'neg', 'meh'), 'held out'))}}}")], "never in the training data"),
        "train file given as test": (["--config", yaml_config(tmp, "same", f"  - {{name: a, train: {ok}, test: {ok}}}")], "also occur in"),
        "task naming several sources": (["--config", yaml_config(tmp, "multi", f"  - {{name: a, dataset: hl_canon_g3, train: {ok}, test: {ok_test}}}")], "more than one source"),
        "continued run with another method": (["--datasets", ok, "--from-checkpoint", str(elsewhere), "--method", "adapter_ncl"], "--method adapter_ncl (the checkpoint has ctr)"),
        "continued run with another pooling": (["--datasets", ok, "--from-checkpoint", str(elsewhere), "--pooling", "cls"], "--pooling cls"),
        "continued run with another adapter size": (["--datasets", ok, "--from-checkpoint", str(elsewhere), "--adapter-size", "8"], "--adapter-size 8"),
        "continued run replacing its own source": (["--datasets", ok, "--from-checkpoint", ckpt], "inside --output-dir"),
        "lora on an encoder without query/value": (["--datasets", ok, "--method", "lora_ncl", "--encoder", distilbert], "q_lin"),
        "ctr on an encoder without output sublayers": (["--datasets", ok, "--encoder", distilbert], "no BERT-style output sublayers"),
    }


TRAINING_CASES = [
    "negative lr", "nan lr", "zero lr", "negative seed", "seed too large for numpy", "max length below the special tokens",
    "max length above the position limit", "zero batch size", "yaml lr as a negative string", "yaml lr not a number",
    "yaml zero epochs", "yaml fractional batch size", "yaml zero adapter size", "yaml negative s_max", "yaml warmup above one",
    "header names a column twice", "NA as a label", "nan as a label", "class only in test", "train file given as test",
    "task naming several sources", "continued run with another method", "continued run with another pooling",
    "continued run with another adapter size", "continued run replacing its own source",
    "lora on an encoder without query/value", "ctr on an encoder without output sublayers",
]


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_a_bad_training_input_is_refused_before_an_overwritten_run_changes(case, finished, tiny_bert_dir, tiny_distilbert_dir, tmp_path, capsys):
    before = tree_digest(finished)
    argv, phrase = training_cases(tmp_path, finished, tiny_distilbert_dir)[case]
    if "--encoder" not in argv:
        argv = argv + ["--encoder", tiny_bert_dir]
    flags = ["--no-progress"] if case.startswith("yaml") else TINY  # TINY's flags would override the config's values
    code, _, err = call("train_ctr", [*flags, *argv, "--output-dir", str(finished), "--overwrite"], capsys)
    assert code == 2 and "error: " in err and "Traceback" not in err, err
    assert phrase.lower() in err.split("error: ", 1)[1].lower(), err
    assert tree_digest(finished) == before


@pytest.mark.parametrize("case", ["output dir is a file", "parent is a file", "read-only directory"])
def test_filesystem_problems_are_one_paragraph_before_data_is_loaded(case, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    import ctr_plugin.data.sources as sources

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    target, phrase = {
        "output dir is a file": (blocker, "is a file, not a directory"),
        "parent is a file": (blocker / "run", "is a file, not a directory"),
        "read-only directory": (tmp_path / "ro" / "run", "No permission"),
    }[case]
    if case == "read-only directory":  # tests may run as root, whom chmod does not stop: simulate it
        (tmp_path / "ro").mkdir()
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path / "ro" else real_access(path, mode))
    monkeypatch.setattr(sources, "build_task", lambda *a, **k: pytest.fail("data was loaded before the output directory was checked"))
    code, _, err = call("train_ctr", ["--datasets", "hl_canon_g3", "--encoder", tiny_bert_dir, "--output-dir", str(target), *TINY], capsys)
    assert code == 2 and phrase in err and blocker.read_text() == "not a directory"
    assert not (tmp_path / "ro" / "run").exists()


def test_yaml_numbers_without_a_dot_are_read_as_the_numbers_meant(tmp_path):
    ok = write_csv(tmp_path / "ok.csv", rows(20))
    sequence = load_sequence_config(yaml_config(tmp_path, "c", f"  - {{name: a, train: {ok}}}", "  lr: 1e-3\n  s_max: 4e2\n  epochs: '2'"))
    assert sequence.training["lr"] == "1e-3"  # what YAML 1.1 (PyYAML) gives
    train, plugin = split_training_options(sequence.training)
    assert TrainingConfig(**train).lr == 0.001 and TrainingConfig(**train).epochs == 2 and PluginConfig(**plugin).s_max == 400.0


@pytest.mark.parametrize("field, value, phrase", [
    ("lr", -1e-3, "> 0"), ("lr", float("nan"), "finite"), ("lr", float("inf"), "finite"), ("lr", "1e-3x", "'1e-3x'"),
    ("epochs", 0, ">= 1"), ("epochs", 2.5, "whole number"), ("epochs", True, "whole number"), ("batch_size", 0, "`batch_size`"),
    ("batch_size", -4, "`batch_size`"), ("eval_batch_size", 0, "`eval_batch_size`"), ("seed", -1, ">= 0"), ("seed", 2**40, "<= 4294966"),
    ("max_length", 0, "`max_length`"), ("weight_decay", -0.1, "`weight_decay`"), ("warmup_ratio", 2, "<= 1"),
    ("max_grad_norm", 0, "`max_grad_norm`"), ("progress", "maybe", "true or false"),
])
def test_training_config_values_are_type_and_range_checked(field, value, phrase):
    with pytest.raises(CTRError, match="Training option") as err:
        TrainingConfig(**{field: value})
    assert phrase in str(err.value) and field in str(err.value)


@pytest.mark.parametrize("field, value", [
    ("adapter_size", 0), ("capsule_size", 0), ("num_transfer_capsules", -1), ("task_capsule_hidden", 1.5), ("routing_filters", "many"),
    ("routing_kernel_sizes", []), ("routing_kernel_sizes", [3, 0]), ("routing_kernel_sizes", "345"), ("s_max", 0), ("s_max", float("nan")),
    ("lora_rank", 0), ("lora_alpha", -1), ("train_layernorm", "sometimes"), ("pooling", "max"),
])
def test_plugin_config_values_are_type_and_range_checked(field, value):
    with pytest.raises(CTRError, match=field):
        PluginConfig(**{field: value})


def test_integer_like_values_are_accepted_as_the_numbers_they_are():
    cfg = TrainingConfig(epochs=np.int64(2), batch_size=8.0, lr=np.float32(0.01), seed="3")
    assert (cfg.epochs, cfg.batch_size, cfg.seed) == (2, 8, 3) and type(cfg.epochs) is int and cfg.lr == pytest.approx(0.01)


def test_max_length_below_the_special_tokens_is_refused_by_the_api_before_anything_is_written(tiny_bert_dir, tmp_path):
    tasks = [keyword_task("sentiment", [["good"], ["bad"]], n_train=16, n_test=8)]
    settings = RunSettings(encoder=tiny_bert_dir, training=TrainingConfig(epochs=1, max_length=2, progress=False), plugin=TINY_PLUGIN)
    with pytest.raises(CTRError, match="adds 2 special tokens, so it must be at least 3"):
        run(tasks, settings, tmp_path / "run")
    assert not (tmp_path / "run").exists()
