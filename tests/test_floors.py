"""The core path at the lowest dependency versions pyproject.toml declares.

``make test`` runs this file (``pytest -m floors``) a second time in an environment holding exactly
the declared floors of transformers, peft, datasets, accelerate and huggingface_hub (``make
test-floors``; the versions come from pyproject.toml through ``.ci/floor_pins.py``), after the main
suite has run it with today's versions. It is what every user does: build a model on an encoder
they loaded, learn two tasks with CTR, with HAT-masked adapters and with one peft LoRA per task,
save, load into a fresh encoder and predict the same; train through transformers' ``Trainer``; and
the commands end to end, with the files read by ``datasets``."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from transformers import AutoModel, TrainingArguments

from ctr_plugin import METHODS, ContinualLearner, ContinualModel, ContinualTrainer, TrainingConfig, get_continual_model

from conftest import TINY_PLUGIN, keyword_task
from test_cli import TINY, call, load_command, task_csv

pytestmark = pytest.mark.floors

FAST = TrainingConfig(epochs=2, lr=1e-2, progress=False)
SENTIMENT = keyword_task("sentiment", [["good", "great"], ["bad", "awful"]])
COLOUR = keyword_task("colour", [["red", "pink"], ["blue", "green"], ["cat", "dog"]])
# As test_training's easy task: chance is 50 %, and 65 % of 60 test examples is beyond it at p < 0.01.
EASY = keyword_task("easy", [["good", "great", "nice"], ["bad", "awful", "poor"]], n_train=160, n_test=60)


def accuracy(predictions, split, names) -> float:
    return 100 * sum(names[y] == p.label for y, p in zip(split.labels, predictions)) / len(predictions)


def as_pairs(task, split):
    return [(text, task.label_names[y]) for text, y in zip(split.texts, split.labels)]


@pytest.mark.parametrize("method", ["ctr", "adapter_hat", "lora_one"])
def test_two_tasks_learned_saved_and_loaded_into_a_fresh_encoder_predict_the_same(method, tiny_bert_dir, tmp_path):
    torch.manual_seed(0)
    plugin = dataclasses.replace(TINY_PLUGIN, plugin_type=METHODS[method].plugin_type)
    model = get_continual_model(AutoModel.from_pretrained(tiny_bert_dir), plugin, method=method)
    learner = ContinualLearner(model, training=FAST)
    for task in (SENTIMENT, COLOUR):
        learner.learn_task(
            task.name, as_pairs(task, task.train), as_pairs(task, task.validation), as_pairs(task, task.test)
        )
    texts = SENTIMENT.test.texts[:6] + COLOUR.test.texts[:6]
    tasks = ["sentiment"] * 6 + ["colour"] * 6
    before = model.predict(texts, task=tasks)

    model.save_pretrained(tmp_path / "checkpoint")
    loaded = ContinualModel.from_pretrained(tmp_path / "checkpoint", encoder=AutoModel.from_pretrained(tiny_bert_dir))
    after = loaded.predict(texts, task=tasks)
    assert [p.label for p in after] == [p.label for p in before] and [p.task for p in after] == tasks
    for a, b in zip(after, before):
        assert a.logits == pytest.approx(b.logits, abs=1e-5)


def test_the_loop_learns_an_easy_task_beyond_chance(tiny_bert_dir):
    torch.manual_seed(0)
    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN, method="ctr")
    learner = ContinualLearner(model, training=TrainingConfig(epochs=6, lr=1e-2, progress=False))
    learner.learn_task("easy", as_pairs(EASY, EASY.train), as_pairs(EASY, EASY.validation))
    assert accuracy(model.predict(EASY.test.texts, task="easy"), EASY.test, EASY.label_names) >= 65.0


def test_transformers_trainer_learns_an_easy_task_beyond_chance(tiny_bert_dir, tmp_path):
    from datasets import Dataset

    torch.manual_seed(0)
    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN, method="ctr")
    model.add_task("easy", EASY.label_names)
    data = Dataset.from_dict({"text": EASY.train.texts, "label": EASY.train.labels}).map(
        lambda batch: model.tokenizer(batch["text"], truncation=True, max_length=32), batched=True
    )
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        num_train_epochs=6,
        learning_rate=1e-2,
        per_device_train_batch_size=16,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    ContinualTrainer(model, arguments, task="easy", train_dataset=data.remove_columns(["text"])).train()
    assert accuracy(model.predict(EASY.test.texts, task="easy"), EASY.test, EASY.label_names) >= 65.0


def test_the_commands_train_on_csv_files_and_predict_from_the_checkpoint(tiny_bert_dir, tmp_path, capsys):
    files = [
        task_csv(tmp_path, "sentiment", [["good", "great"], ["bad", "awful"]]),
        task_csv(tmp_path, "colour", [["red"], ["blue"]]),
    ]
    argv = ["--datasets", *files, "--encoder", tiny_bert_dir, "--output-dir", str(tmp_path / "run"), *TINY]
    assert load_command("train").main(argv) == 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["tasks"] == ["sentiment", "colour"]
    capsys.readouterr()  # ctr-train's own output
    code, out, err = call(
        "predict", ["--checkpoint", str(tmp_path / "run" / "checkpoint"), "--task", "colour", "a red cow"], capsys
    )
    assert code == 0, err
    (line,) = out.splitlines()
    assert json.loads(line)["task"] == "colour", out
