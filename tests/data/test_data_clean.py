"""Cleaning: each removal rule, its counts and examples, and what is kept."""

import pytest

from tailor.data.clean import REASONS, clean_dataset, normalize_text
from tailor.data.dataset import TextDataset


def dataset(rows: list[tuple[str, str]]) -> TextDataset:
    return TextDataset(texts=[t for t, _ in rows], labels=[label for _, label in rows],
                       lines=[i + 2 for i in range(len(rows))])


ROWS = [
    ("Hello world", "greet"),           # line 2: kept
    ("   ", "greet"),                   # line 3: empty text
    ("some text", " "),                 # line 4: empty label
    ("x" * 250, "greet"),               # line 5: too long
    (" Hello world ", "greet"),         # line 6: exact duplicate of line 2 once stripped
    ("hello   WORLD!", "greet"),        # line 7: normalized duplicate
    ("refund please", "billing"),       # line 8: conflicts with line 9, no majority
    ("Refund please.", "support"),      # line 9
    ("card lost", "cards"),             # line 10: majority (2 of 3) kept
    ("card lost", "cards"),             # line 11: exact duplicate of the majority row
    ("Card lost", "support"),           # line 12: minority label
    ("where is my parcel", "delivery"),  # line 13: in the evaluation data
    ("  new text  ", " delivery"),      # line 14: kept, stripped
]


def test_removed_counts_in_reason_order():
    result = clean_dataset(dataset(ROWS), max_chars=200,
                           eval_ds=dataset([("Where is my parcel?", "delivery"), ("", "x")]))
    assert result.removed == {"empty": 2, "too_long": 1, "duplicate_exact": 2, "duplicate_normalized": 1,
                              "conflicting_labels": 3, "leaked_into_eval": 1}
    assert list(result.removed) == list(REASONS)
    assert result.dataset.texts == ["Hello world", "card lost", "new text"]
    assert result.dataset.labels == ["greet", "cards", "delivery"]
    assert result.dataset.lines == [2, 10, 14]


def test_examples_per_reason():
    examples = clean_dataset(dataset(ROWS), max_chars=200,
                             eval_ds=dataset([("Where is my parcel?", "delivery")])).examples
    assert list(examples) == list(REASONS)
    assert examples["empty"] == [{"line": 3, "text": "", "label": "greet"},
                                 {"line": 4, "text": "some text", "label": ""}]
    assert examples["too_long"] == [{"line": 5, "text": "x" * 200, "label": "greet"}]
    assert examples["duplicate_exact"] == [{"line": 6, "text": "Hello world", "label": "greet"},
                                           {"line": 11, "text": "card lost", "label": "cards"}]
    assert examples["duplicate_normalized"] == [{"line": 7, "text": "hello   WORLD!", "label": "greet"}]
    assert examples["conflicting_labels"] == [
        {"line": 8, "text": "refund please", "label": "billing", "labels": ["billing", "support"]},
        {"line": 9, "text": "Refund please.", "label": "support", "labels": ["billing", "support"]},
        {"line": 12, "text": "Card lost", "label": "support", "labels": ["cards", "support"]},
    ]
    assert examples["leaked_into_eval"] == [{"line": 13, "text": "where is my parcel", "label": "delivery"}]


def test_examples_are_capped_at_five_per_reason():
    result = clean_dataset(dataset([("same", "a")] * 9), max_chars=100)
    assert result.removed["duplicate_exact"] == 8
    assert [e["line"] for e in result.examples["duplicate_exact"]] == [3, 4, 5, 6, 7]


def test_no_eval_data_means_no_leak_and_nothing_removed_from_clean_data():
    rows = [("one", "a"), ("two", "b"), ("three", "a")]
    result = clean_dataset(dataset(rows), max_chars=100)
    assert result.removed == dict.fromkeys(REASONS, 0)
    assert result.dataset.texts == ["one", "two", "three"]


def test_majority_needs_two_thirds():
    rows = [("q", "a"), ("q", "a"), ("q", "b"), ("q", "b")]  # half and half: all conflicting
    assert clean_dataset(dataset(rows), max_chars=10).removed["conflicting_labels"] == 4
    rows = [("q", "a"), ("q", "b"), ("q", "a"), ("Q!", "a"), ("q", "b")]  # 3 of 5 < 2/3
    assert clean_dataset(dataset(rows), max_chars=10).removed["conflicting_labels"] == 5
    rows = [("q", "b"), ("q", "a"), ("q", "a"), ("Q!", "a")]  # 3 of 4: first 'a' row stays
    result = clean_dataset(dataset(rows), max_chars=10)
    assert result.dataset.lines == [3]
    assert (result.removed["conflicting_labels"], result.removed["duplicate_exact"],
            result.removed["duplicate_normalized"]) == (1, 1, 1)


@pytest.mark.parametrize("text, expected", [
    ("  Hello,   World!! ", "hello, world"),
    ("ＨＥＬＬＯ　ｗｏｒｌｄ", "hello world"),
    ("«Straße»", "strasse"),
    ("你好，世界。", "你好,世界"),  # NFKC turns the full-width comma into ","
    ("...", ""),
    ("e-mail me", "e-mail me"),
])
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected
