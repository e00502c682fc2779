"""Abstain thresholds: the smallest threshold whose answered rows reach the target, on constructed probabilities."""

from types import SimpleNamespace

import numpy as np
import pytest

from tailor.errors import UsageError
from tailor.eval.abstain import (check_threshold, coverage_at, coverage_curve, describe_abstain, recorded_threshold,
                                 suggest_threshold)
from tailor.models.classifier import Prediction, predictions_from_probs


def binary(rows: list[tuple[float, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities whose top label is class 0 with probability p; the target is 0 when correct."""
    probs = np.array([[p, 1 - p] for p, _ in rows])
    return probs, np.array([0 if correct else 1 for _, correct in rows])


# 12 validation rows, most confident first: 8 right; the 10 most confident hold 7 right.
ROWS = [(0.99, True), (0.95, True), (0.9, True), (0.85, True), (0.8, False), (0.75, True), (0.7, True),
        (0.7, False), (0.65, True), (0.6, False), (0.55, False), (0.52, True)]


def test_smallest_threshold_that_reaches_the_target():
    probs, targets = binary(ROWS)
    assert suggest_threshold(probs, targets, 0.7) == {
        "target_precision": 0.7, "rows": 12, "accuracy_all": 0.6667, "reachable": True, "threshold": 0.6,
        "answered": 10, "coverage": 0.8333, "accuracy": 0.7, "note": None}
    # answering every row already reaches 0.6: the threshold is the lowest confidence seen
    record = suggest_threshold(probs, targets, 0.6)
    assert (record["threshold"], record["answered"], record["coverage"], record["accuracy"]) == (0.52, 12, 1.0, 0.6667)


def test_an_unreachable_target_is_recorded_with_the_best_accuracy():
    probs, targets = binary(ROWS)  # the 4 most confident rows are all right, but fewer than 10 rows never count
    assert suggest_threshold(probs, targets, 0.75) == {
        "target_precision": 0.75, "rows": 12, "accuracy_all": 0.6667, "reachable": False, "threshold": None,
        "answered": None, "coverage": None, "accuracy": None,
        "note": "no threshold that keeps at least 10 of 12 validation rows answered reaches 75% accuracy "
                "(best 70.0%)"}
    assert describe_abstain(suggest_threshold(probs, targets, 0.75)).startswith(
        "abstain threshold: none suggested (no threshold that keeps at least 10 of 12")
    assert suggest_threshold(np.zeros((0, 2)), np.zeros(0, dtype=int), 0.9)["note"] == (
        "no validation rows to choose a threshold on")


def test_rows_of_equal_confidence_are_answered_together():
    # 10 right at 0.9; at 0.6 one right then three wrong. A threshold of 0.6 answers all four 0.6 rows (11 of 14
    # right), so it cannot claim the 11-of-11 that the right 0.6 row alone would give.
    rows = [(0.9, True)] * 10 + [(0.6, True), (0.6, False), (0.6, False), (0.6, False)]
    probs, targets = binary(rows)
    record = suggest_threshold(probs, targets, 0.9)
    assert (record["threshold"], record["answered"], record["coverage"], record["accuracy"]) == (0.9, 10, 0.7143, 1.0)
    assert describe_abstain(record) == ("abstain threshold 0.900: answers 71.4% of validation rows at 100.0% "
                                        "accuracy (target 90%, 78.6% answering all)")


def test_small_splits_must_answer_every_row():
    probs, targets = binary([(0.9, True), (0.8, True), (0.7, True), (0.6, False)])
    assert suggest_threshold(probs, targets, 0.7)["threshold"] == 0.6  # 3 of 4 right answering all of them
    assert not suggest_threshold(probs, targets, 0.8)["reachable"]


def test_coverage_curve():
    probs, targets = binary(ROWS)
    assert coverage_curve(probs, targets, (0.0, 0.7, 0.9, 0.995)) == [
        {"threshold": 0.0, "answered": 12, "coverage": 1.0, "accuracy": 0.6667},
        {"threshold": 0.7, "answered": 8, "coverage": 0.6667, "accuracy": 0.75},
        {"threshold": 0.9, "answered": 3, "coverage": 0.25, "accuracy": 1.0},
        {"threshold": 0.995, "answered": 0, "coverage": 0.0, "accuracy": None},
    ]
    assert coverage_at(probs, targets, 0.6) == {"threshold": 0.6, "answered": 10, "coverage": 0.8333, "accuracy": 0.7}


def test_predictions_abstain_below_the_threshold():
    probs = np.array([[0.315, 0.2, 0.485], [0.7, 0.2, 0.1]])
    labels = ["balance", "due", "transfer"]
    assert predictions_from_probs(labels, probs) == [
        Prediction("transfer", 0.485, {"balance": 0.315, "due": 0.2, "transfer": 0.485}),
        Prediction("balance", 0.7, {"balance": 0.7, "due": 0.2, "transfer": 0.1})]
    abstained, answered = predictions_from_probs(labels, probs, abstain_threshold=0.55)
    assert abstained == Prediction(None, 0.485, {"balance": 0.315, "due": 0.2, "transfer": 0.485}, True,
                                   "top probability 0.485 is below the abstain threshold 0.550")
    assert answered == Prediction("balance", 0.7, {"balance": 0.7, "due": 0.2, "transfer": 0.1}, False, None)
    close = predictions_from_probs(labels, np.array([[0.5499, 0.45, 0.0001]]), abstain_threshold=0.55)[0]
    assert close.reason == "top probability 0.549900 is below the abstain threshold 0.550000"


def test_thresholds_are_checked_and_read_from_the_version():
    assert check_threshold(0.6) == 0.6 and check_threshold(1) == 1.0
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(UsageError, match="is not a probability between 0 and 1"):
            check_threshold(bad, "--abstain-threshold")
    version = SimpleNamespace(ref="tweets:2", metrics={"abstain": {"reachable": True, "threshold": 0.62}})
    assert recorded_threshold(version) == 0.62
    version.metrics = {"abstain": {"reachable": False, "note": "no threshold ... (best 80.0%)"}}
    with pytest.raises(UsageError) as error:
        recorded_threshold(version)
    assert str(error.value) == ("tweets:2 has no suggested abstain threshold: no threshold ... (best 80.0%); give a "
                                "threshold explicitly")
    version.metrics = {}
    with pytest.raises(UsageError) as error:
        recorded_threshold(version)
    assert str(error.value) == ("tweets:2 records no abstain threshold (it was trained before Tailor suggested one); "
                                "give a threshold explicitly")
