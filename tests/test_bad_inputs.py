"""Bad inputs, interruptions and tampered files, tried as a new user would: each gets a clear
error (or, where a user may mean it, a warning and a note), and nothing a failed command touched
has changed. One table per pattern: silent wrong answers, the output directory, option values,
prediction input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ctr_plugin.checkpoint.format import CONFIG_FILE, WEIGHTS_FILE
from ctr_plugin.continual.evaluation import evaluate
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data import TaskSpec, build_task, load_sequence_config
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import CheckpointError, CTRError, DataError, TaskError
from ctr_plugin.experiments.output_dir import LOCK_FILE
from ctr_plugin.experiments.run import RunSettings, run
from ctr_plugin.experiments.settings import base_options
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins import PluginConfig

from conftest import SPECIAL, TINY_PLUGIN, WORDS, keyword_task
from test_cli import TINY, call, load_command, task_csv, write_csv, write_text

FAST = TrainingConfig(epochs=1, lr=1e-2, batch_size=8, progress=False)


def tree_digest(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (hidden ones too) by relative path, with its SHA-256."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def rows(n: int, labels=("pos", "neg"), prefix: str = "") -> list[tuple[str, str]]:
    """``n`` distinct texts cycling through ``labels``, each text carrying its label's keyword."""
    keyword = {lab: w for lab, w in zip(labels, ["good", "bad", "red", "blue", "cat", "dog"])}
    return [
        (f"{prefix} {keyword[labels[i % len(labels)]]} text number {i}".strip(), labels[i % len(labels)])
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def finished(tiny_bert_dir, tmp_path_factory):
    """A finished two-task CLI run (CSV files), made once for the module."""
    tmp = tmp_path_factory.mktemp("finished")
    files = [
        task_csv(tmp, "sentiment", [["good", "great"], ["bad", "awful"]]),
        task_csv(tmp, "colour", [["red"], ["blue"]]),
    ]
    module = load_command("train")
    assert (
        module.main(["--datasets", *files, "--encoder", tiny_bert_dir, "--output-dir", str(tmp / "run"), *TINY]) == 0
    )
    return tmp / "run"


@pytest.fixture(scope="module")
def tiny_distilbert_dir(tmp_path_factory) -> str:
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    directory = tmp_path_factory.mktemp("tiny_distilbert")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + WORDS)}, do_lower_case=True)
    DistilBertModel(
        DistilBertConfig(
            vocab_size=len(SPECIAL) + len(WORDS),
            dim=32,
            n_layers=1,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=80,
        )
    ).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return str(directory)


@pytest.fixture(scope="module")
def tiny_deberta_v1_dir(tmp_path_factory) -> str:
    """An encoder with no places for the sublayer plugins (DeBERTa v1 has a LayerNorm class of its own)."""
    from transformers import BertTokenizerFast, DebertaConfig, DebertaModel

    directory = tmp_path_factory.mktemp("tiny_deberta_v1")
    size = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    DebertaModel(DebertaConfig(vocab_size=len(SPECIAL) + len(WORDS), **size)).save_pretrained(str(directory))
    BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + WORDS)}).save_pretrained(str(directory))
    return str(directory)


def yaml_config(tmp: Path, name: str, tasks: str, training: str = "") -> str:
    return write_text(tmp / f"{name}.yaml", (f"training:\n{training}\n" if training else "") + f"tasks:\n{tasks}\n")


# --- 2 and 3: every option, file and value is checked before the output directory changes -------


