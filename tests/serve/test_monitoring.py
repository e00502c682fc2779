"""Feedback on answers and the monitoring report through the API: checks before anything is written, tenant
isolation, and a report whose figures are recomputed here from the answers themselves."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from api_helpers import error_of, publish_copy
from samples import SAMPLE_TEST, sample_rows
from tailor.eval.calibration import apply_temperature

ROWS = sample_rows(SAMPLE_TEST)[:12]
DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


@pytest.fixture
def sentiment(settings, head_artifact, acme):
    return publish_copy(settings, head_artifact, "acme", "sentiment")


def _classify(client, tenant, texts) -> list[dict]:
    response = client.post("/v1/classifications", headers=tenant.headers, json={"model": "sentiment", "input": texts})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_feedback_is_checked_whole_then_written_and_replaces_earlier_feedback(app, client, acme, globex, sentiment):
    answers = _classify(client, acme, [t for t, _ in ROWS[:2]])
    labels = sorted(answers[0]["scores"])
    given = client.post("/v1/feedback", headers=acme.headers,
                        json=[{"prediction_id": a["id"], "label": labels[0]} for a in answers]).json()
    assert [(f["prediction_id"], f["label"], f["object"]) for f in given["data"]] == [
        (a["id"], labels[0], "feedback") for a in answers]
    assert all(f["id"].startswith("fb-") and "completion_id" not in f for f in given["data"])
    store = app.state.services.feedback
    client.post("/v1/feedback", headers=acme.headers, json={"prediction_id": answers[0]["id"], "label": labels[1]})
    assert {k: f.label for k, f in store.for_records("acme", [a["id"] for a in answers]).items()} == {
        answers[0]["id"]: labels[1], answers[1]["id"]: labels[0]}

    bad_label = [{"prediction_id": answers[0]["id"], "label": labels[2]},
                 {"prediction_id": answers[1]["id"], "label": "Bullish"}]
    assert error_of(client.post("/v1/feedback", headers=acme.headers, json=bad_label), 400)["message"] == (
        f"feedback[1].label: 'Bullish' is not a label of sentiment:1 (its labels: {', '.join(labels)})")
    assert store.for_records("acme", [answers[0]["id"]])[answers[0]["id"]].label == labels[1]  # nothing written
    assert error_of(client.post("/v1/feedback", headers=acme.headers,
                                json={"prediction_id": "pred-nope", "label": labels[0]}), 404)["message"] == (
        "feedback[0]: prediction 'pred-nope' not found")
    assert error_of(client.post("/v1/feedback", headers=globex.headers,
                                json={"prediction_id": answers[0]["id"], "label": labels[0]}), 404)["message"] == (
        f"feedback[0]: prediction {answers[0]['id']!r} not found")
    assert error_of(client.post("/v1/feedback", headers=acme.headers,
                                json={"completion_id": answers[0]["id"], "rating": "up"}), 404)["message"] == (
        f"feedback[0]: completion {answers[0]['id']!r} not found (it is a classification answer)")
    both = error_of(client.post("/v1/feedback", headers=acme.headers,
                                json={"prediction_id": answers[0]["id"], "completion_id": "x", "label": "a"}), 400)
    assert "give either prediction_id (with label) or completion_id" in both["message"]
    twice = [{"prediction_id": answers[0]["id"], "label": labels[0]}] * 2
    assert error_of(client.post("/v1/feedback", headers=acme.headers, json=twice), 400)["message"] == (
        f"feedback: {answers[0]['id']!r} is given more than once in one request")
    assert store.count("acme") == 2 and store.count("globex") == 0


def test_the_monitoring_report_recomputes_from_the_answers(app, client, acme, globex, sentiment):
    answers = [a for start in (0, 4, 8) for a in _classify(client, acme, [t for t, _ in ROWS[start:start + 4]])]
    truth = {a["id"]: label for a, (_, label) in zip(answers[:6], ROWS[:6])}
    client.post("/v1/feedback", headers=acme.headers,
                json=[{"prediction_id": k, "label": v} for k, v in truth.items()])
    report = client.get("/v1/models/sentiment/monitoring?hours=1&bucket_minutes=15", headers=acme.headers).json()

    assert report["model"] == "sentiment:1" and report["bucket_minutes"] == 15 and report["window"]["hours"] == 1
    assert (report["totals"]["requests"], report["totals"]["answers"], report["totals"]["abstained"]) == (3, 12, 0)
    labels = sorted(answers[0]["scores"])
    probs = np.array([[a["scores"][k] for k in labels] for a in answers])
    temperature = sentiment.metrics["calibration"]["temperature"]
    scaled = apply_temperature(probs, temperature)
    assert report["estimated"]["rows"] == 12 and report["estimated"]["temperature"] == temperature
    assert report["estimated"]["accuracy"] == pytest.approx(scaled.max(axis=1).mean(), abs=1e-4)
    served = {k: sum(a["label"] == k for a in answers) / 12 for k in labels if any(a["label"] == k for a in answers)}
    assert report["labels"]["served"] == pytest.approx(served, abs=1e-4)
    counts = sentiment.lineage["label_counts"]
    training = {k: v / sum(counts.values()) for k, v in counts.items()}
    assert report["labels"]["training"] == pytest.approx(training, abs=1e-4)
    assert report["labels"]["distance"] == pytest.approx(
        0.5 * sum(abs(served.get(k, 0) - training.get(k, 0)) for k in labels), abs=2e-4)
    assert sum(report["confidence"]["histogram"]) == 12
    right = [a["label"] == truth[a["id"]] for a in answers[:6]]
    assert report["measured"]["rows"] == 6 and report["measured"]["accuracy"] == pytest.approx(np.mean(right), abs=1e-4)
    assert len(report["buckets"]) == 4 and sum(b["answers"] for b in report["buckets"]) == 12
    assert report["buckets"][-1]["requests"] == 3  # the traffic just happened: the newest bucket
    assert report["totals"]["latency_ms"]["p50"] > 0

    empty = client.get("/v1/models/sentiment/monitoring?hours=1", headers=globex.headers)
    assert error_of(empty, 404)["message"].startswith("model 'sentiment' not found")
    assert error_of(client.get("/v1/models/minilm-l6/monitoring", headers=acme.headers), 400)["message"] == (
        "'minilm-l6' is a base model; monitoring reports cover fine-tuned versions")
    assert error_of(client.get("/v1/models/sentiment/monitoring?hours=100&bucket_minutes=1", headers=acme.headers),
                    400)["param"] == "bucket_minutes"


def test_a_window_without_traffic_has_the_reports_shape(client, acme, sentiment):
    report = client.get("/v1/models/sentiment/monitoring?hours=2", headers=acme.headers).json()
    assert report["totals"] == {"requests": 0, "answers": 0, "abstained": 0, "prompt_tokens": 0,
                                "latency_ms": {"p50": None, "p95": None, "p99": None}, "errors": 0,
                                "client_errors": 0}
    assert report["estimated"]["accuracy"] is None and report["measured"]["rows"] == 0
    assert report["labels"]["served"] == {} and report["labels"]["distance"] is None
    assert [b["answers"] for b in report["buckets"]] == [0, 0]
    assert report["drift"]["verdict"] == "insufficient_data"
    assert report["drift"]["reasons"] == ["0 answers in the window; drift needs 30"]


def test_failed_requests_are_counted_as_errors(settings, client, acme, sentiment, head_artifact):
    refused = client.post("/v1/classifications", headers=acme.headers, json={
        "model": "sentiment", "input": "rates rise", "abstain": False, "abstain_threshold": 0.5})
    assert refused.status_code == 400
    broken = publish_copy(settings, head_artifact, "acme", "broken")
    for path in app_artifacts(client, broken).iterdir():
        if path.is_file() and path.suffix in (".safetensors", ".onnx", ".pt", ".bin"):
            path.unlink()
    failed = client.post("/v1/classifications", headers=acme.headers, json={"model": "broken", "input": "rates rise"})
    assert failed.status_code != 200
    report = client.get("/v1/models/sentiment/monitoring?hours=1", headers=acme.headers).json()
    assert (report["totals"]["errors"], report["totals"]["client_errors"], report["totals"]["answers"]) == (0, 1, 0)
    broken_report = client.get("/v1/models/broken/monitoring?hours=1", headers=acme.headers).json()
    server_side = failed.status_code >= 500  # counted by who failed: the server (5xx) or the request (4xx)
    assert (broken_report["totals"]["errors"], broken_report["totals"]["client_errors"]) == (
        int(server_side), int(not server_side))
    assert broken_report["buckets"][-1]["failed"] == 1


def app_artifacts(client, version):
    return client.app.state.services.registry.artifact_dir(version)


def test_drift_is_flagged_for_texts_from_another_source_and_not_for_the_training_source(client, acme, sentiment):
    def drift(texts, metadata):
        for start in range(0, len(texts), 20):
            response = client.post("/v1/classifications", headers=acme.headers, json={
                "model": "sentiment", "input": texts[start:start + 20], "store": True, "metadata": metadata})
            assert response.status_code == 200, response.text
        return client.get("/v1/models/sentiment/monitoring?hours=1", headers=acme.headers).json()["drift"]

    tweets = [t for t, _ in sample_rows(SAMPLE_TEST)[:40]]  # the training source, other rows
    calm = drift(tweets, {"source": "tweets"})
    assert calm["verdict"] == "no_drift", calm
    assert calm["embedding"]["texts"] == 40 and calm["embedding"]["reference_texts"] == 30  # the training split of 36 rows
    assert calm["language"]["served"] == {"latin": 1.0}

    sms = [row["text"] for row in csv.DictReader(open(DATASETS / "sms_spam" / "test.csv", encoding="utf-8"))]
    shifted = drift(sms[:200], {"source": "sms"})  # the window's last 200 stored texts are all SMS
    assert shifted["verdict"] == "drift", shifted
    assert shifted["embedding"]["texts"] == 200 and shifted["embedding"]["domain_auc"] > 0.9
    assert shifted["length"]["texts"] == 240
    assert all(e["text"] in sms[:200] for e in shifted["novel_examples"])

    # the same verdict as an alert rule and a Prometheus gauge
    client.put("/v1/models/sentiment/monitoring/config", headers=acme.headers,
               json={"rules": [{"metric": "input_drift"}]})
    fired = client.post("/v1/models/sentiment/alerts/check", headers=acme.headers).json()["data"]
    assert [(a["rule"], a["value"]) for a in fired] == [("input_drift >= 1", 1.0)]
    lines = client.get("/metrics").text.splitlines()
    assert 'tailor_model_input_drift{model="sentiment",tenant="acme",version="1"} 1.0' in lines


def test_metrics_give_each_versions_last_hour_as_gauges(client, acme, sentiment):
    _classify(client, acme, [t for t, _ in ROWS[:5]])
    report = client.get("/v1/models/sentiment/monitoring?hours=1", headers=acme.headers).json()
    lines = client.get("/metrics").text.splitlines()
    labels = '{model="sentiment",tenant="acme",version="1"}'

    def gauge(name):
        return float(next(line for line in lines if line.startswith(name + labels)).split()[-1])

    assert gauge("tailor_model_answers_1h") == 5
    assert gauge("tailor_model_estimated_accuracy_1h") == report["estimated"]["accuracy"]
    assert gauge("tailor_model_label_distance_1h") == report["labels"]["distance"]
