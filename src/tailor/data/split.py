"""Split a dataset into train, validation and test sets, stratified by label.

Each class is shuffled on its own (seeded) and cut: ``floor(n * test_size)`` rows to test and
``floor(n * val_size)`` to validation, at least one each when the size is above zero, and at least one
row always stays in train. Classes with fewer than three rows cannot be cut that way and go entirely to
train. Every part keeps the rows in their original order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from tailor.data.dataset import TextDataset
from tailor.data.validate import MIN_SPLIT_ROWS
from tailor.errors import UsageError


@dataclass(frozen=True)
class Split:
    """The parts of a dataset; ``test`` is None when no test share was asked for."""

    train: TextDataset
    val: TextDataset
    test: TextDataset | None


def stratified_split(ds: TextDataset, *, val_size: float = 0.1, test_size: float = 0.1, seed: int = 0) -> Split:
    """Split ``ds`` by label, the same way for the same seed.

    Args:
        ds: the cleaned dataset.
        val_size: share of each class for validation, in ``[0, 1)``.
        test_size: share of each class for test, in ``[0, 1)``; 0 gives ``test=None``.
        seed: fixes the shuffle.

    Returns:
        The three parts; no row is in two of them.

    Raises:
        UsageError: a share is negative or the two add up to 1 or more.
    """
    if val_size < 0 or test_size < 0 or val_size + test_size >= 1:
        raise UsageError(f"val_size and test_size must be at least 0 and add up to less than 1 "
                         f"(got {val_size} and {test_size})")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(ds.labels):
        by_label[label].append(i)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label in sorted(by_label):
        rows = by_label[label]
        if len(rows) < MIN_SPLIT_ROWS:
            parts["train"].extend(rows)
            continue
        shuffled = [rows[i] for i in rng.permutation(len(rows))]
        n_test = _share(len(rows), test_size)
        n_val = min(_share(len(rows), val_size), len(rows) - 1 - n_test)
        parts["test"].extend(shuffled[:n_test])
        parts["val"].extend(shuffled[n_test:n_test + n_val])
        parts["train"].extend(shuffled[n_test + n_val:])
    train, val, test = (ds.subset(sorted(parts[name])) for name in ("train", "val", "test"))
    return Split(train=train, val=val, test=test if test_size > 0 else None)


def _share(n: int, size: float) -> int:
    """Rows of a class of ``n`` for a part of relative ``size``: rounded down, but one when ``size > 0``."""
    return max(1, math.floor(n * size + 1e-9)) if size > 0 else 0  # 1e-9: 100 * 0.29 is 28.999...
