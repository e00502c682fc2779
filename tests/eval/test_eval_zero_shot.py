"""The zero-shot baseline in an evaluation's HTML page and terminal summary (beside the majority baseline)."""

from __future__ import annotations

from tailor.eval.metrics import classification_metrics, majority_baseline
from tailor.eval.report import format_eval_text, render_eval_html, zero_shot_columns

LABELS = ["a", "b", "c"]
# Gold a,a,a,b,b,c,c,c; the model: a,a,b,b,c,c,c,a (as in test_eval_report).
Y_TRUE = ["a", "a", "a", "b", "b", "c", "c", "c"]
Y_PRED = ["a", "a", "b", "b", "c", "c", "c", "a"]
ZERO_SHOT = {"label": "zero-shot", "accuracy": 0.5, "macro_f1": 0.45, "weighted_f1": 0.48, "base_model": "minilm-l6",
             "scale": 15.0, "prompts": LABELS}


def evaluation(zero_shot: dict | None) -> dict:
    baseline = majority_baseline(["b", "b", "a"], Y_TRUE, LABELS)
    if zero_shot is not None:
        baseline["zero_shot"] = zero_shot
    return {"model": "tickets:2", "data": "tickets.csv", "metrics": classification_metrics(Y_TRUE, Y_PRED, LABELS),
            "baseline": baseline, "base_model": "minilm-l6"}


def test_zero_shot_columns_pair_each_headline_metric_with_its_delta():
    # the model: accuracy 0.625, macro-F1 0.6111, weighted-F1 0.625
    assert zero_shot_columns(evaluation(ZERO_SHOT)) == [(0.5, 0.125), (0.45, 0.1611), (0.48, 0.145)]
    assert zero_shot_columns(evaluation(None)) == []
    assert zero_shot_columns(evaluation({"label": "zero-shot", "skipped": "why"})) == []


def test_text_summary_adds_a_zero_shot_column_and_says_what_it_is():
    assert format_eval_text(evaluation(ZERO_SHOT)).splitlines()[:7] == [
        "tickets:2 on tickets.csv (8 rows)",
        "metric                   model  baseline    delta  zero-shot    delta",
        "accuracy                0.6250    0.2500  +0.3750     0.5000  +0.1250",
        "macro-F1                0.6111    0.1333  +0.4778     0.4500  +0.1611",
        "weighted-F1             0.6250    0.1000  +0.5250     0.4800  +0.1450",
        "baseline: always 'b'",
        "zero-shot: the nearest label name in minilm-l6 embeddings, no training",
    ]
    skipped = format_eval_text(evaluation({"label": "zero-shot", "skipped": "label '__' has no words"}))
    assert skipped.splitlines()[1] == "metric                   model  baseline    delta"
    assert skipped.splitlines()[5:7] == ["baseline: always 'b'", "zero-shot: skipped (label '__' has no words)"]
    assert "zero-shot" not in format_eval_text(evaluation(None))


def test_html_headline_has_the_zero_shot_column_and_note():
    page = render_eval_html(evaluation(ZERO_SHOT))
    assert "<th>zero-shot baseline</th>" in page
    assert ('<td class="num">0.6111</td><td>0.1333</td><td>+0.4778</td><td>0.4500</td><td>+0.1611</td>' in page)
    assert ("The zero-shot baseline gives each row the label whose name is nearest to the text in minilm-l6 "
            "embeddings: what the label names alone reach, without any training.") in page
    skipped = render_eval_html(evaluation({"label": "zero-shot", "skipped": "a chat model has no embeddings"}))
    assert "<th>zero-shot baseline</th>" not in skipped
    assert "No zero-shot baseline: a chat model has no embeddings." in skipped
    assert "zero-shot" not in render_eval_html(evaluation(None))


def test_zero_shot_on_rows_skips_what_it_cannot_compute():
    from tailor.data.dataset import TextDataset
    from tailor.eval.run import zero_shot_on_rows

    rows = TextDataset(["late fee again", "where is my card"], ["billing", "card-arrival"], [2, 3])
    assert zero_shot_on_rows("minilm-l6", ["billing", "card-arrival"], rows, task="chat") == {
        "label": "zero-shot", "skipped": "a chat model is not a classifier"}
    assert zero_shot_on_rows("minilm-l6", ["card_arrival", "card-arrival"], rows) == {
        "label": "zero-shot",
        "skipped": "labels 'card_arrival' and 'card-arrival' read the same ('card arrival'): rename one, or describe "
                   "them"}
    assert zero_shot_on_rows("no-such-base", ["billing", "card-arrival"], rows)["skipped"].startswith(
        "unknown base model 'no-such-base'")
