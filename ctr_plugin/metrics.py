"""Task-CL metrics, one module for every method.

Scores are percentages. ``acc`` and ``f1`` matrices are lists of rows: row i = after training task
i, column j = task j, ``None`` where task j was not evaluated (j > i). Definitions follow CTR
(Ke et al. 2021) and GEM (Lopez-Paz & Ranzato 2017):

* final accuracy / macro-F1: mean of the last row;
* forward ("just learned") accuracy: mean of the diagonal A[j][j];
* forgetting rate: mean over j < T-1 of A[j][j] - A[T-1][j] (positive = forgotten);
* backward transfer (BWT): its negative.

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
    return 100.0 * float(f1_score(labels, predictions, labels=list(range(num_labels)), average="macro", zero_division=0))


def empty_matrix(num_tasks: int) -> Matrix:
    return [[None] * num_tasks for _ in range(num_tasks)]


def final_average(matrix: Matrix) -> float:
    last = [v for v in matrix[-1] if v is not None]
    return float(np.mean(last))


def forward_accuracy(matrix: Matrix) -> float:
    return float(np.mean([matrix[j][j] for j in range(len(matrix))]))


def forgetting_rate(matrix: Matrix) -> float:
    """Mean over j < T-1 of A[j][j] - A[T-1][j]; 0.0 for a single task."""
    T = len(matrix)
    if T < 2:
        return 0.0
    return float(np.mean([matrix[j][j] - matrix[T - 1][j] for j in range(T - 1)]))


def summarize(acc: Matrix, f1: Matrix) -> dict[str, float]:
    """The headline numbers of one run, from its complete matrices."""
    forgetting = forgetting_rate(acc)
    return {
        "final_acc": final_average(acc),
        "final_mf1": final_average(f1),
        "forward_acc": forward_accuracy(acc),
        "forgetting_rate": forgetting,
        "bwt": -forgetting,
    }
