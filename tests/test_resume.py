"""Durability: a run killed mid-task resumes to the same results; a non-finite loss stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ctr_plugin.checkpoint.format import CONFIG_FILE
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.run import RunSettings, run
from ctr_plugin.modeling.model import ContinualModel

from conftest import TINY_PLUGIN, keyword_task
from test_cli import write_csv

ROOT = Path(__file__).resolve().parents[1]
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}


def completed_tasks(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "checkpoint" / CONFIG_FILE).read_text())["progress"]["completed_tasks"]
    except (OSError, ValueError, KeyError):
        return 0


def test_a_run_killed_mid_task_resumes_to_the_same_results(tiny_bert_dir, tmp_path):
    keywords = [[["good", "great"], ["bad", "awful"]], [["red"], ["blue"]], [["cow"], ["hen"]]]
    files = []
    for i, kw in enumerate(keywords):
        task = keyword_task(f"t{i}", kw, n_train=500, n_test=40)
        rows = [
            (t, task.label_names[y]) for split in (task.train, task.test) for t, y in zip(split.texts, split.labels)
        ]
        files.append(write_csv(tmp_path / f"t{i}.csv", rows))
    script = [sys.executable, str(ROOT / "scripts" / "train_ctr.py")]
    common = [
        "--datasets",
        *files,
        "--encoder",
        tiny_bert_dir,
        "--epochs",
        "3",
        "--adapter-size",
        "16",
        "--lr",
        "1e-2",
        "--no-progress",
        "--max-train-per-task",
        "400",
    ]

    subprocess.run(
        script + common + ["--output-dir", str(tmp_path / "whole")],
        env=ENV,
        check=True,
        capture_output=True,
        timeout=600,
    )

    part = tmp_path / "part"
    proc = subprocess.Popen(
        script + common + ["--output-dir", str(part)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while completed_tasks(part) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # well into the second task
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    done = completed_tasks(part)
    assert 1 <= done < 3
    ContinualModel.from_pretrained(part / "checkpoint")  # what the kill left is loadable

    subprocess.run(script + ["--resume", str(part)], env=ENV, check=True, capture_output=True, timeout=600)
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    resumed = json.loads((part / "results.json").read_text())
    assert resumed["completed_tasks"] == 3
    assert resumed["acc_matrix"] == whole["acc_matrix"]  # exact: each task starts from a saved, reseeded state
    assert resumed["f1_matrix"] == whole["f1_matrix"]
    assert resumed["params_added"] == whole["params_added"] and len(resumed["checkpoint_bytes"]) == 3


def test_a_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(
    tiny_bert_dir, three_tasks, tmp_path, monkeypatch
):
    from ctr_plugin.continual.methods.ctr import CTR

    original = CTR.loss

    def explode_on_second_task(self, model, logits, labels, step):
        loss = original(self, model, logits, labels, step)
        return loss * float("nan") if step.task == 1 else loss

    monkeypatch.setattr(CTR, "loss", explode_on_second_task)
    settings = RunSettings(
        encoder=tiny_bert_dir, training=TrainingConfig(epochs=1, progress=False), plugin=TINY_PLUGIN
    )
    with pytest.raises(CTRError, match="loss became nan.*intact"):
        run(three_tasks, settings, tmp_path / "run")
    kept = ContinualModel.from_pretrained(tmp_path / "run" / "checkpoint")
    assert (
        kept.task_names == ["sentiment"]
        and torch.isfinite(torch.tensor(kept.predict(["good"], task=0)[0].logits)).all()
    )


def test_resume_refuses_a_directory_without_a_recorded_run(tmp_path, capsys):
    from test_cli import call

    (tmp_path / "empty").mkdir()
    code, _, err = call("train", ["--resume", str(tmp_path / "empty")], capsys)
    assert code == 2 and "command.json" in err


def test_resume_refuses_options_other_than_those_the_completed_tasks_were_trained_with(
    tiny_bert_dir, three_tasks, tmp_path, monkeypatch
):
    from ctr_plugin.continual.methods.ctr import CTR

    original = CTR.loss
    monkeypatch.setattr(
        CTR,
        "loss",
        lambda self, model, logits, labels, step: (
            original(self, model, logits, labels, step) * (float("nan") if step.task == 1 else 1.0)
        ),
    )
    settings = RunSettings(
        encoder=tiny_bert_dir, training=TrainingConfig(epochs=1, lr=1e-3, progress=False), plugin=TINY_PLUGIN
    )
    with pytest.raises(CTRError):  # stops in the second task: the first is in the checkpoint
        run(three_tasks, settings, tmp_path / "run")
    monkeypatch.setattr(CTR, "loss", original)
    kept = {p: p.read_bytes() for p in sorted((tmp_path / "run").rglob("*")) if p.is_file()}

    edited = RunSettings(
        encoder=tiny_bert_dir,
        training=TrainingConfig(epochs=1, lr=3e-3, progress=False),
        plugin=TINY_PLUGIN,
        resume=True,
    )
    with pytest.raises(CTRError, match=r"training\.lr: 0\.001 then, 0\.003 now.*Nothing in .* was changed"):
        run(three_tasks, edited, tmp_path / "run")
    assert {p: p.read_bytes() for p in sorted((tmp_path / "run").rglob("*")) if p.is_file()} == kept

    same = RunSettings(
        encoder=tiny_bert_dir,
        training=TrainingConfig(epochs=1, lr=1e-3, progress=True),
        plugin=TINY_PLUGIN,
        resume=True,
    )
    assert run(three_tasks, same, tmp_path / "run")["completed_tasks"] == 3  # the progress bars may differ


def test_resume_refuses_data_that_changed_since_the_interrupted_run(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    """A finished task's data file edited between the interruption and --resume: its row of the
    matrix was tested on the old test set, so the resumed run would mix two test sets."""
    from test_bad_inputs import stop_in_task, tree_digest, two_task_files

    from test_cli import TINY, call

    files = two_task_files(tmp_path)
    out = tmp_path / "run"
    stop_in_task(monkeypatch, 1, KeyboardInterrupt)
    code, _, _ = call(
        "train", [*TINY, "--datasets", *files, "--encoder", tiny_bert_dir, "--output-dir", str(out)], capsys
    )
    assert code == 130 and completed_tasks(out) == 1
    monkeypatch.undo()

    lines = Path(files[0]).read_text().splitlines()
    lines[-1] = lines[-1].replace("good", "great", 1) if "good" in lines[-1] else lines[-1] + " indeed"
    Path(files[0]).write_text("\n".join(lines) + "\n")  # one example edited
    before = tree_digest(out)
    code, _, err = call("train", ["--resume", str(out)], capsys)
    assert code == 2 and "the data changed" in err and "task 'sentiment'" in err, err
    assert files[0] in err  # the file it came from
    assert "colour" not in err.split("the data changed")[1].split(")")[0]  # only the changed task is named
    assert tree_digest(out) == before
    recorded = json.loads((out / "checkpoint" / CONFIG_FILE).read_text())["data_fingerprints"]
    assert set(recorded) == {"sentiment", "colour"} and set(recorded["sentiment"]) == {"train", "validation", "test"}
