"""The review queue through the API: stored answers without feedback, the most useful first, each text once;
its exports labelled and imported back as feedback; tenant isolation."""

from __future__ import annotations

import csv
import io

import pytest

from api_helpers import error_of, publish_copy
from samples import SAMPLE_TEST, sample_rows

ROWS = sample_rows(SAMPLE_TEST)[:40]


@pytest.fixture
def sentiment(settings, head_artifact, acme):
    return publish_copy(settings, head_artifact, "acme", "sentiment")


def _serve(client, tenant, texts, store=True):
    response = client.post("/v1/classifications", headers=tenant.headers,
                           json={"model": "sentiment", "input": texts, "store": store})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_the_queue_ranks_unlabelled_stored_answers_once_each(client, acme, globex, sentiment):
    texts = [t for t, _ in ROWS]
    answers = _serve(client, acme, texts) + _serve(client, acme, texts[:3])  # three texts twice
    _serve(client, acme, ["not stored, never queued"], store=False)
    labels = sorted(answers[0]["scores"])
    client.post("/v1/feedback", headers=acme.headers,
                json=[{"prediction_id": answers[i]["id"], "label": labels[0]} for i in (5, 6)])

    queue = client.get("/v1/models/sentiment/review_queue?limit=100", headers=acme.headers).json()
    assert queue["object"] == "list" and queue["model"] == "sentiment:1"
    items = queue["data"]
    queued_texts = [i["input"] for i in items]
    assert len(queued_texts) == len(set(queued_texts)) <= 38  # each text once, the two labelled ones left out
    assert not {texts[5], texts[6], "not stored, never queued"} & set(queued_texts)
    assert set(items[0]) == {"prediction_id", "input", "label", "score", "scores", "uncertainty", "novelty",
                             "created_at"}
    priority = [i["uncertainty"] * (0.5 + i["novelty"]) for i in items]
    assert priority[0] == pytest.approx(max(priority), abs=1e-3)  # the first pick is the most useful
    assert all(0 <= i["uncertainty"] <= 1 and 0 <= i["novelty"] <= 1 for i in items)
    assert len(client.get("/v1/models/sentiment/review_queue?limit=5", headers=acme.headers).json()["data"]) == 5

    assert error_of(client.get("/v1/models/sentiment/review_queue", headers=globex.headers), 404)
    assert error_of(client.get("/v1/models/minilm-l6/review_queue", headers=acme.headers), 400)["message"] == (
        "'minilm-l6' is not a fine-tuned classifier; the review queue covers those")


def test_a_labelled_export_comes_back_as_feedback(client, acme, globex, sentiment):
    answers = _serve(client, acme, [t for t, _ in ROWS[:12]])
    labels = sorted(answers[0]["scores"])
    exported = client.get("/v1/models/sentiment/review_queue?limit=4&format=csv", headers=acme.headers)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"] == 'attachment; filename="review-sentiment-1.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 4 and all(r["true_label"] == "" for r in rows)
    for row in rows[:3]:
        row["true_label"] = labels[1]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    labelled = buffer.getvalue().encode()

    assert error_of(client.post("/v1/feedback/import", headers=globex.headers,
                                files={"file": ("queue.csv", labelled)}), 404)["message"].startswith("feedback[0]")
    imported = client.post("/v1/feedback/import", headers=acme.headers, files={"file": ("queue.csv", labelled)})
    assert imported.status_code == 200, imported.text
    assert imported.json()["rows"] == 3
    assert [(f["prediction_id"], f["label"]) for f in imported.json()["data"]] == [
        (r["prediction_id"], labels[1]) for r in rows[:3]]
    left = {i["prediction_id"] for i in client.get("/v1/models/sentiment/review_queue?limit=100",
                                                     headers=acme.headers).json()["data"]}
    assert not left & {r["prediction_id"] for r in rows[:3]} and rows[3]["prediction_id"] in left

    studio = client.get("/v1/models/sentiment/review_queue?limit=2&format=label_studio", headers=acme.headers).json()
    assert [t["predictions"][0]["model_version"] for t in studio] == ["sentiment:1"] * 2
    wrong = rows[3] | {"true_label": "Bullish"}
    bad = client.post("/v1/feedback/import", headers=acme.headers, files={"file": (
        "q.csv", ("prediction_id,true_label\n" + f"{wrong['prediction_id']},Bullish\n").encode())})
    assert error_of(bad, 400)["message"].startswith("feedback[0].label: 'Bullish' is not a label of sentiment:1")
    empty = client.post("/v1/feedback/import", headers=acme.headers, files={"file": ("q.csv", b"prediction_id,true_label\n")})
    assert error_of(empty, 400)["message"] == "q.csv: no labelled rows (fill in true_label)"


def test_corrections_are_for_the_tenants_chat_models(client, acme, globex, sentiment):
    assert error_of(client.get("/v1/models/sentiment/corrections", headers=globex.headers), 404)
    assert error_of(client.get("/v1/models/sentiment/corrections", headers=acme.headers), 400)["message"] == (
        "'sentiment' is not a fine-tuned chat model; corrections are kept for those")
