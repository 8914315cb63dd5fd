"""Serving predictions by task name, or without one: checks the texts and tasks given, batches
them, classifies (without a task: ``task_inference.py`` infers it, or a shared head answers)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ctr_plugin.errors import CTRError, TaskError
from ctr_plugin.modeling.task_inference import TASK_SCORES, check_score, classify_without_task
from ctr_plugin.options import check_max_length, position_limit

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel


@dataclass
class Prediction:
    """The prediction for one text: the label name, its probability, the raw logits, the task.

    Without a task given: for per-task modules, ``task`` is the inferred task, ``task_score`` its
    probability ``P(t | x)`` and ``logits`` that task's head's; for a shared head ``task`` and
    ``task_score`` are None and ``logits`` are over every class the model knows."""

    label: str
    probability: float
    logits: list[float]
    task: str | None = None
    task_score: float | None = None


def _checked_texts(texts: Iterable[str], what: str) -> list[str]:
    """``texts`` as a list, if it is an iterable of non-blank strings; else a CTRError naming the
    offending positions."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise CTRError(
            f"predict() takes {what} as a list (or any iterable) of strings, got {type(texts).__name__}; "
            "wrap a single text in a list."
        )
    texts = list(texts)
    wrong = [i for i, x in enumerate(texts) if not isinstance(x, str)]
    if wrong:
        raise CTRError(
            f"predict(): {what} must be strings, but those at positions {wrong[:5]} "
            f"are {type(texts[wrong[0]]).__name__}."
        )
    blank = [i for i, x in enumerate(texts) if not x.strip()]
    if blank:
        raise CTRError(
            f"predict(): {len(blank)} of the {what} are empty or whitespace only (positions {blank[:5]}); there is "
            f"nothing to classify in them. Remove them (training refuses such texts too)."
        )
    return texts


def _tasks_per_text(model: ContinualModel, task, count: int) -> tuple[list[int], bool]:
    """The task id of each of ``count`` texts, and whether the call mixes tasks (a list given)."""
    if isinstance(task, (str, numbers.Integral)):
        return [model.task_id(task)] * count, False
    if not isinstance(task, Iterable):
        raise TaskError(
            f"predict(): task must be a task name or id, or a list of them (one per text), got {type(task).__name__}."
        )
    per_text = [model.task_id(t) for t in task]
    if len(per_text) != count:
        raise CTRError(
            f"predict() got {count} texts but {len(per_text)} tasks: give one task per text, or one task for all."
        )
    return per_text, True


def _checked_pairs(model: ContinualModel, pairs, per_text: list[int], mixed: bool) -> list[str | None] | None:
    """The second texts (None where a text has none; None for all if none has one), checked
    against what each task was trained on."""
    if pairs is not None:
        pairs = list(pairs) if mixed and not isinstance(pairs, (str, bytes)) else _checked_texts(pairs, "pairs")
        if len(pairs) != len(per_text):
            raise CTRError(
                f"predict() got {len(per_text)} texts but {len(pairs)} pairs: give one second text per text."
            )
        given = [i for i, p in enumerate(pairs) if p is not None]
        _checked_texts([pairs[i] for i in given], "pairs")
        if not given:
            pairs = None
    for t in sorted(set(per_text)):
        rows = [i for i, x in enumerate(per_text) if x == t]
        with_pair = [i for i in rows if pairs is not None and pairs[i] is not None]
        if model.task_pairs[t] and len(with_pair) < len(rows):
            raise CTRError(
                f"Task {model.task_names[t]!r} was trained on text pairs (e.g. aspect + sentence): give the second "
                f"texts too (pairs=[...] in Python, --pair on the command line)."
            )
        if model.task_pairs[t] is False and with_pair:
            raise CTRError(
                f"Task {model.task_names[t]!r} was trained on single texts: "
                "call predict() without pairs for its texts."
            )
    return pairs


