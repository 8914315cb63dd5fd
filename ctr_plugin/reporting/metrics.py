"""Task-CL metrics, one module for every method.

Scores are percentages. ``acc`` and ``f1`` matrices are lists of rows: row i = after training task
i, column j = task j, ``None`` where task j was not evaluated (j > i). T is the number of tasks;
indices are 0-based, so the last row is A[T-1]. Each function's docstring gives its definition and
its source. The keys of :func:`summarize` are those a run's ``results.json`` holds:

========================  ===============================================================
``final_acc``             final accuracy: mean of the last row of A
``final_mf1``             final macro-F1: mean of the last row of F
``forward_acc``           learning accuracy: mean of the diagonal A[j][j]
``forgetting_rate``       forgetting as the CTR paper defines it (mean of A[j][j] - A[T-1][j])
``max_forgetting``        Chaudhry et al.'s forgetting (mean of max_l A[l][j] - A[T-1][j])
``bwt``                   backward transfer (GEM): -forgetting_rate
``avg_incremental_acc``   average incremental accuracy (iCaRL): mean over rows of the row mean
========================  ===============================================================

:func:`cost_per_task` adds ``train_seconds_per_task``, ``params_added_per_task`` and
``checkpoint_bytes_per_task`` from the loop's records; :func:`knowledge_transfer` compares two
runs (a method and its ONE reference) and so lives in the tables, not in one run's results.

Accuracy and macro-F1 are computed here with scikit-learn rather than ``evaluate``, whose metrics
are scripts fetched from the hub at run time and fail offline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

Matrix = list[list[float | None]]


def accuracy(labels: Sequence[int], predictions: Sequence[int]) -> float:
    return 100.0 * float(accuracy_score(labels, predictions))


def macro_f1(labels: Sequence[int], predictions: Sequence[int], num_labels: int) -> float:
    """Macro-F1 over all ``num_labels`` classes (a class never predicted counts with F1 = 0)."""
    return 100.0 * float(
        f1_score(labels, predictions, labels=list(range(num_labels)), average="macro", zero_division=0)
    )


def empty_matrix(num_tasks: int) -> Matrix:
    return [[None] * num_tasks for _ in range(num_tasks)]


def untested_tasks(matrix: Matrix) -> list[int]:
    """The tasks j with a missing score on or below the diagonal (A[i][j] is None for some i >= j):
    those learned without test data. The summary metrics need none missing."""
    return [j for j in range(len(matrix)) if any(matrix[i][j] is None for i in range(j, len(matrix)))]


def final_average(matrix: Matrix) -> float:
    """Final accuracy (of A) or final macro-F1 (of F): the mean of the last row, every task
    scored by the final model. The headline number of CTR's tables (Ke et al. 2021)."""
    return float(np.mean(matrix[-1]))


def learning_accuracy(matrix: Matrix) -> float:
    """Learning accuracy: mean over j of A[j][j], each task scored just after it was learned.

    Riemer et al. 2019 (MER, "learning accuracy"); the spec's forward ("just learned") accuracy.
    It measures how well each new task is learned, before any forgetting; the results key is
    ``forward_acc``.
    """
    return float(np.mean([matrix[j][j] for j in range(len(matrix))]))


def forgetting_rate(matrix: Matrix) -> float:
    """Forgetting as the CTR paper defines it (Ke et al. 2021; = -BWT of Lopez-Paz & Ranzato 2017):
    mean over j < T-1 of A[j][j] - A[T-1][j]. Positive = forgotten, negative = improved by later
    tasks; 0.0 for a single task."""
    T = len(matrix)
    if T < 2:
        return 0.0
    return float(np.mean([matrix[j][j] - matrix[T - 1][j] for j in range(T - 1)]))


