"""The command-line scripts as a user meets them: a clear paragraph and exit status 2 for bad
input, and nothing already trained is ever damaged."""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import keyword_task

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--adapter-size", "16", "--epochs", "1", "--no-progress", "--lr", "1e-2"]


def load_command(name: str):
    """The module of console command ``ctr-<name>``."""
    return importlib.import_module(f"ctr_plugin.commands.{name}")


def call(command: str, argv: list[str], capsys) -> tuple[int, str, str]:
    from ctr_plugin.commands.runner import run_main

    module = load_command(command)
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: module.main(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, " ".join(err.split())  # the paragraph is wrapped for terminals


def write_csv(path: Path, rows: list[tuple[str, str]], header=("text", "label")) -> str:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_text(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def task_csv(tmp_path: Path, name: str, keywords) -> str:
    task = keyword_task(name, keywords, n_train=40, n_test=20)
    rows = [(t, task.label_names[y]) for split in (task.train, task.test) for t, y in zip(split.texts, split.labels)]
    return write_csv(tmp_path / f"{name}.csv", rows)


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tiny_bert_dir, tmp_path_factory):
    """A finished two-task run from CSV files, made once for the module."""
    tmp = tmp_path_factory.mktemp("trained")
    files = [
        task_csv(tmp, "sentiment", [["good", "great"], ["bad", "awful"]]),
        task_csv(tmp, "colour", [["red"], ["blue"]]),
    ]
    module = load_command("train")
    assert (
        module.main(["--datasets", *files, "--encoder", tiny_bert_dir, "--output-dir", str(tmp / "run"), *TINY]) == 0
    )
    return tmp / "run"


def test_train_then_predict_from_the_command_line(trained_run, capsys):
    results = json.loads((trained_run / "results.json").read_text())
    assert results["tasks"] == ["sentiment", "colour"] and results["data"]["config"] is None
    import torch
    import transformers

    import ctr_plugin

    made_by = results["provenance"]
    assert made_by["ctr_plugin"] == ctr_plugin.__version__ and made_by["torch"] == torch.__version__
    assert made_by["transformers"] == transformers.__version__ and made_by["peft"] and made_by["accelerate"]
    checkpoint_config = json.loads((trained_run / "checkpoint" / "ctr_config.json").read_text())
    assert checkpoint_config["provenance"] == made_by
    if (ROOT / ".git").exists():  # a checkout (a worktree has a .git file): the commit it runs from
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert made_by["git"]["commit"] == head and isinstance(made_by["git"]["dirty"], bool)
    code, out, _ = call(
        "predict", ["--checkpoint", str(trained_run / "checkpoint"), "--task", "colour", "a red cow", "blue"], capsys
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [x["text"] for x in lines] == ["a red cow", "blue"]
    assert all(
        x["task"] == "colour" and x["label"] in ("class_0", "class_1") and 0.5 <= x["probability"] <= 1 for x in lines
    )


def bad_inputs(tmp: Path, tiny: str) -> dict[str, tuple[list[str], str]]:
    """name -> (ctr-train arguments, a phrase the error must contain)."""
    good = [(f"good text {i}", "pos") for i in range(10)] + [(f"bad text {i}", "neg") for i in range(10)]
    return {
        "unknown dataset": (["--datasets", "no_such_dataset_xyz"], "no_such_dataset_xyz"),
        "missing file": (["--datasets", str(tmp / "missing.csv")], "no such file"),
        "missing text column": (["--datasets", write_csv(tmp / "cols.csv", good, ("sentence", "label"))], "sentence"),
        "one class": (["--datasets", write_csv(tmp / "one.csv", [(f"t {i}", "pos") for i in range(12)])], "class"),
        "empty file": (["--datasets", write_csv(tmp / "empty.csv", [])], "empty"),
        "missing config": (["--config", str(tmp / "nope.yaml")], "does not exist"),
        "zero epochs": (
            ["--datasets", write_csv(tmp / "ok.csv", good), "--epochs", "0"],
            "`epochs` (--epochs on the command line",
        ),
        "unknown method": (["--datasets", str(tmp / "ok.csv"), "--method", "magic"], "Unknown method"),
        "bad encoder": (
            ["--datasets", str(tmp / "ok.csv"), "--encoder", str(tmp / "no_encoder_here")],
            "Could not load the encoder",
        ),
        "malformed yaml": (
            ["--config", write_text(tmp / "bad.yaml", "tasks:\n  - {name: a, source: files\n")],
            "not valid YAML",
        ),
        "duplicate task names": (
            [
                "--config",
                write_text(
                    tmp / "dup.yaml",
                    f"tasks:\n  - {{name: a, train: {tmp / 'ok.csv'}}}\n  - {{name: a, train: {tmp / 'ok.csv'}}}\n",
                ),
            ],
            "two tasks named 'a'",
        ),
        "non-utf8 file": (
            [
                "--datasets",
                write_bytes(tmp / "latin.csv", "text,label\ncaf\xe9 good,pos\nbad,neg\n".encode("latin-1")),
            ],
            "not valid utf-8",
        ),
        "empty text": (["--datasets", write_csv(tmp / "blank.csv", good + [("", "pos")])], "empty"),
        "label outside declared set": (
            [
                "--config",
                write_text(
                    tmp / "lab.yaml",
                    f"tasks:\n  - {{name: a, train: {write_csv(tmp / 'maybe.csv', good + [('hm', 'maybe')])}, "
                    "labels: [pos, neg]}\n",
                ),
            ],
            "outside the declared `labels:`",
        ),
        "negative cap": (["--datasets", str(tmp / "ok.csv"), "--max-train-per-task", "-5"], "must be at least 2"),
        "order without orders": (
            ["--datasets", write_csv(tmp / "ok.csv", good), "--order", "1"],
            "needs the task orders",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown dataset",
        "missing file",
        "missing text column",
        "one class",
        "empty file",
        "missing config",
        "zero epochs",
        "unknown method",
        "bad encoder",
        "malformed yaml",
        "duplicate task names",
        "non-utf8 file",
        "empty text",
        "label outside declared set",
        "negative cap",
        "order without orders",
    ],
)
def test_bad_training_input_gets_a_clear_error_and_keeps_the_checkpoint(
    case, trained_run, tiny_bert_dir, tmp_path, capsys
):
    before = digest(trained_run)
    argv, phrase = bad_inputs(tmp_path, tiny_bert_dir)[case]
    if "--encoder" not in argv:
        argv = argv + ["--encoder", tiny_bert_dir]
    code, _, err = call("train", [*TINY, *argv, "--output-dir", str(trained_run), "--overwrite"], capsys)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert phrase.lower() in err.lower(), err
    assert digest(trained_run) == before


def test_an_existing_run_is_not_overwritten_without_asking(trained_run, tiny_bert_dir, tmp_path, capsys):
    before = digest(trained_run)
    data = write_csv(
        tmp_path / "ok.csv", [(f"good {i}", "pos") for i in range(10)] + [(f"bad {i}", "neg") for i in range(10)]
    )
    code, _, err = call(
        "train", ["--datasets", data, "--encoder", tiny_bert_dir, "--output-dir", str(trained_run), *TINY], capsys
    )
    assert code == 2 and "--overwrite" in err and digest(trained_run) == before


@pytest.mark.parametrize("case", ["misspelled task", "task id out of range", "missing checkpoint", "other encoder"])
def test_bad_prediction_input_gets_a_clear_error(case, trained_run, tiny_roberta_dir, tmp_path, capsys):
    ckpt = str(trained_run / "checkpoint")
    argv, phrase = {
        "misspelled task": (["--checkpoint", ckpt, "--task", "colours", "red"], "Did you mean 'colour'"),
        "task id out of range": (["--checkpoint", ckpt, "--task", "5", "red"], "out of range"),
        "missing checkpoint": (["--checkpoint", str(tmp_path / "none"), "--task", "colour", "red"], "does not exist"),
        "other encoder": (
            ["--checkpoint", ckpt, "--encoder", tiny_roberta_dir, "--task", "colour", "red"],
            "encoder given is different",
        ),
    }[case]
    before = digest(trained_run)
    code, out, err = call("predict", argv, capsys)
    assert code == 2 and phrase in err and not out and digest(trained_run) == before


def test_a_real_process_exits_with_status_2_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_ctr.py"),
            "--datasets",
            str(tmp_path / "absent.csv"),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "absent.csv" in proc.stderr


# --- every numeric argument range-checked by argparse, before anything runs -----------------------

# (--max-train-per-task / --max-test-per-task: checked by select_tasks, "must be at least 2", see bad_inputs)
RANGE_CASES = {
    "train --order -1": ("train", ["--order", "-1"], "--order", ">= 0"),
    "tables --orders 0": ("tables", ["--orders", "0", "--output-dir", "T"], "--orders", ">= 1"),
    "tables --seeds 0": ("tables", ["--seeds", "0", "--output-dir", "T"], "--seeds", ">= 1"),
    "tune --trials 0": ("tune", ["--trials", "0"], "--trials", ">= 1"),
    "tune --tasks 0": ("tune", ["--tasks", "0"], "--tasks", ">= 1"),
    "tune --seed -1": ("tune", ["--seed", "-1"], "--seed", "from 0 to"),
    "predict --batch-size 0": (
        "predict",
        ["--checkpoint", "C", "--task", "t", "--batch-size", "0", "x"],
        "--batch-size",
        ">= 1",
    ),
    "predict --max-length 0": (
        "predict",
        ["--checkpoint", "C", "--task", "t", "--max-length", "0", "x"],
        "--max-length",
        ">= 1",
    ),
    "bench --steps 0": ("bench", ["--steps", "0"], "--steps", ">= 1"),
    "bench --seq-len 0": ("bench", ["--seq-len", "0"], "--seq-len", ">= 1"),
    "bench --warmup -1": ("bench", ["--warmup", "-1"], "--warmup", ">= 0"),
    "bench --task-counts 0 10": ("bench", ["--task-counts", "0", "10"], "--task-counts", ">= 1"),
    "bench --batch-size 2.5": ("bench", ["--batch-size", "2.5"], "--batch-size", ">= 1"),
}


@pytest.mark.parametrize("case", RANGE_CASES)
def test_every_numeric_argument_is_range_checked_before_anything_runs(case, tmp_path, capsys, monkeypatch):
    command, argv, option, allowed = RANGE_CASES[case]
    monkeypatch.chdir(tmp_path)
    if command == "bench":
        import ctr_plugin.bench.harness as module

        monkeypatch.setattr(module, "plan", lambda args: pytest.fail(f"{case}: the arguments were accepted"))
    else:
        module = load_command(command)
    import ctr_plugin.commands.runner as runner

    monkeypatch.setattr(runner, "setup_logging", lambda *a: pytest.fail(f"{case}: the arguments were accepted"))
    monkeypatch.setattr(module, "setup_logging", runner.setup_logging, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        runner.run_main(lambda: module.main(argv))
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2, err
    assert f"argument {option}" in err and f"whole number {allowed}" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_encoder_whose_tokenizer_outgrows_its_embedding_is_refused_before_the_output_dir_changes(
    tiny_bert_dir, tmp_path, capsys
):
    from transformers import AutoTokenizer, BertConfig, BertModel

    encoder = tmp_path / "short_embedding"
    config = BertConfig.from_pretrained(tiny_bert_dir)
    config.vocab_size = 8  # the tokenizer has more ids than this
    BertModel(config).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(encoder)
    files = [task_csv(tmp_path, "sentiment", [["good", "great"], ["bad", "awful"]])]
    out = tmp_path / "run"
    code, _, err = call(
        "train", [*TINY, "--datasets", *files, "--encoder", str(encoder), "--output-dir", str(out)], capsys
    )
    assert code == 2 and "token ids" in err and "only 8 rows" in err, err
    assert not out.exists()

    out.mkdir()  # an existing directory is left as it was too
    code, _, err = call(
        "train", [*TINY, "--datasets", *files, "--encoder", str(encoder), "--output-dir", str(out)], capsys
    )
    assert code == 2 and list(out.iterdir()) == [], err


@pytest.mark.parametrize(
    "module",
    [
        "ctr_plugin.commands.train",
        "ctr_plugin.commands.predict",
        "ctr_plugin.commands.tables",
        "ctr_plugin.commands.tune",
        "ctr_plugin.commands.relabel",
        "ctr_plugin.bench.harness",
    ],
)
def test_every_command_answers_version_with_the_package_version(module, capsys):
    from ctr_plugin._version import __version__

    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip().endswith(f"(ctr_plugin {__version__})")


# --- what --help promises: the caps of --datasets, the defaults a run takes, and a light start -----

COMMAND_MODULES = [
    "ctr_plugin.commands.train",
    "ctr_plugin.commands.predict",
    "ctr_plugin.commands.tables",
    "ctr_plugin.commands.tune",
    "ctr_plugin.commands.relabel",
    "ctr_plugin.bench.harness",
]


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        load_command(command).parse_args(["--help"])
    assert stopped.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps for the terminal


def test_train_help_states_the_caps_of_datasets_and_the_flags_that_lift_them(capsys):
    text = help_text("train", capsys)
    assert "capped at 300 training, 100 validation and 200 test sentences" in text
    assert "--max-train-per-task, --max-validation-per-task and --max-test-per-task lift them" in text


@pytest.mark.parametrize("command", ["train", "tables"])
def test_help_shows_the_defaults_a_run_without_config_takes(command, capsys):
    from ctr_plugin.data.config import DEFAULT_SEQUENCE, load_sequence_config

    training = load_sequence_config(DEFAULT_SEQUENCE).training
    assert training["adapter_size"] != 2000 and training["pooling"] != "pooler"  # else this test shows nothing
    text = help_text(command, capsys)
    assert f"Default {training['adapter_size']!r} (from {DEFAULT_SEQUENCE}; built-in 2000)" in text
    assert f"Default {training['pooling']!r} (from {DEFAULT_SEQUENCE}; built-in 'pooler')" in text
    assert "Default 2000;" not in text and "Default 'pooler'" not in text


def test_a_datasets_run_states_its_caps_in_its_first_log_line_and_the_flags_set_them(tiny_bert_dir, tmp_path, caplog):
    files = [task_csv(tmp_path, "sentiment", [["good", "great"], ["bad", "awful"]])]
    argv = ["--datasets", *files, "--encoder", tiny_bert_dir, "--output-dir", str(tmp_path / "run"), *TINY]
    with caplog.at_level("INFO"):
        assert load_command("train").main([*argv, "--max-train-per-task", "10", "--max-validation-per-task", "4"]) == 0
    first = caplog.records[0].getMessage()
    assert "at most 10 training, 4 validation and 200 test sentences" in first
    assert all(flag in first for flag in ("--max-train-per-task", "--max-validation-per-task", "--max-test-per-task"))
    sizes = json.loads((tmp_path / "run" / "results.json").read_text())["task_sizes"]["sentiment"]
    assert sizes["train"] == 10 and sizes["validation"] == 4


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_help_imports_neither_torch_nor_transformers(module):
    """--help answers fast (under 2 s, measured by hand) because building a command's parser loads no
    model library. Checked in a fresh process where importing torch or transformers is refused and
    recorded (so the check costs a fraction of a second whether it passes or not)."""
    probe = (
        "import contextlib, importlib, importlib.abc, io, sys\n"
        "tried = []\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            tried.append(name)\n"
        "            raise ImportError(f'{name} is refused while --help runs')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit, ImportError):\n"
        f"    importlib.import_module({module!r}).main(['--help'])\n"
        "print(tried[:1], out.getvalue().startswith('usage:'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] True", f"{module} --help: (import tried, help printed) = {proc.stdout.strip()}"