def _checked_sizes(model: ContinualModel, batch_size, max_length, pair: bool) -> int:
    """The maximum length (default: 128 tokens, or fewer where the encoder takes fewer), once
    it and ``batch_size`` are checked."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise CTRError(f"predict(): batch_size is {batch_size!r}; it must be a whole number >= 1.")
    if max_length is None:
        max_length = min(128, position_limit(model.tokenizer, model.encoder.config) or 128)
    check_max_length(max_length, model.tokenizer, model.encoder.config, pair=pair)
    return int(max_length)


def task_free_score(model: ContinualModel, score: str | None) -> str | None:
    """The task-id score a prediction without a task uses (None: a shared head, which needs none).
    A Task-IL model has per-task heads that can infer the task, but was never trained or measured
    so: it asks for the score to be named."""
    if model.num_tasks == 0:
        raise TaskError("This model has no tasks yet: there is nothing to predict.")
    if model.scenario.shared_head:
        if score is not None:
            raise CTRError(
                f"This model has one shared head ({model.scenario.describe()}): it predicts without a task and "
                "infers none, so it takes no task-id score; leave score unset."
            )
        return None
    if score is None and model.scenario.name == "task":
        raise TaskError(
            "This model was trained task-incremental (the task given at test time): name the task (task=..., "
            "--task), or let it infer the task from its per-task heads with "
            f"score={' or '.join(map(repr, TASK_SCORES))} (--task-score) "
            "(maximum softmax probability or energy: out-of-distribution scores of each task's modules; they "
            "were never trained to tell the tasks apart, so expect lower accuracy than with the task given)."
        )
    return check_score(score or TASK_SCORES[0])


@torch.no_grad()
def predict(
    model: ContinualModel,
    texts: Iterable[str],
    task: str | int | Sequence[str | int] | None,
    pairs: Iterable[str | None] | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    score: str | None = None,
) -> list[Prediction]:
    """``ContinualModel.predict`` (its docstring says what it takes and promises)."""
    texts = _checked_texts(texts, "texts")
    if task is None:
        return _predict_without_task(model, texts, pairs, batch_size, max_length, score)
    if score is not None:
        raise CTRError("predict(): score= chooses how a task is inferred; with the task given, leave it unset.")
    per_text, mixed = _tasks_per_text(model, task, len(texts))
    pairs = _checked_pairs(model, pairs, per_text, mixed)
    max_length = _checked_sizes(model, batch_size, max_length, pairs is not None)

    def has_pair(i: int) -> bool:
        return pairs is not None and pairs[i] is not None

    # Batches never mix single texts with pairs (they tokenize differently), nor tasks where a
    # model holds one copy of its weights per task; otherwise by length, across tasks.
    def batch_key(i: int):
        return (has_pair(i), per_text[i] if model.task_weights else 0)

    order = sorted(
        range(len(texts)), key=lambda i: (*batch_key(i), len(texts[i]) + (len(pairs[i]) if has_pair(i) else 0))
    )
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < int(batch_size) and batch_key(batches[-1][0]) == batch_key(i):
            batches[-1].append(i)
        else:
            batches.append([i])
    results: list[Prediction | None] = [None] * len(texts)
    with model.evaluating():
        for idx in batches:
            second = [pairs[i] for i in idx] if has_pair(idx[0]) else None
            batch = model.tokenize([texts[i] for i in idx], second, int(max_length))
            task_ids = torch.tensor([per_text[i] for i in idx], dtype=torch.long, device=model.device)
            logits = model(**batch, task_ids=task_ids).logits.float()
            for row, i in enumerate(idx):
                names = model.label_names[per_text[i]]
                # a task with fewer labels than the batch's widest; a shared head's columns of the task's classes
                columns = model.scenario.class_ids[per_text[i]] if model.scenario.shared_head else slice(len(names))
                own = logits[row, columns]
                probs = own.softmax(-1)
                k = int(probs.argmax())
                results[i] = Prediction(names[k], float(probs[k]), own.tolist(), model.task_names[per_text[i]])
    return results  # type: ignore[return-value]


@torch.no_grad()
def _predict_without_task(model: ContinualModel, texts: list[str], pairs, batch_size, max_length, score):
    """``predict`` with no task: every text through ``task_inference.classify_without_task``, with
    task ids withheld."""
    score = task_free_score(model, score)
    flags = {p for p in model.task_pairs if p is not None}
    if len(flags) > 1:
        raise CTRError(
            "Some of this model's tasks read text pairs and others single texts: without a task it cannot tell "
            "which a text is. Name the task."
        )
    if pairs is not None:
        pairs = _checked_texts(pairs, "pairs")
        if len(pairs) != len(texts):
            raise CTRError(f"predict() got {len(texts)} texts but {len(pairs)} pairs: give one second text per text.")
    if flags == {True} and pairs is None:
        raise CTRError("This model's tasks read text pairs: give the second texts too (pairs=[...], --pair).")
    if flags == {False} and pairs is not None:
        raise CTRError("This model's tasks read single texts: call predict() without pairs.")
    max_length = _checked_sizes(model, batch_size, max_length, pairs is not None)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + (len(pairs[i]) if pairs else 0))
    results: list[Prediction | None] = [None] * len(texts)
    with model.evaluating(), model.scenario.withholding():
        for start in range(0, len(order), int(batch_size)):
            idx = order[start : start + int(batch_size)]
            batch = model.tokenize([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None, max_length)
            out = next(iter(classify_without_task(model, batch, (score or TASK_SCORES[0],)).values()))
            for row, i in enumerate(idx):
                c = int(out.class_probs[row].argmax())
                label, probability = model.scenario.class_names[c], float(out.class_probs[row, c])
                if out.task_probs is None:
                    results[i] = Prediction(label, probability, out.class_logits[row].tolist())
                    continue
                t = int(out.task_probs[row].argmax())
                own = out.task_logits[row, t, : len(model.label_names[t])].tolist()
                results[i] = Prediction(label, probability, own, model.task_names[t], float(out.task_probs[row, t]))
    return results  # type: ignore[return-value]
