"""Knowing when not to answer: a confidence threshold below which a classifier abstains.

A classifier's answer for a text is its most probable label; its confidence is that label's probability.
Answering only texts whose confidence reaches a threshold ``t`` trades coverage (the share of texts
answered) for accuracy on the answered texts (their precision). :func:`coverage_curve` tabulates the trade on
labelled rows, and :func:`suggest_threshold` picks, on a version's validation rows, the smallest ``t`` whose
answered rows reach a target precision: the most coverage the target allows.

Candidate thresholds are the confidences the rows actually have (rows with equal confidence are answered
together), so the suggestion is never lower than a confidence validation has seen; a threshold must keep at
least :data:`MIN_ANSWERED` rows answered (every row on a smaller split), so one lucky row cannot set it.

The default target (``TrainConfig.abstain_target_precision``) is 0.95: one wrong answer in 20 among the
answered texts, the usual bar for letting a model act alone with a person taking the rest. It sits above
the accuracy most fine-tunes reach on all rows (so the threshold actually sets aside the uncertain tail),
and below 0.99, which the 100 to 200 validation rows of a typical small job cannot tell apart from luck
(at 150 answered rows, 0.99 allows one mistake). A version whose validation rows cannot reach the target
records that, with the best accuracy it could reach, and has no suggested threshold.

The record is stored in the version's metrics under ``abstain`` and in ``abstain.json`` beside its weights;
``POST /v1/classifications`` with ``"abstain": true``, ``tailor predict --abstain`` and
``TextClassifier.predict(..., abstain_threshold=t)`` use it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tailor.errors import UsageError

ABSTAIN_FILE = "abstain.json"
MIN_ANSWERED = 10
REPORT_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def _confidence_and_correct(probs, targets) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top probability, and whether its top label is the target (a class index)."""
    probs = np.asarray(probs, dtype=float)
    targets = np.asarray(targets)
    if probs.ndim != 2 or len(probs) != len(targets):
        raise ValueError(f"probs has shape {probs.shape}, expected ({len(targets)}, number of labels)")
    return probs.max(axis=1), probs.argmax(axis=1) == targets


def coverage_at(probs, targets, threshold: float) -> dict:
    """What answering only rows with top probability >= ``threshold`` gives.

    Args:
        probs: ``(n, K)`` class probabilities.
        targets: ``(n,)`` gold class indices (columns of ``probs``).
        threshold: the abstain threshold, 0..1.

    Returns:
        ``{"threshold", "answered", "coverage", "accuracy"}``: rows answered, their share of all rows and
        their accuracy (None when no row is answered); shares rounded to 4 decimals.
    """
    confidence, correct = _confidence_and_correct(probs, targets)
    answered = confidence >= threshold
    n = int(answered.sum())
    return {"threshold": round(float(threshold), 4), "answered": n,
            "coverage": round(n / len(confidence), 4) if len(confidence) else 0.0,
            "accuracy": round(float(correct[answered].mean()), 4) if n else None}


def coverage_curve(probs, targets, thresholds: Sequence[float] = REPORT_THRESHOLDS) -> list[dict]:
    """:func:`coverage_at` for each of ``thresholds`` (in the order given)."""
    return [coverage_at(probs, targets, t) for t in thresholds]


def suggest_threshold(probs, targets, target_precision: float) -> dict:
    """The smallest threshold whose answered rows reach ``target_precision`` (see the module docstring).

    Args:
        probs: ``(n, K)`` class probabilities of the validation rows.
        targets: ``(n,)`` their gold class indices.
        target_precision: the accuracy the answered rows must reach, 0..1.

    Returns:
        ``{"target_precision", "rows", "accuracy_all", "reachable", "threshold", "answered", "coverage",
        "accuracy", "note"}``. When no threshold reaches the target, ``reachable`` is false, ``threshold``,
        ``answered``, ``coverage`` and ``accuracy`` are None, and ``note`` says the best accuracy any allowed
        threshold gives; otherwise ``note`` is None.
    """
    confidence, correct = _confidence_and_correct(probs, targets)
    n = len(confidence)
    record = {"target_precision": target_precision, "rows": n,
              "accuracy_all": round(float(correct.mean()), 4) if n else None, "reachable": False,
              "threshold": None, "answered": None, "coverage": None, "accuracy": None, "note": None}
    if n == 0:
        record["note"] = "no validation rows to choose a threshold on"
        return record
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    least = min(MIN_ANSWERED, n)
    best = None
    # Walk from the lowest threshold (every row answered) upwards; the first that reaches the target wins.
    for k in range(n, least - 1, -1):  # k = rows answered when the threshold is the k-th highest confidence
        if k < n and confidence[order[k]] == confidence[order[k - 1]]:
            continue  # a threshold cannot separate rows of equal confidence
        accuracy = hits[k - 1] / k
        best = accuracy if best is None else max(best, accuracy)
        if accuracy >= target_precision:
            threshold = math.floor(float(confidence[order[k - 1]]) * 1e6) / 1e6  # rounded down: row k stays in
            return record | {"reachable": True, "threshold": threshold, "answered": k,
                             "coverage": round(k / n, 4), "accuracy": round(float(accuracy), 4)}
    record["note"] = (f"no threshold that keeps at least {least} of {n} validation rows answered reaches "
                      f"{target_precision:.0%} accuracy (best {best:.1%})")
    return record


def labelled_probabilities(classifier, texts: Sequence[str], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``classifier``'s probabilities for labelled rows (a training job's validation split) and the rows'
    class indices, -1 for a label the classifier does not know (a wrong answer for :func:`suggest_threshold`,
    left out by calibration)."""
    probs = classifier.predict_proba(list(texts)) if len(texts) else np.zeros((0, len(classifier.labels)))
    index = {label: i for i, label in enumerate(classifier.labels)}
    return probs, np.array([index.get(label, -1) for label in labels], dtype=int)


def check_threshold(value: float, param: str = "abstain_threshold") -> float:
    """``value`` as a float if it is a threshold in 0..1.

    Raises:
        UsageError: it is not.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UsageError(f"{param}: {value!r} is not a probability between 0 and 1")
    return float(value)


def recorded_threshold(version, how: str = "explicitly") -> float:
    """The abstain threshold a registered version suggested on its validation rows.

    Args:
        version: a :class:`~tailor.registry.entities.ModelVersion`.
        how: how the caller gives a threshold instead, for the message (``with --abstain-threshold``).

    Raises:
        UsageError: the version has no record (trained before Tailor suggested one) or no threshold reached
            its target; the message says to give a threshold explicitly.
    """
    record = (version.metrics or {}).get("abstain")
    if not record:
        raise UsageError(f"{version.ref} records no abstain threshold (it was trained before Tailor suggested "
                         f"one); give a threshold {how}")
    if not record.get("reachable"):
        raise UsageError(f"{version.ref} has no suggested abstain threshold: {record.get('note')}; give a "
                         f"threshold {how}")
    return float(record["threshold"])


def describe_abstain(record: dict) -> str:
    """One line for the training log, e.g. ``abstain threshold 0.62: answers 83.0% of validation rows at
    95.2% accuracy (target 95%)``."""
    if not record["reachable"]:
        return f"abstain threshold: none suggested ({record['note']})"
    return (f"abstain threshold {record['threshold']:.3f}: answers {record['coverage']:.1%} of validation rows at "
            f"{record['accuracy']:.1%} accuracy (target {record['target_precision']:.0%}, "
            f"{record['accuracy_all']:.1%} answering all)")
