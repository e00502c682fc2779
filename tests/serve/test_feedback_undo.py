"""Taking feedback back (``DELETE /v1/feedback/{answer_id}``) and the review queue's count of the labels a
retrain would use, through the API: tenants, and labels given before and after the version."""

from __future__ import annotations

from api_helpers import error_of, publish_copy
from samples import SAMPLE_TEST, sample_rows

TEXTS = [t for t, _ in sample_rows(SAMPLE_TEST)[:4]]


def test_feedback_is_taken_back_and_the_queue_counts_the_labels(settings, client, acme, globex, head_artifact):
    publish_copy(settings, head_artifact, "acme", "sentiment")
    answers = client.post("/v1/classifications", headers=acme.headers,
                          json={"model": "sentiment", "input": TEXTS + [TEXTS[0]], "store": True}).json()["data"]
    labels = sorted(answers[0]["scores"])
    given = client.post("/v1/feedback", headers=acme.headers, json=[
        {"prediction_id": a["id"], "label": labels[0]} for a in (answers[0], answers[1], answers[4])])
    assert given.status_code == 200
    queue = client.get("/v1/models/sentiment/review_queue", headers=acme.headers).json()
    assert queue["feedback_labels"] == {"total": 2, "since_version": 2}  # one per text: answers 0 and 4 share one
    assert {i["prediction_id"] for i in queue["data"]} == {answers[2]["id"], answers[3]["id"]}

    assert error_of(client.delete(f"/v1/feedback/{answers[1]['id']}", headers=globex.headers), 404)["message"] == (
        f"no feedback on answer {answers[1]['id']!r}")
    taken = client.delete(f"/v1/feedback/{answers[1]['id']}", headers=acme.headers)
    assert taken.status_code == 200 and taken.json() == {"id": answers[1]["id"], "object": "feedback", "deleted": True}
    assert error_of(client.delete(f"/v1/feedback/{answers[1]['id']}", headers=acme.headers), 404)
    assert error_of(client.delete("/v1/feedback/pred-nope", headers=acme.headers), 404)
    queue = client.get("/v1/models/sentiment/review_queue", headers=acme.headers).json()
    assert queue["feedback_labels"] == {"total": 1, "since_version": 1}
    assert answers[1]["id"] in {i["prediction_id"] for i in queue["data"]}  # back in the queue

    publish_copy(settings, head_artifact, "acme", "sentiment")  # version 2: the label above came before it
    newer = client.get("/v1/models/sentiment/review_queue", headers=acme.headers).json()
    assert newer["model"] == "sentiment:2" and newer["feedback_labels"] == {"total": 1, "since_version": 0}