def max_forgetting(matrix: Matrix) -> float:
    """Forgetting as Chaudhry et al. 2018 define it (Riemannian Walk, their f and F with k = T):
    mean over j < T-1 of max_{l < T-1} A[l][j] - A[T-1][j], the drop from the best accuracy task
    j ever had before the last task. Never below :func:`forgetting_rate` (l = j is in the max);
    0.0 for a single task."""
    T = len(matrix)
    if T < 2:
        return 0.0
    return float(np.mean([max(matrix[i][j] for i in range(j, T - 1)) - matrix[T - 1][j] for j in range(T - 1)]))


def backward_transfer(matrix: Matrix) -> float:
    """Backward transfer, BWT (Lopez-Paz & Ranzato 2017, GEM): mean over j < T-1 of
    A[T-1][j] - A[j][j], the negative of :func:`forgetting_rate`."""
    return -forgetting_rate(matrix)


def average_incremental_accuracy(matrix: Matrix) -> float:
    """Average incremental accuracy (Rebuffi et al. 2017, iCaRL): mean over i of the mean of
    A[i][j] over j <= i, the average accuracy of every model along the sequence."""
    return float(np.mean([np.mean([matrix[i][j] for j in range(i + 1)]) for i in range(len(matrix))]))


def knowledge_transfer(final_acc: float, one_final_acc: float) -> float:
    """Knowledge transfer against ONE, the convention of Ke et al. (CAT 2020, CTR 2021): the final
    accuracy of a method minus that of its ONE reference (a separate model per task, so neither
    forgetting nor transfer) on a matched run (same task order and seed). Positive = the method
    gains from learning the tasks together more than it loses to forgetting."""
    return final_acc - one_final_acc


def summarize(acc: Matrix, f1: Matrix) -> dict[str, float]:
    """The headline numbers of one run, from its complete matrices (keys: see the module doc).
    ValueError if a score is missing (:func:`untested_tasks`): a mean over the scores there are
    would not be the metric over all tasks."""
    for name, matrix in (("accuracy", acc), ("macro-F1", f1)):
        if missing := untested_tasks(matrix):
            raise ValueError(
                f"The {name} matrix has no scores for task(s) {missing} (learned without test data): "
                "the summary metrics need every task tested."
            )
    return {
        "final_acc": final_average(acc),
        "final_mf1": final_average(f1),
        "forward_acc": learning_accuracy(acc),
        "forgetting_rate": forgetting_rate(acc),
        "max_forgetting": max_forgetting(acc),
        "bwt": backward_transfer(acc),
        "avg_incremental_acc": average_incremental_accuracy(acc),
    }


def cost_per_task(results: dict) -> dict[str, float]:
    """The cost of one run per task, from what its ``results.json`` records (absent keys: left out).

    * ``train_seconds_per_task``: ``train_seconds`` (the loop's training time, tests excluded)
      over the number of tasks;
    * ``params_added_per_task``: mean of ``params_added``, the parameters the model gained for
      each task (plugins, capsules, masks, heads; all trainable when their task is learned).
      Weights a method keeps outside the model (bert_one's and lora_one's per-task copies, a
      replay memory, EWC's Fisher) are not counted;
    * ``checkpoint_bytes_per_task``: (``checkpoint_bytes[T-1]`` - ``checkpoint_bytes[0]``) / (T-1),
      the growth of the saved checkpoint per further task (the first task's size also holds the
      fixed part: tokenizer, config, shared weights); needs T >= 2.
    """
    T = len(results["tasks"])
    out = {}
    if "train_seconds" in results:
        out["train_seconds_per_task"] = float(results["train_seconds"]) / T
    added = results.get("params_added") or []
    if len(added) == T:
        out["params_added_per_task"] = float(np.mean(added))
    sizes = results.get("checkpoint_bytes") or []
    if len(sizes) == T and T >= 2:
        out["checkpoint_bytes_per_task"] = (sizes[-1] - sizes[0]) / (T - 1)
    return out


def run_metrics(results: dict) -> dict[str, float]:
    """Every metric of one complete run, recomputed from its matrices (so every run gets every
    metric, whichever version wrote it) plus :func:`cost_per_task`."""
    return summarize(results["acc_matrix"], results["f1_matrix"]) | cost_per_task(results)
