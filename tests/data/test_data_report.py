"""The data report: its exact shape and values, warnings, the HTML page and the terminal summary."""

import json
from dataclasses import asdict
from importlib.resources import files

import pytest

from tailor.data.clean import clean_dataset
from tailor.data.dataset import SourceInfo, TextDataset
from tailor.data.report import (build_data_report, format_data_report_text, length_stats,
                                render_data_report_html)

SCRIPT = "<script>alert('x')</script> hello"


def dataset(rows: list[tuple[str, str]], name: str = "train.csv") -> TextDataset:
    source = SourceInfo(path=name, format="csv", encoding="utf-8", sha256="ab" * 32, text_col="text",
                        label_col="label", rows_read=len(rows))
    return TextDataset(texts=[t for t, _ in rows], labels=[label for _, label in rows],
                       lines=list(range(2, len(rows) + 2)), source=source)


class WhitespaceTokenizer:
    """Stands in for a Hugging Face tokenizer: one id per word plus two special tokens; records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts, *, add_special_tokens, truncation):
        self.calls.append((len(texts), add_special_tokens, truncation))
        return {"input_ids": [[101] + [7] * len(t.split()) + [102] for t in texts]}


RAW = dataset(
    [(f"hello there friend {i}", "greet") for i in range(10)]
    + [(SCRIPT, "greet"), ("goodbye see you soon", "bye"), ("bye for now, mail me at ann@example.com", "bye"),
       ("see you later", "bye"), ("what is the weather", "rare"), ("", "greet"), (SCRIPT, "greet")]
)
EVAL = dataset([("See you later!", "bye"), ("something else", "greet")], name="eval.csv")


@pytest.fixture(scope="module")
def report():
    cleaned = clean_dataset(RAW, max_chars=100, eval_ds=EVAL)
    return build_data_report(RAW, cleaned, eval_ds=EVAL, tokenizer=WhitespaceTokenizer(), max_length=5,
                             find_issues=False)


def test_top_level_keys_and_source(report):
    assert list(report) == ["source", "rows", "labels", "small_classes", "lengths", "label_issues", "pii",
                            "redacted", "leakage", "warnings"]
    assert report["redacted"] is None  # cleaned without redact_pii
    assert report["source"] == {**asdict(RAW.source), "eval_source": asdict(EVAL.source)}
    assert json.loads(json.dumps(report)) == report


def test_rows_labels_and_small_classes(report):
    assert report["rows"]["read"] == 17
    assert report["rows"]["kept"] == 14
    assert report["rows"]["removed"] == {"empty": 1, "too_long": 0, "duplicate_exact": 1, "duplicate_normalized": 0,
                                         "conflicting_labels": 0, "leaked_into_eval": 1}
    assert report["rows"]["examples"]["empty"] == [{"line": 17, "text": "", "label": "greet"}]
    assert report["labels"] == {"counts": {"greet": 11, "bye": 2, "rare": 1}, "n_classes": 3,
                                "imbalance_ratio": 11.0, "majority_label": "greet", "majority_share": 0.7857}
    assert report["small_classes"] == [
        {"label": "rare", "count": 1, "problem": "cannot be split (fewer than 3 rows)"},
        {"label": "bye", "count": 2, "problem": "cannot be split (fewer than 3 rows)"},
    ]


def test_lengths_pii_and_leakage(report):
    assert report["lengths"]["chars"]["max"] == len("bye for now, mail me at ann@example.com")
    assert report["lengths"]["tokens"] == {**length_stats([6] * 10 + [4, 6, 9, 6]), "over_max_length": 13,
                                           "max_length": 5}
    assert report["label_issues"] is None
    assert report["pii"] == {"email": 1, "phone": 0, "card_number": 0, "id_number": 0, "iban": 0, "rows_with_pii": 1}
    assert report["leakage"] == {"eval_rows": 2, "leaked_rows": 1,
                                 "examples": [{"line": 15, "text": "see you later", "label": "bye"}]}


def test_warnings(report):
    assert report["warnings"] == [
        "Cleaning removed 3 of 17 rows (17.6%); see the reasons under rows removed.",
        "The classes are imbalanced: the largest has 11.0 times the rows of the smallest.",
        "Found 2 classes with fewer than 8 rows: rare (1), bye (2); add examples or merge them.",
        "Found personal data in 1 row (e-mail 1); mask or remove it before training.",
        "Found 1 training row repeated in the evaluation data; removed from training so evaluation scores "
        "stay honest.",
    ]


def test_length_stats():
    assert length_stats(list(range(0, 101, 10))) == {"mean": 50.0, "p50": 50.0, "p90": 90.0, "p95": 95.0,
                                                      "p99": 99.0, "max": 100}
    assert length_stats([]) == {"mean": None, "p50": None, "p90": None, "p95": None, "p99": None, "max": None}


def test_tokenizer_is_called_in_batches_of_1000_without_truncation():
    raw = dataset([(f"text number {i}", "ab"[i % 2]) for i in range(2500)])
    tokenizer = WhitespaceTokenizer()
    report = build_data_report(raw, clean_dataset(raw, max_chars=100), tokenizer=tokenizer, find_issues=False)
    assert tokenizer.calls == [(1000, True, False), (1000, True, False), (500, True, False)]
    assert report["lengths"]["tokens"]["over_max_length"] == 0
    assert report["source"]["eval_source"] is None
    assert report["leakage"] is None


def test_label_issues_and_their_warning():
    rows = [(f"please refund my order number {i}", "refund") for i in range(12)]
    rows += [(f"my card has not arrived after {i} days", "card") for i in range(12)]
    rows.append(("please refund my order number 99", "card"))
    raw = dataset(rows)
    report = build_data_report(raw, clean_dataset(raw, max_chars=100))
    issues = report["label_issues"]
    assert issues["count"] == 1
    assert issues["min_confidence"] == 0.8
    assert issues["model"] == {"rows": 25, "agreement": 0.96, "kappa": 0.9201, "reliable": True}
    assert [{k: e[k] for k in ("line", "text", "label", "suggested")} for e in issues["examples"]] == [
        {"line": 26, "text": "please refund my order number 99", "label": "card", "suggested": "refund"}]
    assert 0.8 <= issues["examples"][0]["confidence"] <= 1.0
    assert report["lengths"]["tokens"] is None
    assert report["warnings"] == [
        "Found 1 row (4.0% of kept rows) whose label a model trained on the other rows confidently disagrees with "
        "(it gives another label at least 80% probability); review them under likely label errors (line 26): fix "
        "the mislabelled ones, keep the ones that are just hard."]
    assert ("Likely label errors: 1 (4.0%), rows whose label a model trained on the other rows confidently "
            "disagrees with (it gives another label at least 80% probability)") in format_data_report_text(report)


def test_shipped_sample_is_not_called_mislabelled():
    """The demo's finance tweets: the out-of-fold model is weak (64% agreement), so its 12 confident
    disagreements (1.3%; 180 rows, 20%, before the confidence floor) are listed without a warning."""
    from tailor.data.ingest import read_dataset

    raw = read_dataset(files("tailor.sample_data").joinpath("finance_sentiment_train.csv"))
    report = build_data_report(raw, clean_dataset(raw, max_chars=20_000))
    issues = report["label_issues"]
    assert (issues["count"], issues["model"]) == (12, {"rows": 900, "agreement": 0.64, "kappa": 0.46,
                                                       "reliable": False})
    assert all(e["confidence"] >= 0.8 for e in issues["examples"])
    assert report["warnings"] == []
    assert ("Likely label errors: 12 (1.3%); the model trained on the other rows agrees with only 64.0% of the "
            "labels (kappa 0.46), too weak to tell a wrong label from a hard row, so these are worth a glance, "
            "not a warning") in format_data_report_text(report).splitlines()
    assert ('<p class="muted">The model trained on the other rows agrees with only 64.0% of the labels (kappa '
            '0.46), too weak to tell a wrong label from a hard row, so these are worth a glance, not a warning.</p>'
            in render_data_report_html(report))


def test_every_pii_kind_is_shown_in_text_json_and_html():
    raw = dataset([("mail ann@example.com", "a"), ("call +44 20 7946 0958", "a"),
                   ("card 4111 1111 1111 1111", "b"), ("SSN 123-45-6789", "b"),
                   ("IBAN GB82 WEST 1234 5698 7654 32 and DE89370400440532013000", "b"), ("nothing here", "a")])
    report = build_data_report(raw, clean_dataset(raw, max_chars=100), find_issues=False)
    assert json.loads(json.dumps(report))["pii"] == {"email": 1, "phone": 1, "card_number": 1, "id_number": 1,
                                                     "iban": 2, "rows_with_pii": 5}
    assert ("Personal data: e-mail 1, phone 1, card number 1, ID number 1, IBAN 2 (5 rows with any)"
            in format_data_report_text(report).splitlines())
    assert ("Found personal data in 5 rows (e-mail 1, phone 1, card number 1, ID number 1, IBAN 2); mask or "
            "remove it before training.") in report["warnings"]
    html = render_data_report_html(report)
    for name, count in (("e-mail", 1), ("phone", 1), ("card number", 1), ("ID number", 1), ("IBAN", 2),
                        ("rows with any", 5)):
        assert f'<tr><td>{name}</td><td class="num">{count}</td></tr>' in html


def test_html_has_every_section_and_escapes_texts(report):
    html = render_data_report_html(report)
    for heading in ("Summary", "Warnings", "Rows removed", "Label distribution", "Text lengths", "Small classes",
                    "Likely label errors", "Personal data", "Leakage"):
        assert f"<h2>{heading}</h2>" in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; hello" in html  # the duplicate's example
    assert html.count("<svg") == 1


def test_terminal_summary(report):
    text = format_data_report_text(report)
    lines = text.splitlines()
    assert 10 <= len(lines) <= 25
    assert lines[:3] == [
        "Data: train.csv (csv, utf-8; text column 'text', label column 'label')",
        "Rows: 17 read, 14 kept, 3 removed (empty 1, duplicate_exact 1, leaked_into_eval 1)",
        "Labels: 3 classes; largest 'greet' (78.6%); imbalance 11.0x",
    ]
    assert "Personal data: e-mail 1, phone 0, card number 0, ID number 0, IBAN 0 (1 row with any)" in lines
    assert "Evaluation data: 2 rows; 1 training row repeated there" in lines
