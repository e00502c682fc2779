"""Paired tests for two label predictors scored on the same rows.

Ground floor (numpy only): the runtime gate (:mod:`tailor.models.optimize`) and the version comparison
(:mod:`tailor.eval.compare`) both ask whether one set of predictions is better than another on the same rows.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np

BOOTSTRAP_RESAMPLES = 1000


def bootstrap_macro_f1(targets: list[str], predictions: list[list[str]], resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> np.ndarray:
    """Macro-F1 (0..1) of each prediction list on the same ``resamples`` bootstrap resamples of the rows:
    an array ``(len(predictions), resamples)``. Per resample, the classes averaged are those present in its
    targets or predictions, as scikit-learn's ``f1_score(average="macro")`` does."""
    classes = {label: i for i, label in enumerate(sorted(set(targets).union(*predictions)))}
    n, k = len(targets), len(classes)
    rows = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    truth = np.asarray([classes[t] for t in targets])[rows]
    offsets = (np.arange(resamples) * k * k)[:, None]
    out = np.zeros((len(predictions), resamples))
    for j, predicted in enumerate(predictions):
        guess = np.asarray([classes[p] for p in predicted])[rows]
        confusion = np.bincount((offsets + truth * k + guess).ravel(), minlength=resamples * k * k)
        confusion = confusion.reshape(resamples, k, k)
        tp = np.diagonal(confusion, axis1=1, axis2=2)
        denominator = confusion.sum(axis=2) + confusion.sum(axis=1)  # 2 tp + fn + fp
        present = denominator > 0
        f1 = np.where(present, 2 * tp / np.maximum(denominator, 1), 0.0)
        out[j] = f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    return out


def mcnemar_exact(b_only: int, a_only: int) -> float:
    """The exact McNemar test's two-sided p-value: how likely a split of the discordant pairs at least this
    uneven is when either predictor is as likely to be the one that is right.

    Args:
        b_only: rows the second predictor got right and the first wrong.
        a_only: rows the first predictor got right and the second wrong.

    Returns:
        ``min(1, 2 * P(X <= min(b_only, a_only)))`` for ``X ~ Binomial(b_only + a_only, 1/2)``, computed exactly
        (9 against 1 gives ``22/1024 = 0.021484375``); 1.0 when there is no discordant pair.

    Raises:
        ValueError: a negative count.
    """
    if b_only < 0 or a_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b_only} and {a_only}")
    n = b_only + a_only
    tail = Fraction(sum(comb(n, i) for i in range(min(b_only, a_only) + 1)), 2 ** n)
    return float(min(Fraction(1), 2 * tail))


def macro_f1_difference_interval(targets: list[str], a: list[str], b: list[str], level: float = 0.95,
                                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """The paired-bootstrap ``level`` interval (percentile method) of ``b``'s macro-F1 minus ``a``'s (0..1 scale):
    both are scored on the same resamples of the rows (:func:`bootstrap_macro_f1`), so what the rows share
    cancels out. Unrounded; ``(0.0, 0.0)`` when ``a`` and ``b`` are the same labels."""
    scores = bootstrap_macro_f1(targets, [a, b], resamples, seed)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(scores[1] - scores[0], [tail, 100 - tail])
    return float(low), float(high)
