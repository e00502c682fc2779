"""Metrics checked against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.eval.metrics import classification_metrics, compare, expected_calibration_error, majority_baseline

# Gold rows a,a,a,b,b,c,c,c; the model gets a,a,b | b,c | c,c,a.
Y_TRUE = ["a", "a", "a", "b", "b", "c", "c", "c"]
Y_PRED = ["a", "a", "b", "b", "c", "c", "c", "a"]
LABELS = ["a", "b", "c"]

# Binary case: rows 1 and 2 share the 0.9 bin (one right, one wrong); the others sit alone in their bins.
BIN_LABELS = ["neg", "pos"]
BIN_TRUE = ["neg", "neg", "pos", "pos", "pos"]
BIN_PROBA = np.array([[0.9, 0.1], [0.1, 0.9], [0.3, 0.7], [0.45, 0.55], [0.65, 0.35]])
BIN_PRED = ["neg", "pos", "pos", "pos", "neg"]


def test_multiclass_metrics_match_hand_computation():
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)

    # a: 2 of 3 predicted-a right, 2 of 3 gold-a found; b: 1 of 2 both ways; c: like a.
    assert metrics == {
        "n": 8,
        "accuracy": 0.625,  # 5 / 8
        "macro_f1": 0.6111,  # (2/3 + 1/2 + 2/3) / 3 = 11/18
        "weighted_f1": 0.625,  # (3 * 2/3 + 2 * 1/2 + 3 * 2/3) / 8
        "per_class": {
            "a": {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "support": 3},
            "b": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
            "c": {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "support": 3},
        },
        "confusion_matrix": {"labels": ["a", "b", "c"], "matrix": [[2, 1, 0], [0, 1, 1], [1, 0, 2]]},
        "roc_auc": None,
        "ece": None,
        "log_loss": None,
    }


def test_binary_metrics_with_probabilities():
    metrics = classification_metrics(BIN_TRUE, BIN_PRED, BIN_LABELS, BIN_PROBA)

    assert metrics["accuracy"] == 0.6
    # P(pos) of the 3 positives (.7, .55, .35) beats 0.1 but not 0.9: 3 of 6 pairs ordered right.
    assert metrics["roc_auc"] == 0.5
    # bins: {.9 right, .9 wrong} gap .4 x2; {.7 right} .3; {.55 right} .45; {.65 wrong} .65 -> 2.2 / 5
    assert metrics["ece"] == 0.44
    # -(ln .9 + ln .1 + ln .7 + ln .55 + ln .35) / 5
    assert metrics["log_loss"] == 0.8825
    assert metrics["confusion_matrix"]["matrix"] == [[1, 1], [1, 2]]


def test_ece_is_zero_when_confidence_matches_accuracy_and_uses_right_closed_bins():
    # Two rows at confidence 0.5 (one right) are perfectly calibrated; 1.0 and right is too.
    proba = np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])
    assert expected_calibration_error(["neg", "pos", "pos"], proba, BIN_LABELS) == 0.0
    # 0.6 is the edge 9/15 and joins 0.55 in bin (8/15, 9/15]: mean conf .575, accuracy .5.
    proba = np.array([[0.6, 0.4], [0.45, 0.55]])
    assert expected_calibration_error(["neg", "neg"], proba, BIN_LABELS) == pytest.approx(0.075)


def test_roc_auc_is_none_for_multiclass_and_for_a_single_gold_class():
    proba = np.full((8, 3), 1 / 3)
    assert classification_metrics(Y_TRUE, Y_PRED, LABELS, proba)["roc_auc"] is None
    one_class = classification_metrics(["pos", "pos"], ["pos", "neg"], BIN_LABELS, np.array([[0.2, 0.8], [0.7, 0.3]]))
    assert one_class["roc_auc"] is None
    assert one_class["ece"] == 0.45  # bins {.8 right} gap .2 and {.7 wrong} gap .7 -> .9 / 2


def test_labels_outside_the_label_set_are_named():
    with pytest.raises(ValueError) as error:
        classification_metrics(["a", "x"], ["y", "a"], ["a", "b"])
    assert str(error.value) == ("labels not in the model's label set: 'x', 'y'; "
                                "map them to known labels before evaluating")


@pytest.mark.parametrize("y_true, y_pred, proba, message", [
    ([], [], None, "no rows to evaluate"),
    (["a"], ["a", "b"], None, "1 gold labels but 2 predictions"),
    (["a"], ["a"], np.ones((1, 3)), "proba has shape (1, 3), expected (1, 2)"),
])
def test_malformed_inputs_are_rejected(y_true, y_pred, proba, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        classification_metrics(y_true, y_pred, ["a", "b"], proba)


def test_majority_baseline_breaks_ties_by_sorted_label():
    # a and b both appear twice in training; a wins. Predicting a everywhere on a,b,b,c:
    # a: P 1/4, R 1 -> F1 0.4; b, c: 0. macro 0.4/3, weighted 0.4 * 1/4.
    baseline = majority_baseline(["b", "a", "b", "a", "c"], ["a", "b", "b", "c"], LABELS)
    assert baseline == {"label": "a", "accuracy": 0.25, "macro_f1": 0.1333, "weighted_f1": 0.1}


def test_compare_gives_rounded_deltas():
    metrics = {"accuracy": 0.625, "macro_f1": 0.6111, "weighted_f1": 0.625, "n": 8}
    reference = {"label": "a", "accuracy": 0.25, "macro_f1": 0.1333, "weighted_f1": 0.1}
    assert compare(metrics, reference) == {"accuracy": 0.375, "macro_f1": 0.4778, "weighted_f1": 0.525}
    assert compare(metrics, reference, keys=("accuracy",)) == {"accuracy": 0.375}