def training_cases(
    tmp: Path, finished_run: Path, distilbert: str, deberta_v1: str
) -> dict[str, tuple[list[str], str]]:
    """name -> (ctr-train arguments, a phrase the error must contain); each is run with
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
        "zero batch size": (["--datasets", ok, "--batch-size", "0"], "`batch_size` (--batch-size on the command line"),
        "yaml lr as a negative string": (
            ["--config", yaml_config(tmp, "neg_lr", f"  - {{name: a, train: {ok}}}", "  lr: -1e-3")],
            "`lr`",
        ),
        "yaml lr not a number": (
            ["--config", yaml_config(tmp, "word_lr", f"  - {{name: a, train: {ok}}}", "  lr: fast")],
            "'fast'",
        ),
        "yaml zero epochs": (
            ["--config", yaml_config(tmp, "ep", f"  - {{name: a, train: {ok}}}", "  epochs: 0")],
            "`epochs`",
        ),
        "yaml fractional batch size": (
            ["--config", yaml_config(tmp, "bs", f"  - {{name: a, train: {ok}}}", "  batch_size: 2.5")],
            "whole number",
        ),
        "yaml zero adapter size": (
            ["--config", yaml_config(tmp, "ad", f"  - {{name: a, train: {ok}}}", "  adapter_size: 0")],
            "adapter_size",
        ),
        "yaml negative s_max": (
            ["--config", yaml_config(tmp, "smax", f"  - {{name: a, train: {ok}}}", "  s_max: -4")],
            "`s_max`",
        ),
        "yaml warmup above one": (
            ["--config", yaml_config(tmp, "wu", f"  - {{name: a, train: {ok}}}", "  warmup_ratio: 1.5")],
            "`warmup_ratio`",
        ),
        "header names a column twice": (
            [
                "--datasets",
                write_csv(
                    tmp / "dup.csv", [(t, y, str(i)) for i, (t, y) in enumerate(rows(20))], ("text", "label", "label")
                ),
            ],
            "more than once",
        ),
        "NA as a label": (
            ["--datasets", write_csv(tmp / "na.csv", rows(20) + [("an unlabelled text", "NA")])],
            "missing value",
        ),
        "nan as a label": (
            ["--datasets", write_csv(tmp / "nan.csv", rows(20) + [("an unlabelled text", "nan")])],
            "missing value",
        ),
        "class only in test": (
            [
                "--config",
                yaml_config(
                    tmp,
                    "only_test",
                    f"  - {{name: a, train: {ok}, "
                    f"test: {write_csv(tmp / 'test3.csv', rows(9, ('pos', 'neg', 'meh'), 'held out'))}}}",
                ),
            ],
            "never in the training data",
        ),
        "train file given as test": (
            ["--config", yaml_config(tmp, "same", f"  - {{name: a, train: {ok}, test: {ok}}}")],
            "also occur in",
        ),
        "task naming several sources": (
            [
                "--config",
                yaml_config(tmp, "multi", f"  - {{name: a, dataset: hl_canon_g3, train: {ok}, test: {ok_test}}}"),
            ],
            "more than one source",
        ),
        "continued run with another method": (
            ["--datasets", ok, "--from-checkpoint", str(elsewhere), "--method", "adapter_ncl"],
            "trained with method 'ctr', but this run asks for 'adapter_ncl'",
        ),
        "continued run with another pooling": (
            ["--datasets", ok, "--from-checkpoint", str(elsewhere), "--pooling", "cls"],
            "--pooling cls",
        ),
        "continued run with another adapter size": (
            ["--datasets", ok, "--from-checkpoint", str(elsewhere), "--adapter-size", "8"],
            "--adapter-size 8",
        ),
        "continued run replacing its own source": (
            ["--datasets", ok, "--from-checkpoint", ckpt],
            "inside --output-dir",
        ),
        "lora rank zero": (
            ["--datasets", ok, "--method", "lora_ncl", "--lora-rank", "0"],
            "`lora_rank` (--lora-rank on the command line",
        ),
        "continued run with another lora rank": (
            ["--datasets", ok, "--from-checkpoint", str(elsewhere), "--lora-rank", "4"],
            "--lora-rank 4 (the checkpoint has 8)",
        ),
        "lora rank as a method option": (
            ["--datasets", ok, "--method", "lora_ncl", "--method-arg", "rank=4"],
            "has no option 'rank'",
        ),
        "negative ewc strength": (["--datasets", ok, "--method", "ewc", "--method-arg", "strength=-1"], "`strength`"),
        "unknown device": (["--datasets", ok, "--device", "gpu0"], "not a device"),
        "cuda on a machine without one": (["--datasets", ok, "--device", "cuda:7"], "cuda:7"),
        "lora on an encoder without query/value": (
            ["--datasets", ok, "--method", "lora_ncl", "--encoder", distilbert],
            "q_lin",
        ),
        "ctr on an encoder without output sublayers": (
            ["--datasets", ok, "--encoder", deberta_v1],
            "no BERT-style output sublayers",
        ),
    }


TRAINING_CASES = [
    "negative lr",
    "nan lr",
    "zero lr",
    "negative seed",
    "seed too large for numpy",
    "max length below the special tokens",
    "max length above the position limit",
    "zero batch size",
    "yaml lr as a negative string",
    "yaml lr not a number",
    "yaml zero epochs",
    "yaml fractional batch size",
    "yaml zero adapter size",
    "yaml negative s_max",
    "yaml warmup above one",
    "header names a column twice",
    "NA as a label",
    "nan as a label",
    "class only in test",
    "train file given as test",
    "task naming several sources",
    "continued run with another method",
    "continued run with another pooling",
    "continued run with another adapter size",
    "continued run replacing its own source",
    "continued run with another lora rank",
    "lora rank zero",
    "lora rank as a method option",
    "negative ewc strength",
    "unknown device",
    "cuda on a machine without one",
    "lora on an encoder without query/value",
    "ctr on an encoder without output sublayers",
]


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_a_bad_training_input_is_refused_before_an_overwritten_run_changes(
    case, finished, tiny_bert_dir, tiny_distilbert_dir, tiny_deberta_v1_dir, tmp_path, capsys
):
    before = tree_digest(finished)
    argv, phrase = training_cases(tmp_path, finished, tiny_distilbert_dir, tiny_deberta_v1_dir)[case]
    if "--encoder" not in argv:
        argv = argv + ["--encoder", tiny_bert_dir]
    flags = ["--no-progress"] if case.startswith("yaml") else TINY  # TINY's flags would override the config's values
    code, _, err = call("train", [*flags, *argv, "--output-dir", str(finished), "--overwrite"], capsys)
    assert code == 2 and "error: " in err and "Traceback" not in err, err
    assert phrase.lower() in err.split("error: ", 1)[1].lower(), err
    assert tree_digest(finished) == before


@pytest.mark.parametrize("case", ["output dir is a file", "parent is a file", "read-only directory"])
def test_filesystem_problems_are_one_paragraph_before_data_is_loaded(
    case, tiny_bert_dir, tmp_path, capsys, monkeypatch
):
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
        monkeypatch.setattr(
            os, "access", lambda path, mode: False if Path(path) == tmp_path / "ro" else real_access(path, mode)
        )
    monkeypatch.setattr(
        sources, "build_task", lambda *a, **k: pytest.fail("data was loaded before the output directory was checked")
    )
    code, _, err = call(
        "train", ["--datasets", "hl_canon_g3", "--encoder", tiny_bert_dir, "--output-dir", str(target), *TINY], capsys
    )
    assert code == 2 and phrase in err and blocker.read_text() == "not a directory"
    assert not (tmp_path / "ro" / "run").exists()


def test_yaml_numbers_without_a_dot_are_read_as_the_numbers_meant(tmp_path):
    ok = write_csv(tmp_path / "ok.csv", rows(20))
    sequence = load_sequence_config(
        yaml_config(tmp_path, "c", f"  - {{name: a, train: {ok}}}", "  lr: 1e-3\n  s_max: 4e2\n  epochs: '2'")
    )
    assert sequence.training["lr"] == "1e-3"  # what YAML 1.1 (PyYAML) gives
    train, plugin = base_options(sequence.training)
    assert train.lr == 0.001 and train.epochs == 2 and plugin.s_max == 400.0


@pytest.mark.parametrize(
    "field, value, phrase",
    [
        ("lr", -1e-3, "> 0"),
        ("lr", float("nan"), "finite"),
        ("lr", float("inf"), "finite"),
        ("lr", "1e-3x", "'1e-3x'"),
        ("epochs", 0, ">= 1"),
        ("epochs", 2.5, "whole number"),
        ("epochs", True, "whole number"),
        ("batch_size", 0, "`batch_size`"),
        ("batch_size", -4, "`batch_size`"),
        ("eval_batch_size", 0, "`eval_batch_size`"),
        ("seed", -1, ">= 0"),
        ("seed", 2**40, "<= 4294966"),
        ("max_length", 0, "`max_length`"),
        ("weight_decay", -0.1, "`weight_decay`"),
        ("warmup_ratio", 2, "<= 1"),
        ("max_grad_norm", 0, "`max_grad_norm`"),
        ("progress", "maybe", "true or false"),
    ],
)
def test_training_config_values_are_type_and_range_checked(field, value, phrase):
    with pytest.raises(CTRError, match="Training option") as err:
        TrainingConfig(**{field: value})
    assert phrase in str(err.value) and field in str(err.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("adapter_size", 0),
        ("capsule_size", 0),
        ("num_transfer_capsules", -1),
        ("task_capsule_hidden", 1.5),
        ("routing_filters", "many"),
        ("routing_kernel_sizes", []),
        ("routing_kernel_sizes", [3, 0]),
        ("routing_kernel_sizes", "345"),
        ("s_max", 0),
        ("s_max", float("nan")),
        ("lora_rank", 0),
        ("lora_alpha", -1),
        ("train_layernorm", "sometimes"),
        ("pooling", "max"),
    ],
)
def test_plugin_config_values_are_type_and_range_checked(field, value):
    with pytest.raises(CTRError, match=field):
        PluginConfig(**{field: value})


@pytest.mark.parametrize(
    "method, options",
    [
        ("ctr", {"mask_lr_scale": "0"}),
        ("replay", {"seed": "-1"}),
        ("ewc", {"strength": "nan"}),
        ("ewc", {"fisher_samples": "0"}),
        ("replay", {"memory_size": "-5"}),
        ("replay", {"replay_batch_size": "0"}),
        ("lwf", {"temperature": "0"}),
        ("l2", {"strength": "inf"}),
        ("bert_ncl", {"encoder_lr": "-1e-5"}),
    ],
)
def test_method_options_are_range_checked(method, options):
    from ctr_plugin.continual.methods import get_method

    with pytest.raises(CTRError, match=f"Option of method '{method}' `{next(iter(options))}`"):
        get_method(method, options)


def test_integer_like_values_are_accepted_as_the_numbers_they_are():
    cfg = TrainingConfig(epochs=np.int64(2), batch_size=8.0, lr=np.float32(0.01), seed="3")
    assert (
        (cfg.epochs, cfg.batch_size, cfg.seed) == (2, 8, 3)
        and type(cfg.epochs) is int
        and cfg.lr == pytest.approx(0.01)
    )


def test_max_length_below_the_special_tokens_is_refused_by_the_api_before_anything_is_written(tiny_bert_dir, tmp_path):
    tasks = [keyword_task("sentiment", [["good"], ["bad"]], n_train=16, n_test=8)]
    settings = RunSettings(
        encoder=tiny_bert_dir, training=TrainingConfig(epochs=1, max_length=2, progress=False), plugin=TINY_PLUGIN
    )
    with pytest.raises(CTRError, match="adds 2 special tokens, so it must be at least 3"):
        run(tasks, settings, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --- 2: the output directory: replaced only by something, one writer, honest messages ---------------


def stop_in_task(monkeypatch, task: int, error: type[BaseException]) -> None:
    """Make CTR's training raise ``error`` at the first step of task ``task``."""
    from ctr_plugin.continual.methods.ctr import CTR

    original = CTR.loss

    def loss(self, model, logits, labels, step):
        if step.task == task:
            raise (
                error("stopped by the test")
                if error is not FloatingPointError
                else error("the training loss became nan (test)")
            )
        return original(self, model, logits, labels, step)

    monkeypatch.setattr(CTR, "loss", loss)


