"""The evaluation's HTML page and terminal summary."""

from __future__ import annotations

import re

import numpy as np

from tailor import html
from tailor.data.dataset import TextDataset
from tailor.eval.metrics import classification_metrics, majority_baseline
from tailor.eval.report import classes_by_f1, confused_pairs, format_eval_text, headline_rows, render_eval_html
from tailor.eval.run import abstain_on_rows, misclassified_rows

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


LONG = "card_payment_wrong_exchange_rate_applied_abroad_during_holiday"


def test_heat_map_writes_whole_labels_and_counts_in_cells():
    labels = [LONG, "b", "c"]
    metrics = classification_metrics([LONG, LONG, "b", "c", "c", "c"], [LONG, "b", "b", "c", "c", LONG], labels)
    page = render_eval_html(make_evaluation(metrics=metrics))
    assert page.count(f">{LONG}</text>") == 2 + 1  # row label, column label, and its F1 bar
    # the matrix [[1, 1, 0], [0, 1, 0], [1, 0, 2]]: each non-zero count is written in its cell
    counts = re.findall(r'text-anchor="middle" font-size="11" fill="[^"]+">(\d+)</text>', page)
    assert counts == ["1", "1", "1", "1", "2"]


def test_heat_map_of_77_labels_stays_readable():
    labels = [f"{LONG}_{i:02d}" for i in range(77)]
    matrix = [[10 * (i == j) + (j == (i + 1) % 77) for j in range(77)] for i in range(77)]
    svg = html.heatmap(matrix, labels)
    assert all(svg.count(f">{label}</text>") == 2 for label in labels)
    assert len(re.findall(r'<rect x="\d+" y="\d+" width="22" height="22"', svg)) == 77 * 77
    counts = re.findall(r'font-size="9" fill="[^"]+">(\d+)</text>', svg)
    assert counts == ["10", "1"] * 76 + ["1", "10"]  # the last row's 1 is in its first column
    assert svg.startswith('<div class="scroll"><svg width=')


def rows_of(texts, labels) -> TextDataset:
    return TextDataset(texts=texts, labels=labels, lines=list(range(2, len(texts) + 2)))


TEXTS = ["shares soar on record profit", "bank fails stress test", "fed holds rates", "oil slides again",
         "dividend raised by 10%"]
GOLD = ["pos", "neg", "neu", "neg", "pos"]
LABELS3 = ["neg", "neu", "pos"]
# predicted: pos (right), neu 0.5 (wrong), neu (right), pos 0.9 (wrong), neg 0.6 (wrong)
PROBA = np.array([[0.1, 0.1, 0.8], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.05, 0.05, 0.9], [0.6, 0.1, 0.3]])


def test_misclassified_rows_most_confident_first():
    assert misclassified_rows(LABELS3, PROBA, rows_of(TEXTS, GOLD)) == {"count": 3, "examples": [
        {"line": 5, "text": "oil slides again", "label": "neg", "predicted": "pos", "confidence": 0.9},
        {"line": 6, "text": "dividend raised by 10%", "label": "pos", "predicted": "neg", "confidence": 0.6},
        {"line": 3, "text": "bank fails stress test", "label": "neg", "predicted": "neu", "confidence": 0.5}]}
    assert misclassified_rows(LABELS3, PROBA, rows_of(TEXTS, GOLD), limit=1)["examples"][0]["line"] == 5


def test_html_and_text_show_mistakes_and_coverage_against_accuracy():
    rows = rows_of(TEXTS, GOLD)
    suggested = {"target_precision": 0.95, "rows": 40, "accuracy_all": 0.8, "reachable": True, "threshold": 0.75,
                 "answered": 30, "coverage": 0.75, "accuracy": 0.9667, "note": None}
    abstain = abstain_on_rows(LABELS3, PROBA, rows, suggested)
    assert abstain["at_suggested"] == {"threshold": 0.75, "answered": 2, "coverage": 0.4, "accuracy": 0.5}
    assert abstain["curve"][:5] == [
        {"threshold": 0.0, "answered": 5, "coverage": 1.0, "accuracy": 0.4},
        {"threshold": 0.3, "answered": 5, "coverage": 1.0, "accuracy": 0.4},
        {"threshold": 0.4, "answered": 5, "coverage": 1.0, "accuracy": 0.4},
        {"threshold": 0.5, "answered": 5, "coverage": 1.0, "accuracy": 0.4},
        {"threshold": 0.6, "answered": 4, "coverage": 0.8, "accuracy": 0.5}]
    metrics = classification_metrics(GOLD, ["pos", "neu", "neu", "pos", "neg"], LABELS3, PROBA)
    evaluation = make_evaluation(metrics=metrics, misclassified=misclassified_rows(LABELS3, PROBA, rows),
                                 abstain=abstain)
    page = render_eval_html(evaluation)
    assert "<h2>Misclassified examples</h2><p>3 of 5 rows misclassified; most confident mistakes first" in page
    assert ('<tr><td class="num">5</td><td>oil slides again</td><td>neg</td><td>pos</td>'
            '<td class="num">0.9000</td></tr>') in page
    assert "<h2>Coverage against accuracy</h2>" in page
    assert ("Suggested threshold 0.750, chosen on 40 validation rows for 95% accuracy (there it answered 75.0%); "
            "on these rows it answers 40.0% at 50.0% accuracy.") in page
    assert ("<tr><td>0.700</td><td>3</td><td>60.0%</td><td>66.7%</td></tr>"
            "<tr><td>0.750 (suggested)</td><td>2</td><td>40.0%</td><td>50.0%</td></tr>"
            "<tr><td>0.800</td><td>2</td><td>40.0%</td><td>50.0%</td></tr>") in page
    assert "abstaining below 0.750 (suggested): answers 40.0% of rows at 50.0% accuracy" in format_eval_text(
        evaluation).splitlines()


def test_coverage_section_without_a_suggestion():
    rows = rows_of(TEXTS, GOLD)
    unreachable = {"reachable": False, "threshold": None, "note": "no threshold ... (best 80.0%)"}
    page = render_eval_html(make_evaluation(abstain=abstain_on_rows(LABELS3, PROBA, rows, unreachable)))
    assert "This version has no suggested abstain threshold: no threshold ... (best 80.0%)." in page
    assert "(suggested)" not in page
    page = render_eval_html(make_evaluation(abstain=abstain_on_rows(LABELS3, PROBA, rows, None)))
    assert "records no suggested abstain threshold (it was trained before Tailor suggested one)" in page
    assert "Misclassified examples" not in render_eval_html(make_evaluation())  # a job's report has no rows
