"""Measuring a model on a task: the test and validation scores of the loop and of the Python API.

:func:`evaluate` scores one split (accuracy, macro-F1, mean loss) with the task given (Task-IL, and
validation in every scenario), over one process or several; :func:`evaluate_without_task` scores
a test split in Domain-IL and Class-IL, where the model sees no task id (the batches carry none and
the model refuses one: ``modeling/scenario_heads.py``) and chooses among every class seen so far;
:func:`score_task` writes a task's scores into the cells of the accuracy and macro-F1 matrices.
:func:`given_or_own` gives a call from Python without an accelerator one on the model's device.
The loop (``ctr_plugin.continual.loop``) trains; this module only measures.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm.auto import tqdm

from ctr_plugin.continual.batching import batches, encode_batch
from ctr_plugin.continual.methods import ContinualMethod
from ctr_plugin.continual.parallel import gather, make_accelerator
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.modeling.task_inference import TASK_SCORES, classify_without_task
from ctr_plugin.reporting.metrics import Matrix, accuracy, macro_f1

__all__ = ["evaluate", "evaluate_without_task", "given_or_own", "score_task"]


@torch.no_grad()
def evaluate(
    model: ContinualModel,
    split: Split,
    task_id: int,
    cfg: TrainingConfig,
    desc: str = "eval",
    accelerator: Accelerator | None = None,
) -> dict[str, float]:
    """Accuracy, macro-F1 (percent) and mean loss of ``model`` on ``split`` as task ``task_id``.

    Batches are sorted by length, so little padding is computed; results do not depend on it.
    With several processes, each takes every N-th batch and the predictions are gathered.
    """
    accelerator = given_or_own(accelerator, model)
    order = sorted(range(len(split)), key=lambda i: len(split.texts[i]) + (len(split.pairs[i]) if split.pairs else 0))
    mine = list(batches(split, cfg.eval_batch_size, order))[accelerator.process_index :: accelerator.num_processes]
    scored: list[tuple[int, int, float]] = []  # example, prediction, loss
    bar = tqdm(mine, desc=desc, leave=False, disable=not (cfg.progress and accelerator.is_local_main_process))
    with model.evaluating():
        for idx in bar:
            batch, task_ids, labels, _ = encode_batch(model, split, idx, task_id, cfg.max_length)
            with accelerator.autocast():
                logits = model(**batch, task_ids=task_ids).logits.float()
            targets = model.scenario.class_labels(task_ids, labels)  # class-space ids under a shared head
            losses = F.cross_entropy(logits, targets, reduction="none").tolist()
            scored += zip(idx, logits.argmax(-1).tolist(), losses)
    predictions = [0] * len(split)
    total_loss = 0.0
    for i, p, loss in gather(scored, accelerator):
        predictions[i] = p
        total_loss += loss
    labels = split.labels
    if model.scenario.shared_head:  # its logits are over the class space: score the task's own classes
        ids = model.scenario.class_ids[task_id]
        labels, predictions = _within_task(ids, [ids[y] for y in labels], predictions)
    num_labels = len(model.label_names[task_id])
    return {
        "acc": accuracy(labels, predictions),
        "mf1": macro_f1(labels, predictions, num_labels),
        "loss": total_loss / max(1, len(split)),
        "n": len(split),
    }


def _within_task(class_ids: list[int], labels: list[int], predictions: list[int]) -> tuple[list[int], list[int]]:
    """Class-space ``labels`` and ``predictions`` as ids within a task whose classes are
    ``class_ids``: a prediction of a class outside the task becomes ``len(class_ids)``, wrong for
    every label (so macro-F1 averages over the task's own classes, and counts such errors)."""
    local = {c: k for k, c in enumerate(class_ids)}
    return [local[y] for y in labels], [local.get(p, len(class_ids)) for p in predictions]


@torch.no_grad()
def evaluate_without_task(
    model: ContinualModel,
    split: Split,
    task_id: int,
    cfg: TrainingConfig,
    desc: str = "eval",
    accelerator: Accelerator | None = None,
) -> dict:
    """Accuracy and macro-F1 (percent) of ``model`` on task ``task_id``'s ``split`` without its task
    id: the model chooses among every class it knows (``task_inference.classify_without_task``),
    with task ids withheld. ``task_id`` serves only to score: the true labels as class-space ids
    (``model.scenario.class_ids``); it never reaches the model.

    Scored with each task-id score (``task_inference.TASK_SCORES``): ``acc``, ``mf1`` are the first
    score's (MSP), ``by_score`` holds each score's ``acc`` and ``task_id_acc`` (the share of
    examples whose inferred task is their own; None for a shared head, which infers none), and
    ``correct`` / ``task_correct`` / ``n`` the counts that the accuracy over several tasks adds.
    """
    accelerator = given_or_own(accelerator, model)
    order = sorted(range(len(split)), key=lambda i: len(split.texts[i]) + (len(split.pairs[i]) if split.pairs else 0))
    mine = list(batches(split, cfg.eval_batch_size, order))[accelerator.process_index :: accelerator.num_processes]
    scored: list[tuple[int, dict]] = []  # example, {score: (class prediction, task prediction)}
    bar = tqdm(mine, desc=desc, leave=False, disable=not (cfg.progress and accelerator.is_local_main_process))
    with model.evaluating(), model.scenario.withholding():
        for idx in bar:
            pairs = [split.pairs[i] for i in idx] if split.pairs else None
            batch = model.tokenize([split.texts[i] for i in idx], pairs, cfg.max_length)  # no task ids, no labels
            with accelerator.autocast():
                outputs = classify_without_task(model, batch, TASK_SCORES)
            answers = {
                score: (
                    out.class_probs.argmax(-1).tolist(),
                    out.task_probs.argmax(-1).tolist() if out.task_probs is not None else [None] * len(idx),
                )
                for score, out in outputs.items()
            }
            scored += [(i, {s: (c[r], t[r]) for s, (c, t) in answers.items()}) for r, i in enumerate(idx)]
    answered = dict(gather(scored, accelerator))
    class_ids = model.scenario.class_ids[task_id]
    truth = [class_ids[y] for y in split.labels]
    by_score = {}
    for score in TASK_SCORES:
        labels, predictions = _within_task(class_ids, truth, [answered[i][score][0] for i in range(len(split))])
        tasks = [answered[i][score][1] for i in range(len(split))]
        task_correct = None if tasks and tasks[0] is None else sum(t == task_id for t in tasks)
        by_score[score] = {
            "acc": accuracy(labels, predictions),
            "mf1": macro_f1(labels, predictions, len(class_ids)),
            "correct": sum(p == y for p, y in zip(predictions, labels)),
            "task_correct": task_correct,
            "task_id_acc": None if task_correct is None else 100.0 * task_correct / max(1, len(split)),
        }
    first = by_score[TASK_SCORES[0]]
    return {"acc": first["acc"], "mf1": first["mf1"], "n": len(split), "by_score": by_score}


def score_task(
    model: ContinualModel,
    method: ContinualMethod,
    data: TaskData,
    split: str,
    cfg: TrainingConfig,
    matrices: tuple[Matrix, Matrix],
    column: int,
    rows: Iterable[int],
    accelerator: Accelerator | None = None,
) -> dict | None:
    """Score task ``data`` on its ``split`` ("test" or "validation"), after the method's
    ``before_evaluate``, and write the accuracy and macro-F1 (percent, 2 decimals) into cells
    ``(row, column)`` of ``matrices`` (accuracy, macro-F1) for each of ``rows``; return the scores.
    In Domain-IL and Class-IL the model is not given the task (:func:`evaluate_without_task`).
    A split without examples (a task given from Python without test data) leaves the cells
    empty and returns None."""
    examples = getattr(data, split)
    if not len(examples):
        return None
    task_id = model.task_id(data.name)
    if model.scenario.name == "task":  # in Domain-/Class-IL no hook is told the task of a test split
        method.before_evaluate(model, task_id)
    score = evaluate if model.scenario.name == "task" else evaluate_without_task
    scores = score(model, examples, task_id, cfg, desc=f"{split} {data.name}", accelerator=accelerator)
    acc, f1 = matrices
    for row in rows:
        acc[row][column], f1[row][column] = round(scores["acc"], 2), round(scores["mf1"], 2)
    return scores


def given_or_own(accelerator: Accelerator | None, model: ContinualModel) -> Accelerator:
    """The accelerator a run passes down; a call from Python without one gets one process on the
    model's device, built here once and passed on to everything below it."""
    return accelerator if accelerator is not None else make_accelerator(model.device.type)
