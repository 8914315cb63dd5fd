"""Uncertainty over runs: a method's mean with its confidence interval, and paired comparisons.

A grid has few runs per method (task orders x seeds: 3 to 10), so every interval here is
Student's t-interval (via scipy), the standard choice for small samples:

    mean ± t_{n-1, (1+c)/2} · s / sqrt(n),   s the sample standard deviation (ddof = 1).

It assumes the run-to-run values are roughly normal; with n < 2 there is no interval (None).

A *paired* comparison matches the runs of two methods on the same (task order, seed), where
both saw the same data and the same order, so the order's own difficulty cancels out in the
per-run differences; the t-interval is then taken over those differences (the paired t-test's
interval). The verdict reads the interval: "better" when it lies above 0, "worse" when below,
"within noise" when it contains 0.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
BETTER, WORSE, WITHIN_NOISE, TOO_FEW = "better", "worse", "within noise", "too few runs"


@dataclass(frozen=True)
class Estimate:
    """Mean, sample std and the two-sided t confidence interval of ``n`` values."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof = 1); 0.0 for a single value
    ci_low: float | None  # None with fewer than two values
    ci_high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.ci_low is None else (self.ci_high - self.ci_low) / 2


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """The mean of ``values`` with its Student's t confidence interval (see the module doc)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(x.mean())
    if n < 2:
        return Estimate(n, mean, 0.0, None, None)
    std = float(x.std(ddof=1))
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class PairedComparison:
    """``reference`` against ``method`` on their matched runs: differences reference - method
    (sign flipped where lower is better, so a positive difference always favours the reference)."""

    reference: str
    method: str
    metric: str
    difference: Estimate  # over matched runs
    wins: int  # runs where the reference is better
    losses: int
    ties: int
    verdict: str  # BETTER, WORSE, WITHIN_NOISE (about the reference), or TOO_FEW


def verdict(estimate: Estimate) -> str:
    """ "better" / "worse" when the interval of the differences excludes 0, else "within noise"."""
    if estimate.ci_low is None:
        return TOO_FEW
    if estimate.ci_low > 0:
        return BETTER
    if estimate.ci_high < 0:
        return WORSE
    return WITHIN_NOISE


def paired_comparison(
    reference: str,
    reference_values: Mapping[Hashable, float],
    method: str,
    method_values: Mapping[Hashable, float],
    metric: str = "final_acc",
    higher_is_better: bool = True,
    confidence: float = CONFIDENCE,
) -> PairedComparison | None:
    """Compare two methods over the runs both have, keyed by (task order, seed) or a run name.

    Returns None when no run matches. A tie is a difference of 0 (up to float rounding: scores are
    rounded to hundredths of a percent, so equal results do occur).
    """
    keys = sorted(set(reference_values) & set(method_values), key=str)
    if not keys:
        return None
    sign = 1.0 if higher_is_better else -1.0
    diffs = [sign * (reference_values[k] - method_values[k]) for k in keys]
    diffs = [0.0 if abs(d) < 1e-9 else d for d in diffs]
    estimate = t_interval(diffs, confidence)
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    return PairedComparison(
        reference, method, metric, estimate, wins, losses, len(diffs) - wins - losses, verdict(estimate)
    )
