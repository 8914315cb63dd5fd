"""Shared fixtures: a tiny random BERT (and RoBERTa) saved to disk, and tiny synthetic tasks.

Everything is built in code: no download, no file from outside the test's temporary folder.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ctr_plugin.data.types import Split, TaskData  # noqa: E402
from ctr_plugin.plugins import PluginConfig  # noqa: E402

WORDS = [
    "good",
    "great",
    "fine",
    "nice",
    "bad",
    "awful",
    "poor",
    "sad",
    "red",
    "blue",
    "green",
    "pink",
    "cat",
    "dog",
    "cow",
    "hen",
    "the",
    "a",
    "of",
    "and",
    "is",
    "was",
    "very",
    "not",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Small plugin sizes so that a test trains in seconds.
TINY_PLUGIN = PluginConfig(adapter_size=16, task_capsule_hidden=4, routing_filters=8, pooling="mean")


def _save_tiny_encoder(directory, model_type: str = "bert", **config) -> str:
    from transformers import BertConfig, BertModel, BertTokenizerFast, RobertaConfig, RobertaModel

    # from a vocab.txt: the one way to build it that transformers 4.57 (the floor) and 5 share
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(directory), do_lower_case=True)
    size = dict(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        initializer_range=0.1,
        **config,
    )
    if model_type == "bert":
        model = BertModel(BertConfig(**size))
    else:
        model = RobertaModel(RobertaConfig(**size, pad_token_id=0, bos_token_id=2, eos_token_id=3))
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return str(directory)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    import torch

    torch.manual_seed(0)
    return _save_tiny_encoder(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory) -> str:
    import torch

    torch.manual_seed(0)
    return _save_tiny_encoder(tmp_path_factory.mktemp("tiny_roberta"), "roberta")


def keyword_task(name: str, keywords: list[list[str]], n_train: int = 48, n_test: int = 24, seed: int = 0) -> TaskData:
    """A task whose class k is signalled by one of ``keywords[k]`` amid random filler words."""
    rng = random.Random(f"{name}-{seed}")
    filler = [w for w in WORDS if all(w not in ks for ks in keywords)]

    def make(n: int) -> Split:
        texts, labels = [], []
        for i in range(n):
            label = i % len(keywords)
            words = rng.choices(filler, k=rng.randint(2, 9)) + [rng.choice(keywords[label])]
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(label)
        return Split(texts, labels)

    labels = [f"class_{k}" for k in range(len(keywords))]
    return TaskData(name, labels, make(n_train), make(n_test // 2), make(n_test), source="synthetic")


@pytest.fixture
def three_tasks() -> list[TaskData]:
    return [
        keyword_task("sentiment", [["good", "great"], ["bad", "awful"]]),
        keyword_task("colour", [["red", "pink"], ["blue", "green"], ["cat", "dog"]]),
        keyword_task("animal", [["cow", "hen"], ["sad", "poor"]]),
    ]