def two_task_files(tmp: Path) -> list[str]:
    return [
        task_csv(tmp, "sentiment", [["good", "great"], ["bad", "awful"]]),
        task_csv(tmp, "colour", [["red"], ["blue"]]),
    ]


@pytest.mark.parametrize("error, code", [(KeyboardInterrupt, 130), (FloatingPointError, 2)])
def test_overwrite_keeps_the_old_run_when_the_new_one_stops_before_its_first_task_is_saved(
    error, code, finished, tiny_bert_dir, tmp_path, capsys, monkeypatch
):
    before = tree_digest(finished)
    stop_in_task(monkeypatch, 0, error)
    code_got, _, err = call(
        "train",
        [
            *TINY,
            "--datasets",
            *two_task_files(tmp_path),
            "--encoder",
            tiny_bert_dir,
            "--seed",
            "1",
            "--output-dir",
            str(finished),
            "--overwrite",
        ],
        capsys,
    )
    assert code_got == code and "previous run" in err and "kept unchanged" in err, err
    assert tree_digest(finished) == before


def test_an_interrupt_before_any_task_claims_no_checkpoint(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    stop_in_task(monkeypatch, 0, KeyboardInterrupt)
    out = tmp_path / "run"
    code, _, err = call(
        "train",
        [*TINY, "--datasets", *two_task_files(tmp_path), "--encoder", tiny_bert_dir, "--output-dir", str(out)],
        capsys,
    )
    assert code == 130 and "no checkpoint was written" in err and "intact" not in err, err
    assert not (out / "checkpoint").exists() and not (out / LOCK_FILE).exists()
    assert sorted(p.name for p in out.iterdir()) == ["command.json"]  # what --resume needs, nothing more


def test_an_interrupt_after_a_task_names_the_checkpoint_that_exists(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    stop_in_task(monkeypatch, 1, KeyboardInterrupt)
    out = tmp_path / "run"
    code, _, err = call(
        "train",
        [*TINY, "--datasets", *two_task_files(tmp_path), "--encoder", tiny_bert_dir, "--output-dir", str(out)],
        capsys,
    )
    assert code == 130 and "after task 1 of 2 ('sentiment')" in err and f"--resume {out}" in err, err
    assert ContinualModel.from_pretrained(out / "checkpoint").task_names == ["sentiment"]


def test_resume_on_a_finished_run_says_so_and_changes_nothing(finished, capsys, caplog):
    before = tree_digest(finished)
    with caplog.at_level("INFO"):
        code, _, err = call("train", ["--resume", str(finished)], capsys)
    assert code == 0 and "finished run" in caplog.text and "nothing to resume" in caplog.text
    assert tree_digest(finished) == before


def test_a_second_writer_is_refused_with_the_holders_pid(finished, tiny_bert_dir, tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (finished / LOCK_FILE).write_text(
            json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now"})
        )
        before = tree_digest(finished)
        code, _, err = call(
            "train",
            [
                *TINY,
                "--datasets",
                *two_task_files(tmp_path),
                "--encoder",
                tiny_bert_dir,
                "--output-dir",
                str(finished),
                "--overwrite",
            ],
            capsys,
        )
        assert code == 2 and f"pid {holder.pid}" in err and "another training process" in err, err
        assert tree_digest(finished) == before
        # the API refuses it too, after the checks it can make without the lock
        tasks = [keyword_task("t", [["good"], ["bad"]], n_train=16, n_test=8)]
        with pytest.raises(CTRError, match=f"pid {holder.pid}"):
            run(tasks, RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN, overwrite=True), finished)
        assert tree_digest(finished) == before
    finally:
        holder.kill()
        holder.wait()
        (finished / LOCK_FILE).unlink(missing_ok=True)


def test_a_stale_lock_from_a_dead_process_is_taken_over(tiny_bert_dir, tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
    tasks = [keyword_task("t", [["good"], ["bad"]], n_train=16, n_test=8)]
    with caplog.at_level("WARNING"):
        run(tasks, RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN), out)
    assert "stale lock" in caplog.text and (out / "results.json").is_file() and not (out / LOCK_FILE).exists()


def test_overwrite_replaces_the_old_run_once_the_new_one_has_a_task(finished, tiny_bert_dir, tmp_path):
    shutil.copytree(finished, tmp_path / "old")
    tasks = [keyword_task("animal", [["cow"], ["hen"]], n_train=16, n_test=8)]
    run(tasks, RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN, overwrite=True), tmp_path / "old")
    results = json.loads((tmp_path / "old" / "results.json").read_text())
    assert results["tasks"] == ["animal"] and ContinualModel.from_pretrained(
        tmp_path / "old" / "checkpoint"
    ).task_names == ["animal"]


# --- 1: checkpoints answer as the run did ------------------------------------------------------------


@pytest.mark.parametrize("name", ["lora_one", "bert_one"])
def test_one_checkpoints_predict_every_task_with_that_tasks_own_weights(name, tiny_bert_dir, tmp_path):
    tasks = [
        keyword_task("sentiment", [["good", "great"], ["bad", "awful"]], n_train=24, n_test=12),
        keyword_task("colour", [["red", "pink"], ["blue", "green"], ["cat", "dog"]], n_train=24, n_test=12),
    ]
    out = run(
        tasks, RunSettings(method=name, encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN), tmp_path / "run"
    )
    loaded = ContinualModel.from_pretrained(tmp_path / "run" / "checkpoint")
    for j in (0, 1, 0):  # each task as the run tested it, in any order
        assert evaluate(loaded, tasks[j].test, j, FAST)["acc"] == pytest.approx(out["acc_matrix"][1][j], abs=0.01)
    first = [p.logits for p in loaded.predict(tasks[0].test.texts, task=0)]
    loaded.predict(tasks[1].test.texts, task=1)
    assert [p.logits for p in loaded.predict(tasks[0].test.texts, task=0)] == first
    batch = loaded.tokenize(["good", "red"])
    if name == "lora_one":  # one peft adapter per task, chosen per example: a batch may mix tasks
        with torch.no_grad():
            mixed = loaded(**batch, task_ids=torch.tensor([0, 1])).logits
            alone = loaded(**loaded.tokenize(["good"]), task_ids=torch.tensor([0])).logits
        assert torch.allclose(mixed[0, :2], alone[0], atol=1e-5)
    else:  # one encoder per task, put in place per batch: a batch may not
        assert sorted(loaded.task_weights) == [0, 1]
        with pytest.raises(TaskError, match="one copy of its weights per task"):
            loaded(**batch, task_ids=torch.tensor([0, 1]))


def test_a_same_shaped_foreign_weights_file_is_refused_by_its_digest(tiny_bert_dir, tmp_path):
    def saved(seed: int, directory: Path) -> Path:
        torch.manual_seed(seed)
        encoder, tokenizer = load_encoder(tiny_bert_dir)
        model = ContinualModel(encoder, tokenizer, TINY_PLUGIN, tiny_bert_dir)
        model.add_task("t", ["a", "b"])
        model.save_pretrained(directory)
        return directory

    mine, foreign = saved(0, tmp_path / "mine"), saved(1, tmp_path / "foreign")
    assert json.loads((mine / CONFIG_FILE).read_text())["weights_sha256"]
    shutil.copy(foreign / WEIGHTS_FILE, mine / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="SHA-256"):
        ContinualModel.from_pretrained(mine)


def test_checkpoints_have_ordinary_permissions_and_a_resolved_encoder_path(
    finished, tiny_bert_dir, tmp_path, monkeypatch
):
    umask = os.umask(0o022)
    os.umask(umask)
    mode = stat.S_IMODE((finished / "checkpoint").stat().st_mode)
    assert mode == 0o777 & ~umask and mode != 0o700
    monkeypatch.chdir(Path(tiny_bert_dir).parent)
    tasks = [keyword_task("t", [["good"], ["bad"]], n_train=16, n_test=8)]
    out = run(
        tasks, RunSettings(encoder=Path(tiny_bert_dir).name, training=FAST, plugin=TINY_PLUGIN), tmp_path / "run"
    )
    stored = json.loads((tmp_path / "run" / "checkpoint" / CONFIG_FILE).read_text())["encoder"]["name_or_path"]
    assert stored == str(Path(tiny_bert_dir).resolve()) == out["encoder"]
    monkeypatch.chdir(tmp_path)  # loads from anywhere
    assert ContinualModel.from_pretrained(tmp_path / "run" / "checkpoint").task_names == ["t"]


def test_a_continued_run_states_that_earlier_tasks_without_data_were_not_retested(
    finished, tiny_bert_dir, tmp_path, caplog
):
    tasks = [keyword_task("animal", [["cow"], ["hen"]], n_train=16, n_test=8)]
    with caplog.at_level("WARNING"):
        out = run(
            tasks,
            RunSettings(encoder=tiny_bert_dir, training=FAST, from_checkpoint=str(finished / "checkpoint")),
            tmp_path / "more",
        )
    assert (
        out["earlier_tasks"]["not_retested"] == ["sentiment", "colour"]
        and "forgetting is not measured" in out["earlier_tasks"]["note"]
    )
    assert "not re-tested" in caplog.text
    with pytest.raises(CTRError, match="trained with method 'ctr'"):
        run(
            tasks,
            RunSettings(
                method="adapter_ncl",
                encoder=tiny_bert_dir,
                training=FAST,
                from_checkpoint=str(finished / "checkpoint"),
            ),
            tmp_path / "other",
        )
    assert not (tmp_path / "other").exists()


# --- 1: text pairs are recorded, and predicted as pairs ----------------------------------------------


@pytest.fixture(scope="module")
def pair_run(tiny_bert_dir, tmp_path_factory):
    """A finished run of one aspect + sentence task and one single-text task."""
    tmp = tmp_path_factory.mktemp("pairs")
    pair_rows = [
        (["red", "blue"][i % 2], f"the {w} one is {['good', 'bad'][i % 2]} number {i}", ["pos", "neg"][i % 2])
        for i, w in enumerate(WORDS * 2)
    ]
    pairs = write_csv(tmp / "aspects.csv", pair_rows, ("term", "sentence", "label"))
    config = yaml_config(
        tmp,
        "pairs",
        f"  - {{name: aspects, train: {pairs}, text: [term, sentence]}}\n"
        f"  - {{name: plain, train: {write_csv(tmp / 'plain.csv', rows(30))}}}",
    )
    module = load_command("train")
    assert module.main(["--config", config, "--encoder", tiny_bert_dir, "--output-dir", str(tmp / "run"), *TINY]) == 0
    return tmp / "run" / "checkpoint"


def test_a_pair_task_is_recorded_and_needs_both_texts(pair_run):
    tasks = json.loads((pair_run / CONFIG_FILE).read_text())["tasks"]
    assert [(t["name"], t["pair"]) for t in tasks] == [("aspects", True), ("plain", False)]
    model = ContinualModel.from_pretrained(pair_run)
    with pytest.raises(CTRError, match="trained on text pairs"):
        model.predict(["red"], task="aspects")
    with pytest.raises(CTRError, match="trained on single texts"):
        model.predict(["red"], task="plain", pairs=["the red one is good"])
    with pytest.raises(CTRError, match="2 texts but 1 pairs"):
        model.predict(["red", "blue"], task="aspects", pairs=["the red one is good"])
    both = model.predict(["red", "blue"], task="aspects", pairs=["the red one is good", "the blue one is bad"])
    assert [p.label for p in both] == [
        p.label
        for p in model.predict(
            iter(["red", "blue"]), task=np.int64(0), pairs=("the red one is good", "the blue one is bad")
        )
    ]


def test_predict_cli_takes_pairs_as_flags_or_tab_separated_lines(pair_run, capsys, monkeypatch):
    import io

    code, out, err = call(
        "predict",
        [
            "--checkpoint",
            str(pair_run),
            "--task",
            "aspects",
            "red",
            "blue",
            "--pair",
            "the red one is good",
            "--pair",
            "the blue one is bad",
        ],
        capsys,
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [x["pair"] for x in lines] == ["the red one is good", "the blue one is bad"], err
    monkeypatch.setattr(sys, "stdin", io.StringIO("red\tthe red one is good\nblue\tthe blue one is bad\n"))
    code, out2, _ = call("predict", ["--checkpoint", str(pair_run), "--task", "aspects", "-"], capsys)
    assert code == 0 and [json.loads(line)["label"] for line in out2.splitlines()] == [x["label"] for x in lines]


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["--task", "aspects", "red"], "trained on text pairs"),
        (["--task", "aspects", "red", "blue", "--pair", "the red one"], "2 texts but 1 --pair"),
        (["--task", "plain", "good", "--pair", "extra"], "trained on single texts"),
        (["--task", "plain", "good", "   "], "whitespace only"),
        (["--task", "plain", ""], "empty"),
        (
            ["--task", "plain", "good", "--max-length", "-3"],
            "--max-length: -3 is out of range: it must be a whole number >= 1",
        ),
        (["--task", "plain", "good", "--max-length", "1"], "special tokens"),
        (["--task", "plain", "good", "--max-length", "5000"], "position limit"),
        (
            ["--task", "plain", "good", "--batch-size", "0"],
            "--batch-size: 0 is out of range: it must be a whole number >= 1",
        ),
    ],
)
def test_bad_prediction_input_on_the_command_line(argv, phrase, pair_run, capsys):
    before = tree_digest(pair_run)
    code, out, err = call("predict", ["--checkpoint", str(pair_run), *argv], capsys)
    assert code == 2 and phrase in err and not out, err
    assert tree_digest(pair_run) == before


