"""Seeded, stratified sampling and de-duplication: how a pool of examples becomes splits.

Every random choice here is a function of an explicit integer seed, so a task's splits are a
deterministic function of (task name, seed) — see :func:`derived_seed`.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def derived_seed(*parts: object) -> int:
    """Return a 32-bit seed determined by ``parts`` (e.g. task name, run seed, purpose).

    Uses SHA-256 rather than ``hash()``, which Python salts per process for strings.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")


def dedup_key(text: str, pair: str | None = None) -> tuple[str, str]:
    """The identity of an example for de-duplication: case- and whitespace-insensitive."""
    return " ".join(text.lower().split()), " ".join((pair or "").lower().split())


def deduplicate(
    texts: Sequence[str], labels: Sequence[object], pairs: Sequence[str] | None = None
) -> tuple[list[int], int, int]:
    """Find the examples to keep so that no text (or text pair) occurs twice.

    Returns ``(keep, n_repeats, n_conflicting)``: ``keep`` are the indices, in order, of the first
    occurrence of every text whose copies all carry the same label; ``n_repeats`` counts the
    dropped same-label copies and ``n_conflicting`` the examples dropped because copies of their
    text disagree on the label (neither label can be trusted).
    """
    labels_of: dict[tuple[str, str], set] = defaultdict(set)
    keys = [dedup_key(t, pairs[i] if pairs is not None else None) for i, t in enumerate(texts)]
    for key, label in zip(keys, labels):
        labels_of[key].add(label)
    keep, seen, n_repeats, n_conflicting = [], set(), 0, 0
    for i, key in enumerate(keys):
        if len(labels_of[key]) > 1:
            n_conflicting += 1
        elif key in seen:
            n_repeats += 1
        else:
            seen.add(key)
            keep.append(i)
    return keep, n_repeats, n_conflicting


def stratified_sample(labels: Sequence[int], size: int, seed: int) -> list[int]:
    """Pick ``min(size, len(labels))`` indices, preserving the class proportions.

    Each class gets its proportional share of ``size`` (largest-remainder rounding, so shares sum
    to ``size`` exactly) drawn at random without replacement. Returns sorted indices. Unlike
    scikit-learn's ``train_test_split(stratify=...)`` this never fails on a class with a single
    example or when ``size`` is smaller than the number of classes.
    """
    n = len(labels)
    if size >= n:
        return list(range(n))
    members: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        members[y].append(i)
    classes = sorted(members)
    quotas = {c: size * len(members[c]) / n for c in classes}
    shares = {c: math.floor(quotas[c]) for c in classes}
    # floor(q) + 1 <= ceil(q) <= class size, so no class is asked for more than it has
    by_remainder = sorted(classes, key=lambda c: (-(quotas[c] - shares[c]), c))
    for c in by_remainder[: size - sum(shares.values())]:
        shares[c] += 1
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for c in classes:
        order = rng.permutation(len(members[c]))[: shares[c]]
        picked.extend(members[c][j] for j in order)
    return sorted(picked)


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into ``(rest, carved)`` with ``carved`` a stratified ``fraction`` of them.

    ``carved`` holds ``round(fraction * n)`` indices, at least one when ``fraction > 0`` and
    ``n > 1``, and never all of them; both lists are sorted and disjoint.
    """
    n = len(labels)
    size = min(max(round(fraction * n), 1 if fraction > 0 else 0), n - 1)
    carved = stratified_sample(labels, size, seed)
    carved_set = set(carved)
    return [i for i in range(n) if i not in carved_set], carved
