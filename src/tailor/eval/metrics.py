"""Classification metrics for a model's predictions on labelled data, and the baseline it must beat.

Every function returns plain JSON-ready dicts with floats rounded to four decimals, so the same numbers
appear in the registry, the HTML report, the terminal and ``--json`` output.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

ECE_BINS = 15
HEADLINE_KEYS = ("accuracy", "macro_f1", "weighted_f1")


def _r(value: float) -> float:
    return round(float(value), 4)


def check_inputs(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str],
                 proba: np.ndarray | None) -> None:
    """Reject inputs the metrics cannot be computed on.

    Args:
        y_true: gold labels.
        y_pred: predicted labels, one per gold label.
        labels: the label set, in the order of ``proba``'s columns.
        proba: class probabilities of shape ``(len(y_true), len(labels))``, or None.

    Raises:
        ValueError: no rows, lengths differ, a label is outside ``labels``, or ``proba`` has the wrong shape.
    """
    if len(y_true) == 0:
        raise ValueError("no rows to evaluate")
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold labels but {len(y_pred)} predictions")
    unknown = sorted((set(y_true) | set(y_pred)) - set(labels))
    if unknown:
        raise ValueError(f"labels not in the model's label set: {', '.join(map(repr, unknown))}; "
                         "map them to known labels before evaluating")
    if proba is not None and np.shape(proba) != (len(y_true), len(labels)):
        raise ValueError(f"proba has shape {np.shape(proba)}, expected {(len(y_true), len(labels))}")


def expected_calibration_error(y_true: Sequence[str], proba: np.ndarray, labels: Sequence[str],
                               bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error over equal-width confidence bins.

    Each row's confidence is its highest probability; the row is correct when that column's label is the
    gold label. Bins are ``(k/bins, (k+1)/bins]`` (the first also holds 0); ECE is the row-weighted mean
    over bins of ``|accuracy - mean confidence|``.

    Args:
        y_true: gold labels.
        proba: ``(n, len(labels))`` probabilities, columns in ``labels`` order.
        labels: the label set.
        bins: number of bins.

    Returns:
        The ECE, unrounded.
    """
    proba = np.asarray(proba, dtype=float)
    confidence = proba.max(axis=1)
    correct = np.asarray(labels)[proba.argmax(axis=1)] == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    bin_of = np.searchsorted(edges[1:-1], confidence, side="left")
    gaps = [abs(correct[bin_of == b].mean() - confidence[bin_of == b].mean()) * np.sum(bin_of == b)
            for b in np.unique(bin_of)]
    return float(sum(gaps) / len(confidence))


def binary_roc_auc(y_true: Sequence[str], proba: np.ndarray, labels: Sequence[str]) -> float | None:
    """ROC-AUC with ``labels[1]`` as the positive class; None unless binary with both classes in ``y_true``."""
    if len(labels) != 2:
        return None
    positive = np.asarray(y_true) == labels[1]
    if positive.all() or not positive.any():
        return None
    return _r(roc_auc_score(positive, np.asarray(proba)[:, 1]))


def per_class_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Precision, recall, F1 and support for every label, in ``labels`` order."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), zero_division=0)
    return {label: {"precision": _r(p), "recall": _r(r), "f1": _r(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)}


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str],
                           proba: np.ndarray | None = None) -> dict:
    """Score predicted labels (and optionally probabilities) against gold labels.

    Macro-F1 averages over the labels that occur in ``y_true`` or ``y_pred`` (scikit-learn's default), so a
    class that is absent from the data and never predicted does not count as an F1 of 0; ``per_class`` still
    lists every label.

    Args:
        y_true: gold labels.
        y_pred: predicted labels, one per gold label.
        labels: the model's label set; fixes the order of ``per_class``, the confusion matrix and ``proba``.
        proba: ``(n, len(labels))`` class probabilities, columns in ``labels`` order, or None.

    Returns:
        ``{"n", "accuracy", "macro_f1", "weighted_f1", "per_class": {label: {"precision", "recall", "f1",
        "support"}}, "confusion_matrix": {"labels", "matrix"}, "roc_auc", "ece", "log_loss"}``; the confusion
        matrix has gold labels as rows and predictions as columns; ``roc_auc`` is set only for binary
        labels, ``ece`` and ``log_loss`` only when ``proba`` is given (None otherwise).

    Raises:
        ValueError: see :func:`check_inputs`.
    """
    check_inputs(y_true, y_pred, labels, proba)
    labels = list(labels)
    return {
        "n": len(y_true),
        "accuracy": _r(accuracy_score(y_true, y_pred)),
        "macro_f1": _r(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "weighted_f1": _r(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "per_class": per_class_metrics(y_true, y_pred, labels),
        "confusion_matrix": {"labels": labels,
                             "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
        "roc_auc": None if proba is None else binary_roc_auc(y_true, proba, labels),
        "ece": None if proba is None else _r(expected_calibration_error(y_true, proba, labels)),
        "log_loss": None if proba is None else _r(log_loss(y_true, proba, labels=labels)),
    }


def majority_label(train_labels: Sequence[str]) -> str:
    """The most frequent training label; ties go to the first in sorted order."""
    counts = Counter(train_labels)
    top = max(counts.values())
    return min(label for label, count in counts.items() if count == top)


def majority_baseline(train_labels: Sequence[str], y_true: Sequence[str], labels: Sequence[str]) -> dict:
    """Score the constant prediction of the majority training label.

    Args:
        train_labels: the training set's labels.
        y_true: the evaluation set's gold labels.
        labels: the label set.

    Returns:
        ``{"label", "accuracy", "macro_f1", "weighted_f1"}``.

    Raises:
        ValueError: see :func:`check_inputs`.
    """
    label = majority_label(train_labels)
    scores = classification_metrics(y_true, [label] * len(y_true), labels)
    return {"label": label, **{key: scores[key] for key in HEADLINE_KEYS}}


def compare(metrics: dict, reference: dict, keys: Sequence[str] = HEADLINE_KEYS) -> dict:
    """``metrics[key] - reference[key]`` for each key, rounded to four decimals."""
    return {key: _r(metrics[key] - reference[key]) for key in keys}