# --- 4: prediction input through the API -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        ({"texts": ["good", ""]}, "positions [1]"),
        ({"texts": ["  \t", "good"]}, "whitespace only"),
        ({"texts": "good text"}, "wrap a single text in a list"),
        ({"texts": ["good", 3]}, "must be strings"),
        ({"texts": ["good", None]}, "must be strings"),
        ({"texts": 42}, "iterable"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": "8"}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"max_length": -1}, "must be at least 3"),
        ({"max_length": 1000}, "position limit"),
        ({"max_length": 12.5}, "whole number"),
        ({"pairs": ["x", "y"]}, "single texts"),
        ({"pairs": ["x"]}, "2 texts but 1 pairs"),
        ({"pairs": ["x", ""]}, "pairs are empty"),
        ({"task": True}, "Unknown task"),
        ({"task": 7}, "out of range"),
        ({"task": np.int64(9)}, "out of range"),
    ],
)
def test_bad_prediction_input_through_the_api(kwargs, phrase, finished):
    model = ContinualModel.from_pretrained(finished / "checkpoint")
    call_args = {"texts": ["good", "red"], "task": "colour"} | kwargs
    with pytest.raises(CTRError, match=None) as err:
        model.predict(**call_args)
    assert phrase in str(err.value), str(err.value)


