"""ContinualTrainer: transformers' Trainer with the method's rules at the loop's places."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from ctr_plugin import (
    ContinualTrainer,
    CTRError,
    UnprotectedTrainingWarning,
    get_continual_model,
)
from ctr_plugin.continual import hat
from ctr_plugin.continual.trainer import TaskCollator

from conftest import TINY_PLUGIN, keyword_task

SENTIMENT = keyword_task("sentiment", [["good", "great"], ["bad", "awful"]])
COLOUR = keyword_task("colour", [["red", "pink"], ["blue", "green"], ["cat", "dog"]])


def tokenized(model, split) -> Dataset:
    """A split as a user would hand it to the Trainer: tokenized, with a `label` column."""
    data = Dataset.from_dict({"text": split.texts, "label": split.labels})
    return data.map(
        lambda batch: model.tokenizer(batch["text"], truncation=True, max_length=32),
        batched=True,
        remove_columns=["text"],
    )


def arguments(tmp_path, **changes) -> TrainingArguments:
    options = {
        "output_dir": str(tmp_path / "trainer"),
        "num_train_epochs": 3,
        "learning_rate": 3e-2,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return TrainingArguments(**(options | changes))


def protected_snapshot(model):
    """Per plugin: the units task 0 claimed (m_pre == 1, so 1 - m_pre is exactly 0) and its weights."""
    return [
        (
            plugin,
            plugin.masks.cumulative(0) == 1.0,
            plugin.masks.cumulative(1) == 1.0,
            {
                name: p.detach().clone()
                for name, p in (
                    ("w1", plugin.fc1.weight),
                    ("b1", plugin.fc1.bias),
                    ("w2", plugin.fc2.weight),
                    ("b2", plugin.fc2.bias),
                )
            },
        )
        for plugin in model.plugins
    ]


@pytest.mark.parametrize("method", ["adapter_hat", "ctr"])
def test_two_tasks_through_the_trainer_keep_the_first_tasks_protected_weights_and_predictions(
    method, tiny_bert_dir, tmp_path
):
    torch.manual_seed(0)
    plugin_type = "hat_adapter" if method == "adapter_hat" else "ctr"
    model = get_continual_model(
        tiny_bert_dir, dataclasses.replace(TINY_PLUGIN, plugin_type=plugin_type, train_layernorm=False), method=method
    )
    model.add_task("sentiment", SENTIMENT.label_names)
    ContinualTrainer(
        model, arguments(tmp_path), task="sentiment", train_dataset=tokenized(model, SENTIMENT.train)
    ).train()
    assert all(bool(p.masks.cumulative(0).any()) for p in model.plugins), "after the task its masks join m_pre"
    before = protected_snapshot(model)
    predictions = model.predict(SENTIMENT.test.texts, task="sentiment")

    model.add_task("colour", COLOUR.label_names)
    trainer = ContinualTrainer(
        model,
        arguments(tmp_path),
        task="colour",
        train_dataset=tokenized(model, COLOUR.train),
        eval_dataset=tokenized(model, COLOUR.validation),
    )
    trainer.train()
    assert trainer.evaluate()["eval_loss"] > 0  # evaluation runs the model's own loss

    protected = changed_free = 0
    for plugin, used1, used2, old in before:
        assert torch.equal(plugin.fc1.weight[used1], old["w1"][used1]) and torch.equal(
            plugin.fc1.bias[used1], old["b1"][used1]
        )
        both = used2[:, None] & used1[None, :]
        assert torch.equal(plugin.fc2.weight[both], old["w2"][both]) and torch.equal(
            plugin.fc2.bias[used2], old["b2"][used2]
        )
        protected += int(used1.sum())
        changed_free += int((plugin.fc1.weight[~used1] != old["w1"][~used1]).any())
    assert protected > 0 and changed_free > 0  # task 0 claimed units, and the free ones learned task 1
    after = model.predict(SENTIMENT.test.texts, task="sentiment")
    if method == "adapter_hat":  # nothing task 0 uses is shared and trainable besides HAT-protected units
        assert [p.label for p in after] == [p.label for p in predictions]
        for a, b in zip(after, predictions):
            assert a.logits == pytest.approx(b.logits, abs=1e-3)


def test_the_trainer_masks_and_compensates_gradients_before_clipping_and_anneals_s(
    tiny_bert_dir, tmp_path, monkeypatch
):
    torch.manual_seed(0)
    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN, method="ctr")
    model.add_task("sentiment", SENTIMENT.label_names)
    model.add_task("colour", COLOUR.label_names)
    events, temperatures = [], []
    for name in ("protect_previous_tasks", "compensate_embedding_gradients", "clamp_embeddings"):
        original = getattr(hat, name)
        monkeypatch.setattr(hat, name, lambda *a, _f=original, _n=name: events.append(_n) or _f(*a))
    args = arguments(tmp_path, num_train_epochs=2, per_device_train_batch_size=8, gradient_accumulation_steps=2)
    trainer = ContinualTrainer(model, args, task="colour", train_dataset=tokenized(model, COLOUR.train))
    clip = trainer.accelerator.clip_grad_norm_
    monkeypatch.setattr(trainer.accelerator, "clip_grad_norm_", lambda *a, **k: events.append("clip") or clip(*a, **k))
    plugin_inputs = trainer.continual_method.plugin_inputs
    monkeypatch.setattr(
        trainer.continual_method,
        "plugin_inputs",
        lambda m, step: temperatures.append((step.epoch, plugin_inputs(m, step)["s"])) or plugin_inputs(m, step),
    )
    trainer.train()
    steps = 2 * 3  # 48 examples / (8 x 2 accumulated) per epoch, 2 epochs
    assert events == ["protect_previous_tasks", "compensate_embedding_gradients", "clip", "clamp_embeddings"] * steps
    s_max = model.plugin_config.s_max
    for epoch in (0, 1):
        s = [value for e, value in temperatures if e == epoch]
        assert len(s) == 6 and s == sorted(s) and s[0] == pytest.approx(1 / s_max) and s[-1] == pytest.approx(s_max)


def test_methods_the_trainer_cannot_serve_are_refused_by_name(tiny_bert_dir):
    model = get_continual_model(tiny_bert_dir, dataclasses.replace(TINY_PLUGIN, plugin_type="adapter"), method="ewc")
    model.add_task("t", ["a", "b"])
    with pytest.raises(CTRError, match="ContinualLearner"):
        ContinualTrainer(model, task="t")


def test_a_plain_trainer_on_a_hat_model_warns_that_protection_is_lost(tiny_bert_dir, tmp_path):
    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN, method="ctr")
    model.add_task("sentiment", SENTIMENT.label_names)
    from transformers import DataCollatorWithPadding

    trainer = Trainer(
        model=model,
        args=arguments(tmp_path, max_steps=1),
        train_dataset=tokenized(model, SENTIMENT.train),
        data_collator=TaskCollator(DataCollatorWithPadding(model.tokenizer), 0),
    )
    with pytest.warns(UnprotectedTrainingWarning, match="ContinualTrainer"):
        trainer.train()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("leak", r"1 of \d+ examples in the validation dataset given to the Trainer also occur"),
        ("unseen", r"the label\(s\) \['bad'\] occur in the validation split"),
        ("out_of_range", r"label ids outside 0..1 \(rows \[0\]\)"),
    ],
)
def test_the_trainer_gets_the_data_checks_of_the_file_loader_and_of_learn_task(
    tiny_bert_dir, tmp_path, change, message
):
    from ctr_plugin.errors import DataError

    model = get_continual_model(tiny_bert_dir, TINY_PLUGIN, method="ctr")
    model.add_task("sentiment", ["good", "bad"])
    train, evaluation = SENTIMENT.train, SENTIMENT.test
    if change == "leak":  # one validation example is a training example
        evaluation = dataclasses.replace(evaluation, texts=[train.texts[0], *evaluation.texts[1:]])
    elif change == "unseen":  # the training data never shows label 1
        keep = [i for i, y in enumerate(train.labels) if y == 0]
        train = dataclasses.replace(train, texts=[train.texts[i] for i in keep], labels=[0] * len(keep))
    else:
        train = dataclasses.replace(train, labels=[2, *train.labels[1:]])
    with pytest.raises(DataError, match=message):
        ContinualTrainer(
            model,
            arguments(tmp_path),
            task="sentiment",
            train_dataset=tokenized(model, train),
            eval_dataset=tokenized(model, evaluation),
        )
