"""The review queue's order (uncertain and novel first, spread out, near-duplicates once) and its exports read
back as feedback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tailor.errors import DataError
from tailor.monitor.review import export, read_labels, review_order, uncertainty


def test_uncertainty_is_one_minus_the_top_two_margin():
    probs = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    assert uncertainty(probs) == pytest.approx([1.0, 0.15, 0.8])


def test_the_order_takes_priority_then_spreads_and_skips_near_duplicates():
    # rows 0 and 1 are the same direction (near-duplicates), row 2 is close to them, row 3 far from all
    vectors = np.array([[1.0, 0.0], [0.999, 0.045], [0.8, 0.6], [0.0, 1.0]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    priority = np.array([0.9, 0.89, 0.85, 0.6])
    # 0 first; 1 is a near-duplicate of 0 (never); 3 (far) beats 2 (0.85 - 0.5 * 0.8 = 0.45 < 0.6 - 0)
    assert review_order(priority, vectors, limit=4) == [0, 3, 2]
    assert review_order(priority, vectors, limit=1) == [0]
    assert review_order(np.array([]), np.zeros((0, 2)), limit=3) == []


ITEMS = [{"prediction_id": "pred-1", "input": "rates, \"up\"", "label": "positive", "score": 0.51},
         {"prediction_id": "pred-2", "input": "利率上升", "label": None, "score": 0.4}]


def test_exports_read_back_once_labelled():
    body, media = export(ITEMS, "csv", "sentiment:2")
    assert media.startswith("text/csv") and body.splitlines()[0] == "prediction_id,text,label,score,true_label"
    labelled = body.replace("0.51,\r\n", "0.51,negative\r\n")
    assert read_labels(labelled.encode(), "queue.csv") == [{"prediction_id": "pred-1", "label": "negative"}]

    body, _ = export(ITEMS, "jsonl", "sentiment:2")
    rows = [json.loads(line) for line in body.splitlines()]
    assert rows[1] == {"prediction_id": "pred-2", "text": "利率上升", "label": None, "score": 0.4, "true_label": None}
    rows[1]["true_label"] = "neutral"
    assert read_labels("\n".join(json.dumps(r) for r in rows).encode(), "q.jsonl") == [
        {"prediction_id": "pred-2", "label": "neutral"}]

    body, _ = export(ITEMS, "label_studio", "sentiment:2")
    tasks = json.loads(body)
    assert tasks[0] == {"data": {"text": "rates, \"up\"", "prediction_id": "pred-1"}, "predictions": [
        {"model_version": "sentiment:2", "score": 0.51, "result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["positive"]}}]}]}
    assert tasks[1]["predictions"][0]["result"] == []
    tasks[0]["annotations"] = [{"result": [{"type": "choices", "value": {"choices": ["negative"]}}]}]
    tasks[1]["annotations"] = [{"was_cancelled": True, "result": [{"type": "choices", "value": {"choices": ["x"]}}]}]
    assert read_labels(json.dumps(tasks).encode(), "export.json") == [{"prediction_id": "pred-1", "label": "negative"}]


def test_bad_label_files_name_the_row():
    with pytest.raises(DataError, match="^line 3: no prediction_id$"):
        read_labels(b"prediction_id,true_label\npred-1,a\n,b\n", "x.csv")
    with pytest.raises(DataError, match=r"^line 2: not JSON"):
        read_labels(b'{"prediction_id": "p", "label": "a"}\n{oops\n', "x.jsonl")
    with pytest.raises(DataError, match=r"^task 0: no data.prediction_id"):
        read_labels(b'[{"data": {"text": "t"}}]', "x.json")