def test_predict_accepts_any_iterable_of_strings_and_integer_like_task_ids(finished):
    model = ContinualModel.from_pretrained(finished / "checkpoint")
    expected = [p.logits for p in model.predict(["good", "red cat"], task="colour")]
    for texts, task in (
        (("good", "red cat"), 1),
        (iter(["good", "red cat"]), np.int64(1)),
        ((t for t in ["good", "red cat"]), torch.tensor(1).item()),
        (np.array(["good", "red cat"]).tolist(), np.int32(1)),
    ):
        assert [p.logits for p in model.predict(texts, task=task, batch_size=np.int64(32))] == expected
    assert model.predict([], task="colour") == []


# --- 1: labels and columns are never read silently wrong --------------------------------------------


def data_case(tmp: Path, case: str) -> TaskSpec:
    if case == "header names the label column twice":
        return TaskSpec(
            name="a", train=write_csv(tmp / "d.csv", [(t, y, "7") for t, y in rows(20)], ("text", "label", "label"))
        )
    if case == "header names the text column twice":
        return TaskSpec(
            name="a", train=write_csv(tmp / "d2.csv", [(t, y, "id") for t, y in rows(20)], ("text", "label", "text"))
        )
    if case.startswith("label spelled "):
        marker = case.removeprefix("label spelled ")
        return TaskSpec(name="a", train=write_csv(tmp / "m.csv", rows(20) + [("one more text", marker)]))
    if case == "json record with a repeated key":
        path = tmp / "r.jsonl"
        path.write_text(
            "\n".join(f'{{"text": "{text}", "label": "{label}", "label": "x"}}' for text, label in rows(20))
        )
        return TaskSpec(name="a", train=str(path))
    if case == "class only in the test file":
        return TaskSpec(
            name="a",
            train=write_csv(tmp / "tr.csv", rows(20)),
            test=write_csv(tmp / "te.csv", rows(9, ("pos", "neg", "meh"), "held out")),
        )
    if case == "class only in the validation file":
        return TaskSpec(
            name="a",
            train=write_csv(tmp / "tr.csv", rows(20)),
            validation=write_csv(tmp / "va.csv", rows(6, ("pos", "neg", "meh"), "held out")),
        )
    if case == "test file repeats training examples":
        return TaskSpec(
            name="a",
            train=write_csv(tmp / "tr.csv", rows(20)),
            test=write_csv(tmp / "te.csv", rows(6, prefix="held out") + [(" GOOD  text number 0", "pos")]),
        )
    raise KeyError(case)


