"""Comparing two versions' predictions on the same rows: the paired tests with exact numbers, the per-class
table on a hand-made case, the verdicts, the file checks and the terminal table."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.data.dataset import TextDataset
from tailor.errors import DataError
from tailor.eval.compare import (compare_predictions, describe_comparison, file_rows, macro_f1_test,
                                 overall_verdict)
from tailor.stats import mcnemar_exact

LABELS = ["a", "b", "c"]
# 10 rows, worked by hand: A gets rows 0 1 4 5 7 9 right (0.6), B rows 0 1 2 4 5 6 7 8 (0.8); they split on rows
# 2 6 8 (B right) and 9 (A right); row 3 both get wrong with the same label.
TRUTH = list("aaaabbbccc")
A = list("aabbbbacac")
B = list("aaabbbbcca")


@pytest.mark.parametrize("b_only, a_only, p", [
    (9, 1, 0.021484375),   # 2 * (1 + 10) / 2**10
    (1, 9, 0.021484375),
    (3, 1, 0.625),         # 2 * (1 + 4) / 2**4
    (12, 0, 0.00048828125),  # 2 / 2**12
    (5, 5, 1.0),
    (0, 0, 1.0),
])
def test_mcnemar_exact_is_the_two_sided_binomial_on_the_discordant_pairs(b_only, a_only, p):
    assert mcnemar_exact(b_only, a_only) == p


def test_mcnemar_refuses_negative_counts():
    with pytest.raises(ValueError, match="discordant counts must be >= 0, got -1 and 2"):
        mcnemar_exact(-1, 2)


def test_the_hand_made_case_scores_tests_and_per_class_table():
    report = compare_predictions(TRUTH, A, B, LABELS)
    interval = report["macro_f1_test"]["interval"]
    assert report == {
        "rows": 10, "a": {"accuracy": 0.6, "macro_f1": 0.6238}, "b": {"accuracy": 0.8, "macro_f1": 0.8024},
        "difference": {"accuracy": 0.2, "macro_f1": 0.1786},
        "disagreements": {"rows": 4, "b_right_a_wrong": 3, "a_right_b_wrong": 1, "both_wrong": 0},
        "accuracy_test": {"test": "mcnemar_exact", "p_value": 0.625, "verdict": "no_significant_difference"},
        "macro_f1_test": {"test": "paired_bootstrap", "level": 0.95, "resamples": 1000, "interval": interval,
                          "verdict": "no_significant_difference"},
        "verdict": "no_significant_difference",
        "per_class": [
            {"label": "a", "support": 4, "a": {"precision": 0.5, "recall": 0.5, "f1": 0.5},
             "b": {"precision": 0.75, "recall": 0.75, "f1": 0.75}, "f1_difference": 0.25},
            {"label": "b", "support": 3, "a": {"precision": 0.5, "recall": 0.6667, "f1": 0.5714},
             "b": {"precision": 0.75, "recall": 1.0, "f1": 0.8571}, "f1_difference": 0.2857},
            {"label": "c", "support": 3, "a": {"precision": 1.0, "recall": 0.6667, "f1": 0.8},
             "b": {"precision": 1.0, "recall": 0.6667, "f1": 0.8}, "f1_difference": 0.0},
        ]}
    assert interval[0] < 0 < interval[1]


def test_the_interval_is_the_percentile_of_per_resample_differences_scored_by_scikit_learn():
    from sklearn.metrics import f1_score

    rows = np.random.default_rng(0).integers(0, 10, size=(200, 10))
    truth, a, b = (np.array(x) for x in (TRUTH, A, B))
    differences = [f1_score(truth[r], b[r], average="macro") - f1_score(truth[r], a[r], average="macro")
                   for r in rows]
    low, high = np.percentile(differences, [2.5, 97.5])
    assert macro_f1_test(TRUTH, A, B, resamples=200)["interval"] == [round(low, 4), round(high, 4)]
    assert macro_f1_test(TRUTH, A, A)["interval"] == [0.0, 0.0]


def _one_better(n_rows: int, wrong: int) -> tuple[list[str], list[str], list[str]]:
    """``n_rows`` rows cycling over LABELS; the better predictor is always right, the worse wrong on the first
    ``wrong`` rows (it says the next label)."""
    truth = [LABELS[i % 3] for i in range(n_rows)]
    worse = [LABELS[(i + 1) % 3] if i < wrong else y for i, y in enumerate(truth)]
    return truth, worse, list(truth)


def test_a_clearly_better_candidate_gets_b_better_from_both_tests_and_the_reverse_a_better():
    truth, worse, better = _one_better(30, 12)
    found = compare_predictions(truth, worse, better, LABELS)
    assert found["accuracy_test"] == {"test": "mcnemar_exact", "p_value": 0.00048828125, "verdict": "b_better"}
    assert found["macro_f1_test"]["verdict"] == "b_better" and found["macro_f1_test"]["interval"][0] > 0
    assert found["verdict"] == "b_better" and found["difference"]["accuracy"] == 0.4
    assert found["disagreements"] == {"rows": 12, "b_right_a_wrong": 12, "a_right_b_wrong": 0, "both_wrong": 0}
    reverse = compare_predictions(truth, better, worse, LABELS)
    assert (reverse["accuracy_test"]["verdict"], reverse["macro_f1_test"]["verdict"], reverse["verdict"]) == (
        "a_better", "a_better", "a_better")
    assert reverse["difference"]["accuracy"] == -0.4


def test_a_few_mistakes_are_not_significant():
    truth, worse, better = _one_better(30, 2)
    found = compare_predictions(truth, worse, better, LABELS)
    assert found["accuracy_test"]["p_value"] == 0.5 and found["verdict"] == "no_significant_difference"


@pytest.mark.parametrize("accuracy, macro_f1, verdict", [
    ("b_better", "b_better", "b_better"),
    ("b_better", "no_significant_difference", "b_better"),
    ("no_significant_difference", "a_better", "a_better"),
    ("b_better", "a_better", "no_significant_difference"),  # the tests contradict each other
    ("no_significant_difference", "no_significant_difference", "no_significant_difference"),
])
def test_the_section_verdict_combines_the_two_tests(accuracy, macro_f1, verdict):
    assert overall_verdict(accuracy, macro_f1) == verdict


def test_no_rows_give_the_same_shape_empty():
    assert compare_predictions([], [], [], LABELS, resamples=50) == {
        "rows": 0, "a": {"accuracy": None, "macro_f1": None}, "b": {"accuracy": None, "macro_f1": None},
        "difference": {"accuracy": None, "macro_f1": None},
        "disagreements": {"rows": 0, "b_right_a_wrong": 0, "a_right_b_wrong": 0, "both_wrong": 0},
        "accuracy_test": {"test": "mcnemar_exact", "p_value": None, "verdict": "no_significant_difference"},
        "macro_f1_test": {"test": "paired_bootstrap", "level": 0.95, "resamples": 50, "interval": None,
                          "verdict": "no_significant_difference"},
        "verdict": "no_significant_difference", "per_class": []}


def test_file_rows_name_unknown_labels_with_their_lines_and_skip_empty_rows():
    ds = TextDataset(texts=["good", "bad", "meh", "", "awful", "so-so", "fine"],
                     labels=["pos", "neg", "maybe", "pos", "spam", "maybe", ""], lines=[2, 3, 4, 5, 6, 7, 8])
    with pytest.raises(DataError) as caught:
        file_rows(ds, ["neg", "pos"], "test.csv")
    assert str(caught.value) == ("test.csv: 3 rows with labels the versions do not know: 'maybe' (lines 4, 7), "
                                 "'spam' (line 6); their labels: neg, pos")
    rows, skipped = file_rows(ds.subset([0, 1, 3, 6]), ["neg", "pos"], "test.csv")
    assert (rows.texts, rows.labels, rows.lines, skipped) == (["good", "bad"], ["pos", "neg"], [2, 3], 2)
    with pytest.raises(DataError, match="^test.csv: no rows with both a text and a label to compare on$"):
        file_rows(ds.subset([3, 6]), ["neg", "pos"], "test.csv")


def test_the_terminal_table():
    section = {"source": "file", "data": "test.csv", "skipped_rows": 1} | compare_predictions(TRUTH, A, B, LABELS)
    empty = {"source": "feedback", "data": None, "skipped_rows": 0} | compare_predictions([], [], [], LABELS)
    report = {"object": "model.comparison", "a": {"ref": "s@prod", "model": "s:1", "runtime": "onnx-int8"},
              "b": {"ref": "s:2", "model": "s:2", "runtime": "onnx-fp32"}, "labels": LABELS, "file": section,
              "feedback": empty}
    low, high = section["macro_f1_test"]["interval"]
    assert describe_comparison(report).splitlines() == [
        "A s@prod (s:1, onnx-int8)  vs  B s:2 (s:2, onnx-fp32)",
        "",
        "on test.csv: 10 rows (1 skipped)",
        "                 A       B    B - A",
        "accuracy    0.6000  0.8000  +0.2000   McNemar exact p = 0.625",
        f"macro-F1    0.6238  0.8024  +0.1786   95% interval [{low:+.4f}, {high:+.4f}]",
        "disagree on 4 rows: B right/A wrong 3, A right/B wrong 1, both wrong 0",
        "verdict: no_significant_difference",
        "  label                        n     P A     R A    F1 A     P B     R B    F1 B      dF1",
        "  a                            4  0.5000  0.5000  0.5000  0.7500  0.7500  0.7500  +0.2500",
        "  b                            3  0.5000  0.6667  0.5714  0.7500  1.0000  0.8571  +0.2857",
        "  c                            3  1.0000  0.6667  0.8000  1.0000  0.6667  0.8000  +0.0000",
        "",
        "on labelled feedback: 0 rows",
    ]
