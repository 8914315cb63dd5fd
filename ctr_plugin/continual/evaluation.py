"""Measuring a model on a task: the test and validation scores of the loop and of the Python API.

:func:`evaluate` scores one split (accuracy, macro-F1, mean loss), over one process or several;
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
from ctr_plugin.reporting.metrics import Matrix, accuracy, macro_f1

__all__ = ["evaluate", "given_or_own", "score_task"]


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
            losses = F.cross_entropy(logits, labels, reduction="none").tolist()
            scored += zip(idx, logits.argmax(-1).tolist(), losses)
    predictions = [0] * len(split)
    total_loss = 0.0
    for i, p, loss in gather(scored, accelerator):
        predictions[i] = p
        total_loss += loss
    num_labels = len(model.label_names[task_id])
    return {
        "acc": accuracy(split.labels, predictions),
        "mf1": macro_f1(split.labels, predictions, num_labels),
        "loss": total_loss / max(1, len(split)),
    }


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
) -> None:
    """Score task ``data`` on its ``split`` ("test" or "validation"), after the method's
    ``before_evaluate``, and write the accuracy and macro-F1 (percent, 2 decimals) into cells
    ``(row, column)`` of ``matrices`` (accuracy, macro-F1) for each of ``rows``. A split without
    examples (a task given from Python without test data) leaves the cells empty."""
    examples = getattr(data, split)
    if not len(examples):
        return
    task_id = model.task_id(data.name)
    method.before_evaluate(model, task_id)
    scores = evaluate(model, examples, task_id, cfg, desc=f"{split} {data.name}", accelerator=accelerator)
    acc, f1 = matrices
    for row in rows:
        acc[row][column], f1[row][column] = round(scores["acc"], 2), round(scores["mf1"], 2)


def given_or_own(accelerator: Accelerator | None, model: ContinualModel) -> Accelerator:
    """The accelerator a run passes down; a call from Python without one gets one process on the
    model's device, built here once and passed on to everything below it."""
    return accelerator if accelerator is not None else make_accelerator(model.device.type)