@pytest.mark.parametrize(
    "case, phrase",
    [
        ("header names the label column twice", "'label' in columns [2, 3]"),
        ("header names the text column twice", "'text' in columns [1, 3]"),
        ("label spelled NA", "'NA' is a spelling of a missing value"),
        ("label spelled nan", "missing value"),
        ("label spelled null", "missing value"),
        ("label spelled N/A", "missing value"),
        ("label spelled ", "have no label"),
        ("json record with a repeated key", "more than once"),
        ("class only in the test file", "['meh'] occur in the test split"),
        ("class only in the validation file", "never in the training data"),
        ("test file repeats training examples", "line 8 = line 2 of the training data"),
    ],
)
def test_data_that_would_be_read_wrong_is_refused_naming_rows_or_values(case, phrase, tmp_path):
    with pytest.raises(DataError) as err:
        build_task(data_case(tmp_path, case))
    assert phrase in str(err.value), str(err.value)


def test_a_missing_value_marker_listed_in_labels_is_a_class(tmp_path):
    train = write_csv(tmp_path / "na.csv", rows(20, ("pos", "NA")))
    assert build_task(TaskSpec(name="a", train=train, labels=["pos", "NA"])).label_names == ["pos", "NA"]


def test_repeated_test_examples_can_be_dropped_on_request(tmp_path):
    task = build_task(
        dataclass_replace(data_case(tmp_path, "test file repeats training examples"), drop_test_overlap=True)
    )
    assert len(task.test) == 6 and any("also occur in train" in note for note in task.notes)


def dataclass_replace(spec: TaskSpec, **changes) -> TaskSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)


def test_labels_differing_only_in_case_get_a_warning_and_a_note_in_results(tiny_bert_dir, tmp_path, caplog):
    train = write_csv(
        tmp_path / "case.csv",
        rows(20) + [("good one more", "Pos"), ("good and again", "Pos")] + [(" bad spaced", " neg ")],
    )
    with caplog.at_level("WARNING"):
        task = build_task(TaskSpec(name="cased", train=train, test_fraction=0.25), seed=0)
    assert task.label_names == ["Pos", "neg", "pos"] and "differ only in case" in caplog.text
    assert any("surrounding spaces" in note for note in task.notes)
    out = run([task], RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN), tmp_path / "run")
    assert any("differ only in case" in note for note in out["data_notes"]["cased"])


