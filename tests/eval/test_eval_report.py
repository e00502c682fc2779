"""The evaluation's HTML page and terminal summary."""

from __future__ import annotations

import numpy as np

from tailor.eval.metrics import classification_metrics, majority_baseline
from tailor.eval.report import classes_by_f1, confused_pairs, format_eval_text, headline_rows, render_eval_html

LABELS = ["<b>bold</b>", "b", "c"]
BOLD = LABELS[0]
# Gold: bold x3, b x2, c x3; predicted: bold,bold,b | b,c | c,c,bold.
Y_TRUE = [BOLD, BOLD, BOLD, "b", "b", "c", "c", "c"]
Y_PRED = [BOLD, BOLD, "b", "b", "c", "c", "c", BOLD]


def make_evaluation(**overrides) -> dict:
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    evaluation = {
        "model": "credit-risk:3",
        "data": "loans.csv",
        "metrics": metrics,
        # training labels b,b,bold: the baseline always predicts b (accuracy 2/8).
        "baseline": majority_baseline(["b", "b", BOLD], Y_TRUE, LABELS),
        "base_model": "minilm-l6",
        "created_at": "2025-01-01T00:00:00Z",
    }
    return {**evaluation, **overrides}


def binary_evaluation() -> dict:
    labels = ["neg", "pos"]
    y_true = ["neg", "neg", "pos", "pos"]
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    y_pred = ["neg", "pos", "pos", "neg"]
    return make_evaluation(metrics=classification_metrics(y_true, y_pred, labels, proba),
                           baseline=majority_baseline(["pos"], y_true, labels))


def test_headline_rows_pair_each_metric_with_baseline_and_delta():
    # baseline b: accuracy 2/8; F1 b = 2*(2/8*1)/(2/8+1) = 0.4 -> macro 0.4/3, weighted 0.4*2/8.
    assert headline_rows(make_evaluation()) == [
        ("accuracy", 0.625, 0.25, 0.375),
        ("macro-F1", 0.6111, 0.1333, 0.4778),
        ("weighted-F1", 0.625, 0.1, 0.525),
    ]


def test_headline_rows_add_probability_metrics_without_baseline():
    names = [(name, base) for name, _, base, _ in headline_rows(binary_evaluation())]
    assert names == [("accuracy", 0.5), ("macro-F1", 0.3333), ("weighted-F1", 0.3333),
                     ("ROC-AUC", None), ("ECE (lower is better)", None), ("log loss", None)]


def test_confused_pairs_are_off_diagonal_cells_largest_first():
    metrics = make_evaluation()["metrics"]
    assert confused_pairs(metrics) == [(BOLD, "b", 1, 0.3333), ("b", "c", 1, 0.5), ("c", BOLD, 1, 0.3333)]
    metrics["confusion_matrix"]["matrix"] = [[5, 0, 1], [3, 2, 0], [0, 4, 7]]
    assert confused_pairs(metrics, top=2) == [("c", "b", 4, 0.3636), ("b", BOLD, 3, 0.6)]


def test_classes_by_f1_puts_worst_first_and_keeps_label_order_on_ties():
    assert [label for label, _ in classes_by_f1(make_evaluation()["metrics"])] == ["b", BOLD, "c"]


def test_html_has_every_section_the_heat_map_and_escapes_labels():
    page = render_eval_html(make_evaluation())

    for heading in ("Headline", "Confusion matrix", "Per-class F1", "Per-class metrics", "Most confused pairs"):
        assert f"<h2>{heading}</h2>" in page
    assert "<title>Evaluation of credit-risk:3</title>" in page
    assert "data loans.csv · 8 rows · base model minilm-l6 · evaluated 2025-01-01T00:00:00Z" in page
    assert page.count("<svg") == 2  # heat map and F1 bars
    assert "<title>true &lt;b&gt;bold&lt;/b&gt;, predicted b: 1</title>" in page
    assert "<b>" not in page
    assert '<td class="num">0.6250</td><td>0.2500</td><td>+0.3750</td>' in page
    assert "<td>c</td><td>&lt;b&gt;bold&lt;/b&gt;</td><td class=\"num\">1</td>" in page


def test_html_without_errors_says_so():
    metrics = classification_metrics(["a", "b"], ["a", "b"], ["a", "b"])
    page = render_eval_html(make_evaluation(metrics=metrics, created_at=None))
    assert '<p class="ok">No row was misclassified.</p>' in page
    assert "evaluated" not in page


def test_text_summary_lines():
    assert format_eval_text(make_evaluation()).splitlines() == [
        "credit-risk:3 on loans.csv (8 rows)",
        "metric                   model  baseline    delta",
        "accuracy                0.6250    0.2500  +0.3750",
        "macro-F1                0.6111    0.1333  +0.4778",
        "weighted-F1             0.6250    0.1000  +0.5250",
        "baseline: always 'b'",
        "worst classes by F1:",
        "  b                              F1 0.5000  P 0.5000  R 0.5000  n=2",
        "  <b>bold</b>                    F1 0.6667  P 0.6667  R 0.6667  n=3",
        "  c                              F1 0.6667  P 0.6667  R 0.6667  n=3",
    ]


def test_text_summary_shows_probability_metrics_and_at_most_five_classes():
    labels = [f"class{i}" for i in range(8)]
    many = make_evaluation(metrics=classification_metrics(labels, labels[1:] + labels[:1], labels),
                           baseline=majority_baseline(labels, labels, labels))
    lines = format_eval_text(many).splitlines()
    assert len(lines) == 12 and lines[-1].startswith("  class4 ")
    binary = format_eval_text(binary_evaluation()).splitlines()
    # P(pos) .7 and .4 beat .1, not .8; bins .9 right, .8 wrong, .7 right, .6 wrong -> (.1+.8+.3+.6)/4
    assert binary[5:8] == ["ROC-AUC                 0.5000",
                           "ECE (lower is better)   0.4500",
                           "log loss                0.7469"]
    assert len(binary) <= 20
