"""Slice arithmetic on a constructed case, every number worked out by hand, and the automatic slice finder."""

import pytest

from tailor.errors import UsageError
from tailor.eval.slice_finder import content_words, find_worst_slices, length_bands
from tailor.eval.slices import positive_class, score_slices, wilson_interval

# Region a: 4 rows, 3 right; b: 5 rows, 2 right; c: 2 rows, both right (too small with min_rows=3).
Y_TRUE = ["yes", "yes", "no", "no"] + ["yes", "yes", "no", "no", "no"] + ["no", "yes"]
Y_PRED = ["yes", "no", "no", "no"] + ["no", "no", "yes", "no", "no"] + ["no", "yes"]
REGION = ["a"] * 4 + ["b"] * 5 + ["c"] * 2


def test_wilson_interval_by_hand():
    # 3/4: centre (0.75 + z²/8) / (1 + z²/4) = 0.627527, half-width 0.326886 (z = 1.959964)
    assert [round(x, 4) for x in wilson_interval(3, 4)] == [0.3006, 0.9544]
    assert [round(x, 4) for x in wilson_interval(2, 5)] == [0.1176, 0.7693]
    assert wilson_interval(2, 2)[1] == 1.0
    with pytest.raises(ValueError, match="0 <= correct <= n and n > 0, got 3/2"):
        wilson_interval(3, 2)


def test_every_slice_number_of_the_constructed_case():
    report = score_slices(Y_TRUE, Y_PRED, ["no", "yes"], REGION, column="region", min_rows=3)
    assert report == {
        "slice_column": "region", "metric": "accuracy", "min_rows": 3,
        # 5 "yes" against 6 "no" in the test labels: the minority class is the positive one
        "positive_label": "yes", "positive_label_from": "minority",
        "largest_gap": 0.35,  # 0.75 (a) - 0.40 (b); c is too small to count
        "equal_opportunity": 0.5,  # true positive rate 1/2 in a, 0/2 in b
        "slices": [
            # b: F1(yes) = 0 (0 right of 1 predicted, 2 actual); F1(no) = 2*2/(4+3) = 0.5714; macro 0.2857
            {"column": "region", "value": "b", "n": 5, "accuracy": 0.4, "accuracy_ci": [0.1176, 0.7693],
             "macro_f1": 0.2857, "positive_rate": 0.2, "true_positive_rate": 0.0, "gap": 0.35, "too_small": False},
            # a: F1(yes) = 2*1/(1+2) = 0.6667; F1(no) = 2*2/(3+2) = 0.8; macro 0.7333
            {"column": "region", "value": "a", "n": 4, "accuracy": 0.75, "accuracy_ci": [0.3006, 0.9544],
             "macro_f1": 0.7333, "positive_rate": 0.25, "true_positive_rate": 0.5, "gap": 0.0, "too_small": False},
            {"column": "region", "value": "c", "n": 2, "accuracy": 1.0, "accuracy_ci": [0.3424, 1.0],
             "macro_f1": 1.0, "positive_rate": 0.5, "true_positive_rate": 1.0, "gap": None, "too_small": True},
        ]}


def test_a_given_positive_label_changes_the_rates():
    report = score_slices(Y_TRUE, Y_PRED, ["no", "yes"], REGION, column="region", positive_label="no", min_rows=3)
    by_value = {s["value"]: s for s in report["slices"]}
    assert report["positive_label_from"] == "given"
    assert (by_value["a"]["positive_rate"], by_value["a"]["true_positive_rate"]) == (0.75, 1.0)  # 3/4, 2/2
    assert (by_value["b"]["positive_rate"], by_value["b"]["true_positive_rate"]) == (0.8, 0.6667)  # 4/5, 2/3
    assert report["equal_opportunity"] == 0.3333


def test_small_slices_are_left_out_and_fewer_than_two_judgeable_give_no_gap():
    report = score_slices(Y_TRUE, Y_PRED, ["no", "yes"], REGION, column="region")  # default minimum: 30 rows
    assert [s["too_small"] for s in report["slices"]] == [True, True, True]
    assert (report["largest_gap"], report["equal_opportunity"]) == (None, None)
    assert [s["gap"] for s in report["slices"]] == [None, None, None]


def test_multiclass_has_no_positive_class_and_empty_values_are_one_slice():
    report = score_slices(["a", "b", "c"], ["a", "b", "b"], ["a", "b", "c"], ["x", "", " "], column="site",
                          min_rows=1)
    assert (report["positive_label"], report["equal_opportunity"]) == (None, None)
    assert [(s["value"], s["n"], s["accuracy"], s["positive_rate"]) for s in report["slices"]] == [
        ("(empty)", 2, 0.5, None), ("x", 1, 1.0, None)]
    # (empty): F1(b) = 2*1/(2+1) = 0.6667, F1(c) = 0; macro 0.3333
    assert report["slices"][0]["macro_f1"] == 0.3333
    assert report["largest_gap"] == 0.5


def test_positive_label_errors():
    with pytest.raises(UsageError, match=r"^positive label 'maybe' is not a label of the model \(no, yes\)"):
        positive_class(["no"], ["no", "yes"], "maybe")
    with pytest.raises(UsageError, match="^a positive label applies to a binary task; this model has 3 labels"):
        positive_class(["a"], ["a", "b", "c"], "a")
    assert positive_class(["no", "yes"], ["no", "yes"]) == ("yes", "minority")  # a tie: the later label


def test_length_bands_are_quartiles_named_by_their_bounds():
    texts = ["x" * n for n in (1, 2, 3, 4, 5, 6, 7, 8)]
    # sorted lengths 1..8: cuts at positions 7*1//4=1, 7*2//4=3, 7*3//4=5 -> lengths 2, 4, 6
    assert length_bands(texts) == ["<= 2 chars", "<= 2 chars", "3-4 chars", "3-4 chars", "5-6 chars", "5-6 chars",
                                   "> 6 chars", "> 6 chars"]


def test_content_words_skip_stop_words_and_pair_chinese_characters():
    assert content_words("The loan was REFUSED by the bank, 2 times") == {"loan", "refused", "bank", "times"}
    assert content_words("贷款被拒") == {"贷款", "款被", "被拒"}


def test_the_finder_reports_the_slice_the_model_fails():
    texts = [f"refund request number {i}" for i in range(40)] + [f"great service today {i}" for i in range(60)]
    y_true = ["neg"] * 40 + ["pos"] * 60
    y_pred = ["pos"] * 20 + ["neg"] * 20 + ["pos"] * 60  # half the refund texts wrong, every other right
    worst = find_worst_slices(texts, y_true, y_pred, "neg", min_rows=30)
    # the refund texts are the 23-24 character band, and "refund", "request" and "number" each mark them: accuracy
    # 20/40 against 60/60 for the rest; the words of the other texts mark no worse rows and are not listed
    assert [(s["column"], s["value"], s["n"], s["accuracy"], s["rest_accuracy"], s["gap"], s["significant"])
            for s in worst] == [("length", "23-24 chars", 40, 0.5, 1.0, 0.5, True)] + [
                ("word", f"contains {w}", 40, 0.5, 1.0, 0.5, True) for w in ("number", "refund", "request")]
    assert worst[0]["accuracy_ci"] == [0.352, 0.648]  # Wilson: 0.5 ± 1.96·sqrt(1/160 + z²/6400) / (1 + z²/40)