@pytest.mark.parametrize(
    "entry, phrase",
    [
        ("{name: a, dataset: hl_canon_g3, train: x.csv}", "`dataset:` (bundled); `train:` (files)"),
        ("{name: a, source: hub, path: some/set, dataset: hl_canon_g3}", "with `source: hub`"),
        ("{name: a, train: x.csv, path: some/set}", "more than one source"),
        ("{name: a, source: bundled, dataset: hl_canon_g3, test: y.csv}", "`test:` (files)"),
    ],
)
def test_a_task_naming_several_sources_is_refused(entry, phrase, tmp_path):
    with pytest.raises(DataError) as err:
        load_sequence_config(write_text(tmp_path / "c.yaml", f"tasks:\n  - {entry}\n"))
    assert phrase in str(err.value), str(err.value)


def csv_rows(path: str) -> list[tuple[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return [(record["text"], record["label"]) for record in csv.DictReader(f)]


@pytest.mark.parametrize(
    "case, labels, phrase",
    [
        (
            "class only in the test file",
            ["pos", "neg", "meh"],
            "['meh'] occur in the test split (the `test` argument: row 2",
        ),
        (
            "class only in the validation file",
            ["pos", "neg", "meh"],
            "occur in the validation split (the `validation`",
        ),
        (
            "test file repeats training examples",
            None,
            "in the `test` argument also occur in the `train` argument (row 6 = row 0",
        ),
    ],
)
def test_the_python_api_refuses_what_the_file_loader_refuses(case, labels, phrase, tiny_bert_dir, tmp_path):
    from ctr_plugin.continual.learner import ContinualLearner, get_continual_model

    spec = data_case(tmp_path, case)
    with pytest.raises(DataError):
        build_task(spec)
    splits = {
        split: csv_rows(getattr(spec, split)) for split in ("train", "validation", "test") if getattr(spec, split)
    }
    learner = ContinualLearner(get_continual_model(tiny_bert_dir, TINY_PLUGIN), training=FAST)
    with pytest.raises(DataError) as err:
        learner.learn_task("a", labels=labels, **splits)
    assert phrase in str(err.value), str(err.value)
    assert learner.tasks == [] and learner.model.task_names == []  # refused before anything changed


def test_learn_task_reads_one_label_spelled_several_ways_in_a_list_as_one_class(tiny_bert_dir):
    from ctr_plugin.continual.learner import ContinualLearner, get_continual_model

    train = [(t, {"pos": "1", "neg": "0"}[y]) for t, y in rows(12)]
    train += [(f"good and {y}", y) for y in ("1.0", " 1", "+1")] + [("bad and 0.0", "0.0")]
    learner = ContinualLearner(get_continual_model(tiny_bert_dir, TINY_PLUGIN), training=FAST)
    learner.learn_task("numbers", train)
    assert learner.model.label_names == [["0", "1"]]
    assert learner.tasks[0].train.labels[-4:] == [1, 1, 1, 0]
    assert any("'+1', '1', '1.0' -> '1'" in note for note in learner.tasks[0].notes), learner.tasks[0].notes


# --- 1: a continued run re-tests the checkpoint's tasks it is given ---------------------------------


def test_a_continued_run_retests_the_earlier_tasks_it_is_given_and_measures_their_forgetting(
    finished, tiny_bert_dir, tmp_path, capsys
):
    source = finished.parent  # the CSV files the finished run was trained on
    files = [
        str(source / "sentiment.csv"),
        str(source / "colour.csv"),
        task_csv(tmp_path, "animal", [["cow"], ["hen"]]),
    ]
    before = json.loads((finished / "results.json").read_text())
    code, _, err = call(
        "train",
        [
            *TINY,
            "--datasets",
            *files,
            "--encoder",
            tiny_bert_dir,
            "--from-checkpoint",
            str(finished / "checkpoint"),
            "--output-dir",
            str(tmp_path / "more"),
        ],
        capsys,
    )
    assert code == 0, err
    out = json.loads((tmp_path / "more" / "results.json").read_text())
    assert out["tasks"] == ["sentiment", "colour", "animal"] and out["method"] == "ctr"
    assert out["acc_matrix"][1][:2] == before["acc_matrix"][1]  # the checkpoint's scores, re-measured before training
    assert all(v is not None for v in out["acc_matrix"][2]) and out["earlier_tasks"]["retested"] == [
        "sentiment",
        "colour",
    ]
    assert out["forgetting_rate"] == pytest.approx(
        sum(out["acc_matrix"][1][j] - out["acc_matrix"][2][j] for j in range(2)) / 2, abs=0.01
    )


@pytest.mark.parametrize(
    "case, phrase",
    [
        ("earlier task after a new one", "must come before the new ones"),
        ("only earlier tasks", "add at least one new task"),
        ("earlier task with other labels", "learned it with labels"),
        ("method that would lose its state", "cannot go on from a checkpoint"),
        ("earlier task carved with another seed", "Pass --seed 0"),
    ],
)
def test_a_continued_run_refuses_what_it_cannot_measure_or_keep(case, phrase, finished, tiny_bert_dir, tmp_path):
    new = keyword_task("animal", [["cow"], ["hen"]], n_train=16, n_test=8)
    sentiment = keyword_task("sentiment", [["good"], ["bad"]], n_train=16, n_test=8)
    tasks, method = {
        "earlier task after a new one": ([new, sentiment], "ctr"),
        "only earlier tasks": ([sentiment], "ctr"),
        "earlier task with other labels": (
            [keyword_task("sentiment", [["good"], ["bad"], ["red"]], n_train=16, n_test=8), new],
            "ctr",
        ),
        "method that would lose its state": ([new], "replay"),
        "earlier task carved with another seed": (
            [build_task(TaskSpec(name="sentiment", train=str(finished.parent / "sentiment.csv")), seed=1), new],
            "ctr",
        ),
    }[case]
    training = TrainingConfig(epochs=1, lr=1e-2, batch_size=8, progress=False, seed=1 if "seed" in case else 0)
    if method == "replay":
        with pytest.raises(CTRError, match="trained with method 'ctr'"):
            run(
                tasks,
                RunSettings(
                    method=method, encoder=tiny_bert_dir, training=FAST, from_checkpoint=str(finished / "checkpoint")
                ),
                tmp_path / "out",
            )
        replay_run = tmp_path / "replay"
        run(
            [sentiment],
            RunSettings(method="replay", encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN),
            replay_run,
        )
        settings = RunSettings(
            method="replay", encoder=tiny_bert_dir, training=FAST, from_checkpoint=str(replay_run / "checkpoint")
        )
    else:
        settings = RunSettings(encoder=tiny_bert_dir, training=training, from_checkpoint=str(finished / "checkpoint"))
    with pytest.raises(CTRError, match=phrase):
        run(tasks, settings, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_old_one_checkpoint_with_only_the_last_tasks_weights_refuses_earlier_tasks(tiny_bert_dir, tmp_path):
    tasks = [
        keyword_task("sentiment", [["good"], ["bad"]], n_train=16, n_test=8),
        keyword_task("colour", [["red"], ["blue"]], n_train=16, n_test=8),
    ]
    run(
        tasks,
        RunSettings(method="lora_ncl", encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN),
        tmp_path / "run",
    )
    config_file = tmp_path / "run" / "checkpoint" / CONFIG_FILE
    config = json.loads(config_file.read_text())
    config["method"] = "lora_one"  # what lora_one wrote before it kept one adapter per task
    config["format_version"] = 2  # ... in a format that had no config digest yet
    del config["config_sha256"]
    config_file.write_text(json.dumps(config))
    old = ContinualModel.from_pretrained(tmp_path / "run" / "checkpoint")
    assert old.predict(["red"], task="colour")[0].label in ("class_0", "class_1")
    with pytest.raises(TaskError, match="holds only its last task's weights: it can classify task 'colour' only"):
        old.predict(["good"], task="sentiment")


def test_predict_cli_refuses_pairs_beside_stdin_and_blank_stdin_lines_and_lists_pair_tasks(
    pair_run, capsys, monkeypatch
):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("red\tthe red one is good\n"))
    code, out, err = call("predict", ["--checkpoint", str(pair_run), "--task", "aspects", "-", "--pair", "x"], capsys)
    assert code == 2 and "--pair cannot be combined with '-'" in err and not out
    monkeypatch.setattr(sys, "stdin", io.StringIO("good\n\n  \nbad\n"))
    code, out, err = call("predict", ["--checkpoint", str(pair_run), "--task", "plain", "-"], capsys)
    assert code == 2 and "stdin lines [2, 3]" in err and not out
    code, out, _ = call("predict", ["--checkpoint", str(pair_run), "--list-tasks"], capsys)
    assert [json.loads(line)["pair"] for line in out.splitlines()] == [True, False]


def test_a_seed_in_the_config_is_not_silently_replaced_by_the_flags_default(tiny_bert_dir, tmp_path, capsys):
    config = yaml_config(
        tmp_path, "seeded", f"  - {{name: a, train: {write_csv(tmp_path / 'ok.csv', rows(20))}}}", "  seed: 5"
    )
    code, _, err = call(
        "train", [*TINY, "--config", config, "--encoder", tiny_bert_dir, "--output-dir", str(tmp_path / "run")], capsys
    )
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "results.json").read_text())["seed"] == 5


