"""Search-space declarations for hyper-parameter tuning (``ctr_plugin.experiments.tuning``, ``ctr-tune``).

Every method declares the ranges of its own options in ``ContinualMethod.search_space``; the
options every method shares (the learning rate and the number of epochs) are declared once, in
``SHARED_SEARCH_SPACE``, so that each method is tuned over the same shared ranges. A distribution
says how Optuna samples one value; Optuna is imported only where a value is sampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LogUniform:
    """A float drawn log-uniformly from [low, high] (rates, penalty strengths)."""

    low: float
    high: float

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def describe(self) -> str:
        return f"log-uniform [{self.low:g}, {self.high:g}]"

    def edge(self, value: float) -> str | None:
        """ "low" or "high" when ``value`` lies in the outer tenth of the range (in log space)."""
        return _edge(math.log(value), math.log(self.low), math.log(self.high))


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high]."""

    low: float
    high: float

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def describe(self) -> str:
        return f"uniform [{self.low:g}, {self.high:g}]"

    def edge(self, value: float) -> str | None:
        """ "low" or "high" when ``value`` lies in the outer tenth of the range."""
        return _edge(value, self.low, self.high)


@dataclass(frozen=True)
class Choice:
    """One of a few values (epochs, memory sizes, ranks)."""

    values: tuple[Any, ...]

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def describe(self) -> str:
        return "one of {" + ", ".join(str(v) for v in self.values) + "}"

    def edge(self, value: Any) -> str | None:
        """ "low" or "high" when ``value`` is the smallest or largest of several numbers."""
        if len(self.values) < 2 or not all(isinstance(v, (int, float)) for v in self.values):
            return None
        return "low" if value == min(self.values) else "high" if value == max(self.values) else None


def _edge(value: float, low: float, high: float) -> str | None:
    margin = (high - low) / 10
    return "low" if value <= low + margin else "high" if value >= high - margin else None


Distribution = LogUniform | Uniform | Choice

# TrainingConfig fields every method is tuned over, with the same ranges for all.
SHARED_SEARCH_SPACE: dict[str, Distribution] = {
    "lr": LogUniform(3e-4, 3e-3),
    "epochs": Choice((3, 5)),
}
