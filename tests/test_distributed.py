"""Data parallelism through Accelerate: ``accelerate launch`` with two CPU processes trains the
same model as one process.

Two processes split every global batch and average their gradients, so the update is the
one-process update on the whole batch. What may differ: the order of float sums, and the random
noise (dropout, CTR's Gumbel routing), which each process draws from its own stream. Hence:

* with an encoder without dropout and a method without noise (``adapter_hat``), the two runs must
  agree to within one test example per cell of the accuracy matrix (float order only);
* with ``ctr`` (Gumbel noise in training) they must agree to within 10 points per cell: with an
  encoder that has dropout, where the two runs draw different noise, they differed by up to 9.5
  points per cell on tasks like these (a 2-task ctr run, 150 training sentences per task).
  Without encoder dropout they agreed exactly.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ctr_plugin.continual.parallel import shard
from ctr_plugin.modeling.model import ContinualModel

from conftest import _save_tiny_encoder, keyword_task
from test_cli import write_csv

ROOT = Path(__file__).resolve().parents[1]
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
N_TEST = 40


@pytest.mark.parametrize("batch", [16, 7, 1])
def test_the_shares_of_a_batch_cover_it_once_and_their_weights_give_the_batch_mean(batch):
    items = list(range(batch))
    shares = [shard(items, SimpleNamespace(num_processes=2, process_index=r)) for r in range(2)]
    real = [x for mine, w in shares if w > 0 for x in mine]
    assert sorted(real) == items
    losses = {i: float(i * i + 1) for i in items}  # any per-example losses
    # the all-reduce averages the processes' weighted mean losses: that must be the batch mean
    averaged = sum(w * sum(losses[i] for i in mine) / len(mine) for mine, w in shares) / 2
    assert averaged == pytest.approx(sum(losses.values()) / batch)
    assert all(len(mine) >= 1 for mine, _ in shares)  # an empty share still joins the collectives


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp")
    torch.manual_seed(0)
    encoder = _save_tiny_encoder(tmp / "encoder", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    files = []
    for i, keywords in enumerate([[["good", "great"], ["bad", "awful"]], [["red", "pink"], ["blue", "green"]]]):
        task = keyword_task(f"t{i}", keywords, n_train=150, n_test=N_TEST)
        rows = [
            (t, task.label_names[y]) for split in (task.train, task.test) for t, y in zip(split.texts, split.labels)
        ]
        files.append(write_csv(tmp / f"t{i}.csv", rows))
    return tmp, encoder, files


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def train(data, method: str, processes: int, name: str) -> dict:
    import subprocess

    tmp, encoder, files = data
    out = tmp / name
    args = [
        "--datasets",
        *files,
        "--encoder",
        encoder,
        "--method",
        method,
        "--epochs",
        "3",
        "--adapter-size",
        "16",
        "--lr",
        "1e-2",
        "--batch-size",
        "16",
        "--max-train-per-task",
        "120",
        "--no-progress",
        "--device",
        "cpu",
        "--output-dir",
        str(out),
    ]
    script = str(ROOT / "scripts" / "train_ctr.py")
    if processes == 1:
        cmd = [sys.executable, script, *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            free_port(),
            script,
            *args,
        ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("final_acc=")]
    assert len(printed) == 1, proc.stdout  # the main process alone reports
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == processes and results["completed_tasks"] == 2
    return results


def assert_close(a: dict, b: dict, tolerance: float | None = None) -> None:
    """Every cell within ``tolerance`` points (None: one test example of that column's task)."""
    one_example = [100 / a["task_sizes"][name]["test"] + 0.01 for name in a["tasks"]]
    for key in ("acc_matrix", "f1_matrix"):
        for row_a, row_b in zip(a[key], b[key]):
            for j, (x, y) in enumerate(zip(row_a, row_b)):
                assert (x is None) == (y is None)
                if x is not None:
                    assert abs(x - y) <= (tolerance or one_example[j]), (key, a[key], b[key])


def test_two_cpu_processes_train_the_same_model_as_one(data):
    one = train(data, "adapter_hat", 1, "hat_one_process")
    two = train(data, "adapter_hat", 2, "hat_two_processes")
    assert one["final_acc"] > 60  # it learned something worth comparing (chance: 50)
    assert_close(one, two)  # to within one test example per cell
    assert one["epochs_kept"] == two["epochs_kept"]
    # one checkpoint, written by the main process, that serves both tasks
    model = ContinualModel.from_pretrained(data[0] / "hat_two_processes" / "checkpoint")
    assert model.task_names == ["t0", "t1"]


def test_ctr_trains_on_two_cpu_processes_within_noise_of_one(data):
    one = train(data, "ctr", 1, "ctr_one_process")
    two = train(data, "ctr", 2, "ctr_two_processes")
    assert_close(one, two, tolerance=10.0)