def test_a_write_that_fails_mid_run_says_which_checkpoint_is_intact(tiny_bert_dir, tmp_path, monkeypatch):
    import ctr_plugin.reporting.results as results_file

    tasks = [
        keyword_task("sentiment", [["good"], ["bad"]], n_train=16, n_test=8),
        keyword_task("colour", [["red"], ["blue"]], n_train=16, n_test=8),
    ]
    original = results_file.write_json_atomic
    calls = []

    def full_disk(path, data):
        calls.append(path.name)
        if path.name == "results.json" and calls.count("results.json") == 2:
            raise OSError(28, "No space left on device", str(path))
        original(path, data)

    monkeypatch.setattr(results_file, "write_json_atomic", full_disk)
    with pytest.raises(CTRError, match=r"No space left on device.*after task 2 of 2 \('colour'\)"):
        run(tasks, RunSettings(encoder=tiny_bert_dir, training=FAST, plugin=TINY_PLUGIN), tmp_path / "run")
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    assert ContinualModel.from_pretrained(tmp_path / "run" / "checkpoint").task_names == [
        "sentiment",
        "colour",
    ]  # the one named


def test_an_interrupted_continued_run_claims_no_checkpoint_of_its_own_before_one_is_written(
    finished, tiny_bert_dir, tmp_path, capsys, monkeypatch
):
    stop_in_task(monkeypatch, 2, KeyboardInterrupt)  # the first new task: ids 0 and 1 are the checkpoint's
    files = [
        str(finished.parent / "sentiment.csv"),
        str(finished.parent / "colour.csv"),
        task_csv(tmp_path, "animal", [["cow"], ["hen"]]),
    ]
    code, _, err = call(
        "train",
        [
            *TINY,
            "--datasets",
            *files,
            "--encoder",
            tiny_bert_dir,
            "--from-checkpoint",
            str(finished / "checkpoint"),
            "--output-dir",
            str(tmp_path / "more"),
        ],
        capsys,
    )
    assert code == 130 and "no checkpoint was written" in err and "intact" not in err, err
    assert not (tmp_path / "more" / "checkpoint").exists()
