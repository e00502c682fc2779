"""Self-training on unlabelled texts: reading the pool, checking it, choosing pseudo-labels, and a real job."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from samples import SAMPLE_TEST, SAMPLE_TRAIN, sample_rows, write_csv
from tailor.data.ingest import UnlabelledTexts, read_texts
from tailor.errors import DataError
from tailor.train.self_training import confidence_threshold, prepare_pool, select_pseudo_labels


def texts_of(texts, sha="pool-sha", empty=0) -> UnlabelledTexts:
    return UnlabelledTexts(list(texts), list(range(2, 2 + len(texts))), "pool.csv", sha, "text", empty)


# --- reading unlabelled files ---------------------------------------------------------------------------------

def test_read_texts_from_a_txt_file_skips_blank_lines(tmp_path):
    path = tmp_path / "pool.txt"
    content = "first text\n\n  second text  \r\nthird\n"
    path.write_text(content, encoding="utf-8", newline="")
    read = read_texts(path)
    assert (read.texts, read.lines, read.text_col, read.empty) == (["first text", "second text", "third"],
                                                                    [1, 3, 4], None, 1)
    assert read.sha256 == hashlib.sha256(content.encode()).hexdigest()


def test_read_texts_takes_the_text_column_and_ignores_labels(tmp_path):
    path = write_csv(tmp_path / "labelled.csv", [("a long enough text", "x"), ("", "y"), ("another", "z")],
                     header=("text", "label"))
    read = read_texts(path)
    assert (read.texts, read.lines, read.text_col, read.empty) == (["a long enough text", "another"], [2, 4],
                                                                    "text", 1)


def test_read_texts_guesses_the_longest_column_and_reads_jsonl(tmp_path):
    csv_path = write_csv(tmp_path / "notes.csv", [("n1", "patient reports a mild headache")], header=("id", "note"))
    assert read_texts(csv_path).text_col == "note"
    jsonl = tmp_path / "pool.jsonl"
    jsonl.write_text('{"sentence": "one"}\n{"sentence": "two"}\n', encoding="utf-8")
    assert read_texts(jsonl).texts == ["one", "two"]


@pytest.mark.parametrize("name, content, kwargs, message", [
    ("pool.csv", "text\n\n", {}, "no data rows after the header"),
    ("pool.csv", "text,label\n ,a\n", {}, "pool.csv holds no text in column 'text'"),
    ("pool.txt", "\n\n", {}, "pool.txt holds no text"),
    ("pool.csv", "note\nhello\n", {"text_col": "body"}, "column 'body' not found; columns are: note"),
    ("pool.txt", "hello\n", {"text_col": "body"},
     "pool.txt is a plain text file (one text per line): it has no column 'body'"),
])
def test_read_texts_refusals(tmp_path, name, content, kwargs, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_texts(path, **kwargs)
    assert str(info.value) == message


# --- checking the pool ----------------------------------------------------------------------------------------

def test_pool_that_is_the_training_file_is_skipped():
    pool = prepare_pool(texts_of(["a"], sha="same"), train_sha256="same", train_texts=["a"], test_texts=[],
                        max_rows=10, seed=0)
    assert pool.texts == [] and pool.skipped == ("it is the training file itself (same bytes); give texts without "
                                                 "labels that are not in the training file")
    assert pool.describe() == ("unlabelled file pool.csv: not used: it is the training file itself (same bytes); "
                               "give texts without labels that are not in the training file")


def test_pool_leaves_out_training_and_test_rows_and_repeats():
    pool = prepare_pool(texts_of(["Rates rise.", "rates rise", "new text", "New text!", "test row", "other"],
                                 empty=2),
                        train_sha256="train-sha", train_texts=["rates rise"], test_texts=["Test row"],
                        max_rows=10, seed=0)
    assert pool.texts == ["new text", "other"]
    assert pool.left_out == {"empty": 2, "training rows": 2, "test rows": 1, "repeats": 1, "over the cap": 0}
    assert pool.source == {"path": "pool.csv", "sha256": "pool-sha", "text_col": "text", "rows": 8}
    assert pool.describe() == ("unlabelled file pool.csv: 2 texts to pseudo-label (left out: 2 empty, 2 training "
                               "rows, 1 test rows, 1 repeats)")


def test_pool_with_nothing_new_is_skipped_naming_why():
    pool = prepare_pool(texts_of(["a b", "c d", "e f"]), train_sha256=None, train_texts=["a b", "c d", "e f"],
                        test_texts=[], max_rows=10, seed=0)
    assert pool.skipped == "no text is left once training rows are taken out (3 of 3 rows)"


def test_pool_in_another_script_is_skipped():
    pool = prepare_pool(texts_of(["央行宣布降息", "股市大涨"]), train_sha256=None, train_texts=["rates rise"],
                        test_texts=[], max_rows=10, seed=0)
    assert pool.skipped == ("its texts are mostly CJK and the labelled texts Latin: another language cannot teach "
                            "this model")


def test_pool_over_the_cap_is_a_seeded_sample():
    texts = [f"text number {i}" for i in range(50)]
    first = prepare_pool(texts_of(texts), train_sha256=None, train_texts=["x"], test_texts=[], max_rows=20, seed=3)
    again = prepare_pool(texts_of(texts), train_sha256=None, train_texts=["x"], test_texts=[], max_rows=20, seed=3)
    assert len(first.texts) == 20 and first.texts == again.texts and first.left_out["over the cap"] == 30
    assert set(first.texts) <= set(texts)


# --- choosing pseudo-labels -----------------------------------------------------------------------------------

PROBS = np.array([[0.95, 0.05], [0.60, 0.40], [0.97, 0.03], [0.10, 0.90], [0.30, 0.70], [0.91, 0.09],
                  [0.20, 0.80]])


def test_pseudo_labels_are_above_the_threshold_only_and_most_confident_first():
    chosen = select_pseudo_labels(PROBS, [1, 1], threshold=0.85, per_label_factor=10)
    assert (chosen.rows, chosen.targets) == ([2, 0, 5, 3], [0, 0, 0, 1])
    assert all(PROBS[r].max() >= 0.85 for r in chosen.rows)
    assert chosen.per_label(["bear", "bull"]) == {"bear": 3, "bull": 1}


def test_pseudo_labels_keep_the_labelled_class_mix():
    # two labelled rows of class 0 and one of class 1, factor 1: at most 2 and 1 pseudo-labels
    chosen = select_pseudo_labels(PROBS, [2, 1], threshold=None, per_label_factor=1)
    assert (chosen.rows, chosen.targets) == ([2, 0, 3], [0, 0, 1])


def test_confidence_threshold_is_where_validation_answers_reach_the_precision():
    # 30 validation rows: confident ones right, unsure ones half wrong
    right = [[0.9, 0.1]] * 20
    unsure = [[0.6, 0.4]] * 10
    probs = np.array(right + unsure)
    targets = np.array([0] * 20 + [0, 1] * 5)
    setting = confidence_threshold(probs, targets, precision=0.9)
    assert setting["validation_rows"] == 30 and setting["note"] is None
    scaled_top = setting["threshold"]
    from tailor.eval.calibration import apply_temperature

    scaled = apply_temperature(probs, setting["temperature"]).max(axis=1)
    assert scaled_top == pytest.approx(scaled[0], abs=1e-6)  # only the 20 sure rows pass
    assert (scaled >= scaled_top).sum() == 20


def test_confidence_threshold_says_when_validation_cannot_set_one():
    setting = confidence_threshold(np.array([[0.6, 0.4], [0.7, 0.3]]), np.array([1, 1]), precision=0.9)
    assert setting["threshold"] is None
    assert setting["note"] == ("no threshold that keeps at least 2 of 2 validation rows answered reaches 90% "
                               "accuracy (best 0.0%)")


# --- a real job -----------------------------------------------------------------------------------------------

def test_job_learns_from_unlabelled_texts_and_records_it(fresh_home, tmp_path):
    import tailor

    labelled = write_csv(tmp_path / "few.csv", sample_rows(per_label=8))
    pool = write_csv(tmp_path / "pool.csv", [(text,) for text, _ in sample_rows(SAMPLE_TRAIN)[:400]],
                     header=("text",))
    test = write_csv(tmp_path / "test.csv", sample_rows(SAMPLE_TEST)[:90])
    result = tailor.fine_tune(labelled, eval_file=test, name="few", method="head", seed=0, unlabeled=pool)
    record = result.version.lineage["self_training"]
    assert record["pool"]["rows"] == 400 and record["pool"]["left_out"]["training rows"] == 24
    assert record["pool"]["used"] == 400 - sum(record["pool"]["left_out"].values())
    first = record["rounds"][0]
    assert set(first) >= {"round", "threshold", "temperature", "pseudo_labels", "per_label", "valid_macro_f1", "kept"}
    assert all(n <= 4 * 7 for n in first["per_label"].values())  # growth 4 x the 7 training rows per label
    assert first["pseudo_labels"] == sum(first["per_label"].values()) > 0
    assert result.summary()["self_training"]["pool_used"] == record["pool"]["used"]
    assert json.loads(json.dumps(record)) == record
