"""The model card (``README.md``) of a checkpoint, as ``huggingface_hub`` reads it: ``model-index``
results equal to the last row of the run's accuracy matrix, no local absolute path (a local encoder
directory and data files named by their base names only), and no inference widget the Hub cannot serve."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch
from huggingface_hub import ModelCard

from ctr_plugin import ContinualLearner, TrainingConfig, get_continual_model
from ctr_plugin.checkpoint.model_card import model_card, public_source
from ctr_plugin.data import build_task
from ctr_plugin.data.config import TaskSpec
from ctr_plugin.plugins import PluginConfig

from conftest import TINY_PLUGIN

WORDS = {"sentiment": (["good", "great"], ["bad", "awful"]), "colour": (["red", "pink"], ["blue", "green"])}


def write_task_files(directory, name: str) -> dict[str, str]:
    """Train and test CSV files of a keyword task under ``directory``: their absolute paths by split."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in (("train", 24), ("test", 12)):
        path = directory / f"{name}_{split}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(("text", "label"))
            for i in range(n):
                label = i % 2
                words = WORDS[name][label]
                writer.writerow((f"{split} {name} example {i} is {words[i % 2]}", f"class{label}"))
        paths[split] = str(path.resolve())
    return paths


@pytest.fixture(scope="module")
def trained_checkpoint(tiny_bert_dir, tmp_path_factory):
    """A checkpoint on an encoder in a local absolute directory, whose tasks came from absolute file paths."""
    root = tmp_path_factory.mktemp("card_run").resolve()
    encoder_dir = root / "my-local-encoder"
    shutil.copytree(tiny_bert_dir, encoder_dir)
    torch.manual_seed(0)
    model = get_continual_model(str(encoder_dir), TINY_PLUGIN, method="ctr")
    learner = ContinualLearner(model, training=TrainingConfig(epochs=1, lr=1e-2, progress=False))
    for name in WORDS:
        paths = write_task_files(root / "data" / name, name)
        task = build_task(TaskSpec(name=name, train=paths["train"], test=paths["test"]), seed=0)
        assert str(root) in task.source  # the data layer records absolute paths
        learner.learn_task(name, task)
    learner.save_pretrained(root / "ckpt")
    return root, learner


def test_the_card_loads_with_huggingface_hub_and_its_results_are_the_last_row(trained_checkpoint):
    root, learner = trained_checkpoint
    card = ModelCard.load(root / "ckpt" / "README.md")
    progress = learner.results.to_dict()
    last = progress["acc_matrix"][-1]
    per_task = {r.dataset_name: r.metric_value for r in card.data.eval_results if r.dataset_type in WORDS}
    assert per_task == dict(zip(progress["tasks"], last)) and None not in last
    assert all(r.task_type == "text-classification" for r in card.data.eval_results)
    assert all(r.metric_type == "accuracy" for r in card.data.eval_results if r.dataset_type in WORDS)
    averages = {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_type not in WORDS}
    assert averages == {"accuracy": progress["final_acc"], "f1": progress["final_mf1"]}
    assert card.data.model_name and "model-index" in card.data.to_dict()


def test_the_card_names_no_local_absolute_path(trained_checkpoint, tiny_bert_dir):
    root, _ = trained_checkpoint
    text = (root / "ckpt" / "README.md").read_text(encoding="utf-8")
    assert str(root) not in text and str(tiny_bert_dir) not in text
    assert "`my-local-encoder` (a local directory" in text
    assert "local files: train=sentiment_train.csv, test=sentiment_test.csv" in text


def test_the_card_declares_no_inference_widget(trained_checkpoint):
    meta = ModelCard.load(trained_checkpoint[0] / "ckpt" / "README.md").data.to_dict()
    assert "pipeline_tag" not in meta and meta["inference"] is False and meta["library_name"] == "ctr_plugin"


def config_with(progress: dict | None, encoder: str = "bundled:all-MiniLM-L6-v2") -> dict:
    tasks = [{"name": n, "labels": ["x", "y"], "source": "given from Python"} for n in ("a", "b", "c")]
    return {"encoder": {"name_or_path": encoder}, "plugin": PluginConfig().to_dict(), "tasks": tasks} | (
        {"progress": progress} if progress else {}
    )


def test_no_results_recorded_means_no_model_index():
    card = ModelCard(model_card(config_with(None), "9.9"))
    assert not card.data.eval_results and "model-index" not in card.data.to_dict()
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # the bundled encoder as it was


def test_a_checkpoint_saved_mid_run_reports_the_last_measured_row_without_averages():
    progress = {
        "tasks": ["a", "b", "c"],
        "acc_matrix": [[90.0, None, None], [85.5, None, None], [None, None, None]],  # b without test data
        "f1_matrix": [[90.0, None, None], [85.0, None, None], [None, None, None]],
        "completed_tasks": 2,
    }
    results = ModelCard(model_card(config_with(progress), "9.9")).data.eval_results
    assert [(r.dataset_name, r.metric_value) for r in results] == [("a", 85.5)]


def test_paths_in_source_lines_are_written_as_names():
    assert public_source("local files: train=/data/my runs/train.csv, test=C:\\data\\test.csv") == (
        "local files: train=train.csv, test=test.csv"
    )
    assert public_source("local files: train=reviews/train.csv") == "local files: train=reviews/train.csv"
    assert public_source("exported from /home/me/corpus.jsonl, see https://example.org/a/b") == (
        "exported from corpus.jsonl, see https://example.org/a/b"
    )
    text = model_card(config_with(None, "/nowhere/on/this/machine/enc"), "9.9")
    assert "/nowhere" not in text and "`enc`" in text
