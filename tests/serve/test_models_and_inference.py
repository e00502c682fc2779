"""``/v1/models``, ``/v1/embeddings``, ``/v1/classifications``, ``/health`` and ``/metrics``; no request here may
end in a 500."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tailor.catalog import CATALOG
from tailor.registry.service import open_registry

from api_helpers import error_of, publish_copy

TEXTS = ["Stocks rally as earnings beat forecasts", "Shares plunge after the profit warning"]


@pytest.fixture(autouse=True)
def never_a_500(client):
    yield
    scraped = client.get("/metrics").text
    assert 'status="500"' not in scraped


@pytest.fixture
def tweets(settings, head_artifact, acme):
    """acme's registered classifier ``tweets`` (version 1, alias ``prod``)."""
    version = publish_copy(settings, head_artifact, "acme", "tweets")
    open_registry(settings).store.set_alias("acme", "tweets", "prod", version.version)
    return version


def test_list_models_shows_the_catalog(client, acme):
    response = client.get("/v1/models", headers=acme.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [m["id"] for m in data] == ["minilm-l6", "me5-small", "smollm2-135m-instruct"] == list(CATALOG)
    assert {m["owned_by"] for m in data} == {"tailor"} and {m["object"] for m in data} == {"model"}
    assert [m["task"] for m in data] == ["classify", "classify", "chat"]
    assert all(m["version"] is None and m["base_model"] is None for m in data)


def test_get_a_base_model(client, acme):
    body = client.get("/v1/models/minilm-l6", headers=acme.headers).json()
    assert body == {"id": "minilm-l6", "object": "model", "created": 1735689600, "owned_by": "tailor",
                    "task": "classify", "base_model": None, "version": None, "aliases": [],
                    "description": CATALOG["minilm-l6"].description}


def test_unknown_model(client, acme):
    error = error_of(client.get("/v1/models/nope", headers=acme.headers), 404)
    assert (error["message"], error["code"]) == ("model 'nope' not found", "not_found")
    error = error_of(client.get("/v1/models/Bad Name", headers=acme.headers), 404)  # no model can have that id
    assert error["message"].startswith("model 'Bad Name' not found (invalid model reference 'Bad Name': expected ")


def test_a_base_model_cannot_be_deleted(client, acme):
    error = error_of(client.delete("/v1/models/minilm-l6", headers=acme.headers), 400)
    assert error["message"] == "'minilm-l6' is a base model of the catalog and cannot be deleted"
    assert error["param"] == "model_id"
    assert client.get("/v1/models/minilm-l6", headers=acme.headers).status_code == 200


def test_embeddings_of_a_base_encoder(client, acme):
    response = client.post("/v1/embeddings", headers=acme.headers, json={"model": "minilm-l6", "input": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["object"], body["model"]) == ("list", "minilm-l6")
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", 0), ("embedding", 1)]
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (2, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-4)
    assert not np.allclose(vectors[0], vectors[1])
    assert body["usage"]["prompt_tokens"] > 2 and body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]

    encoded = client.post("/v1/embeddings", headers=acme.headers,
                          json={"model": "minilm-l6", "input": TEXTS[0], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,)
    assert decoded == pytest.approx(vectors[0], abs=1e-6)
    same = client.post("/v1/embeddings", headers=acme.headers,
                       json={"model": "minilm-l6", "input": TEXTS[0], "dimensions": 384}).json()
    assert same["data"][0]["embedding"] == pytest.approx(vectors[0].tolist(), abs=1e-6)


@pytest.mark.parametrize("body, message, param", [
    ({"input": "hi", "dimensions": 128},
     "dimensions: minilm-l6 makes 384-dimensional vectors; other sizes are not supported", "dimensions"),
    ({"input": []}, "input: List should have at least 1 item after validation, not 0", "input"),
    ({"input": ["ok"] * 2049}, "input: List should have at most 2048 items after validation, not 2049", "input"),
    ({"input": ""}, "input: String should have at least 1 character", "input"),
    ({"input": ["ok", "  "]}, "input.1: String should match pattern '\\S'", "input.1"),
    ({"input": "hi", "encoding_format": "int8"}, "encoding_format: Input should be 'float' or 'base64'",
     "encoding_format"),
])
def test_embeddings_refusals(client, acme, body, message, param):
    error = error_of(client.post("/v1/embeddings", headers=acme.headers, json={"model": "minilm-l6", **body}), 400)
    assert (error["message"], error["param"]) == (message, param)


def test_embeddings_of_a_chat_model_are_refused(client, acme):
    response = client.post("/v1/embeddings", headers=acme.headers,
                           json={"model": "smollm2-135m-instruct", "input": "hi"})
    assert error_of(response, 400)["message"] == (
        "model 'smollm2-135m-instruct' is a chat model: embeddings need an encoder (e.g. minilm-l6 or a fine-tuned "
        "classifier)")


def test_classifications_need_a_fine_tuned_model(client, acme):
    error = error_of(client.post("/v1/classifications", headers=acme.headers,
                                 json={"model": "minilm-l6", "input": "up"}), 400)
    assert "is a base model without labels" in error["message"]
    assert error["message"] == ("model 'minilm-l6' is a base model without labels; fine-tune it first: "
                                "/v1/classifications needs a fine-tuned classifier")


def test_classify_by_name_version_and_alias(client, acme, tweets):
    results = {}
    for ref in ("tweets", "tweets:1", "tweets@prod", "tweets@latest"):
        response = client.post("/v1/classifications", headers=acme.headers, json={"model": ref, "input": TEXTS})
        assert response.status_code == 200, (ref, response.text)
        body = response.json()
        assert body["model"] == ref
        for row in body["data"]:
            assert set(row["scores"]) == {"bearish", "bullish", "neutral"}
            assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        results[ref] = [(d["label"], round(d["score"], 5)) for d in body["data"]]
    assert len(set(map(tuple, results.values()))) == 1  # every reference is the same version

    model = client.get("/v1/models/tweets@prod", headers=acme.headers).json()
    assert {k: model[k] for k in ("id", "owned_by", "task", "base_model", "version", "aliases")} == {
        "id": "tweets@prod", "owned_by": "acme", "task": "classify", "base_model": "minilm-l6", "version": 1,
        "aliases": ["prod"]}
    embedded = client.post("/v1/embeddings", headers=acme.headers, json={"model": "tweets", "input": TEXTS[0]})
    assert len(embedded.json()["data"][0]["embedding"]) == 384


def test_delete_one_version_then_404(client, acme, tweets):
    response = client.delete("/v1/models/tweets:1", headers=acme.headers)
    assert response.status_code == 200
    assert response.json() == {"id": "tweets:1", "object": "model", "deleted": True}
    for ref in ("tweets:1", "tweets@prod"):
        assert error_of(client.get(f"/v1/models/{ref}", headers=acme.headers), 404)["code"] == "not_found"
    classified = client.post("/v1/classifications", headers=acme.headers, json={"model": "tweets:1", "input": "up"})
    error_of(classified, 404)
    assert [m["id"] for m in client.get("/v1/models", headers=acme.headers).json()["data"]] == list(CATALOG)


def test_delete_a_whole_model_and_not_an_alias(client, acme, tweets, settings):
    error = error_of(client.delete("/v1/models/tweets@prod", headers=acme.headers), 400)
    assert error["message"] == "delete 'tweets' or one version (tweets:N), not an alias"
    assert client.delete("/v1/models/tweets", headers=acme.headers).json() == {
        "id": "tweets", "object": "model", "deleted": True}
    assert error_of(client.get("/v1/models/tweets", headers=acme.headers), 404)["message"] == "model 'tweets' not found"
    assert list((settings.artifacts_dir / "acme").rglob("*.safetensors")) == []


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": response.json()["version"], "database": "ok",
                               "workers": None, "models_loaded": 0}


def test_metrics_count_requests_by_route_and_model_loads(client, acme):
    client.get("/v1/models/minilm-l6", headers=acme.headers)
    client.get("/v1/models/nope", headers=acme.headers)
    client.post("/v1/embeddings", headers=acme.headers, json={"model": "minilm-l6", "input": "hello"})
    assert client.get("/health").json()["models_loaded"] == 1
    text = client.get("/metrics").text
    assert 'tailor_http_requests_total{method="GET",route="/v1/models/{model_id}",status="200"} 1.0' in text
    assert 'tailor_http_requests_total{method="GET",route="/v1/models/{model_id}",status="404"} 1.0' in text
    assert 'tailor_http_requests_total{method="POST",route="/v1/embeddings",status="200"} 1.0' in text
    assert "minilm-l6" not in text and "nope" not in text  # ids never become labels
    assert 'tailor_model_loads_total{kind="encoder"} 1.0' in text
    assert 'tailor_model_load_seconds_count{kind="encoder"} 1.0' in text
    assert "tailor_models_loaded 1.0" in text


def test_interactive_docs_are_served_without_a_network(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        served = client.get(f"/docs-static/{asset}")
        assert served.status_code == 200 and len(served.content) > 10_000


def test_head_versions_of_many_tenants_share_one_base_encoder(client, app, settings, head_artifact, acme, globex,
                                                             tweets):
    from tailor.models.runtimes import SharedBases, load_runtime
    from tailor.serve.batching import score_texts
    from tailor.serve.models import resolve_model

    publish_copy(settings, head_artifact, "globex", "tweets")
    answers = {t.name: client.post("/v1/classifications", headers=t.headers,
                                   json={"model": "tweets", "input": TEXTS}).json()["data"] for t in (acme, globex)}
    services = app.state.services
    loaded = [services.models.classifier(resolve_model(services.registry, tenant, "tweets"))
              for tenant in ("acme", "globex")]
    assert loaded[0] is not loaded[1] and loaded[0].session is loaded[1].session  # one base graph, two heads
    assert len(services.models) == 2 and loaded[0].own_bytes < 10_000
    stand_alone = load_runtime(head_artifact[0], SharedBases(settings.home / "cache" / "onnx", threads=2))
    assert stand_alone.name == loaded[0].name == head_artifact[1].metrics["serving"]["runtime"]
    alone = score_texts(stand_alone, TEXTS).probs
    for tenant in ("acme", "globex"):
        served = np.array([[row["scores"][label] for label in loaded[0].labels] for row in answers[tenant]])
        assert served == pytest.approx(alone, abs=1e-5)


def publish_with_abstain(settings, head_artifact, name: str, record: dict | None):
    """A copy of the session's head version whose abstain record is ``record`` (None: no record at all)."""
    from dataclasses import replace

    source, version = head_artifact
    metrics = {k: v for k, v in version.metrics.items() if k != "abstain"} | ({"abstain": record} if record else {})
    return publish_copy(settings, (source, replace(version, metrics=metrics)), "acme", name)


def classify(client, tenant, **body):
    return client.post("/v1/classifications", headers=tenant.headers, json={"model": "tweets", "input": TEXTS} | body)


def test_a_trained_version_records_its_abstain_threshold(head_artifact):
    import json

    source, version = head_artifact
    record = version.metrics["abstain"]
    assert set(record) == {"target_precision", "rows", "accuracy_all", "reachable", "threshold", "answered",
                           "coverage", "accuracy", "note"}
    assert record["target_precision"] == 0.95 and record["rows"] == version.lineage["rows"]["valid"]
    assert json.loads((source / "abstain.json").read_text()) == record


def test_classifications_answer_everything_by_default(client, acme, tweets):
    body = classify(client, acme).json()
    assert set(body) == {"id", "object", "model", "data", "usage"}
    assert [set(row) for row in body["data"]] == [{"id", "index", "label", "score", "scores"}] * 2
    assert all(row["label"] in row["scores"] for row in body["data"])


def test_classifications_abstain_below_an_explicit_threshold(client, acme, tweets):
    plain = classify(client, acme).json()["data"]
    body = classify(client, acme, abstain_threshold=0.99).json()
    assert body["abstain_threshold"] == 0.99
    assert [{k: v for k, v in row.items() if k != "id"} for row in body["data"]] == [
        {"index": i, "label": None, "score": row["score"], "scores": row["scores"], "abstained": True,
         "reason": f"top probability {row['score']:.3f} is below the abstain threshold 0.990"}
        for i, row in enumerate(plain)]
    answered = classify(client, acme, abstain=True, abstain_threshold=0.0).json()["data"]
    assert [row | {"id": None} for row in answered] == [row | {"abstained": False, "id": None} for row in plain]


def test_classifications_abstain_at_the_versions_suggestion(client, acme, settings, head_artifact):
    publish_with_abstain(settings, head_artifact, "tweets", None)
    scores = sorted(row["score"] for row in classify(client, acme).json()["data"])
    middle = round((scores[0] + scores[1]) / 2, 6)
    publish_with_abstain(settings, head_artifact, "tweets", {"reachable": True, "threshold": middle})
    body = classify(client, acme, abstain=True).json()  # tweets@latest: version 2 with the record
    assert body["abstain_threshold"] == middle
    assert sorted(row["abstained"] for row in body["data"]) == [False, True]
    for row in body["data"]:
        assert (row["label"] is None) == row["abstained"] == (row["score"] < middle)
        assert ("reason" in row) == row["abstained"]
    assert set(classify(client, acme, abstain=False).json()) == {"id", "object", "model", "data", "usage"}


def test_abstain_needs_a_suggested_threshold(client, acme, settings, head_artifact):
    publish_with_abstain(settings, head_artifact, "tweets", None)
    error = error_of(classify(client, acme, abstain=True), 400)
    assert (error["param"], error["message"]) == (
        "abstain", 'abstain: tweets:1 records no abstain threshold (it was trained before Tailor suggested one); '
                   'give a threshold with "abstain_threshold"')
    publish_with_abstain(settings, head_artifact, "tweets", {"reachable": False, "note": "no threshold that keeps "
                         "at least 4 of 4 validation rows answered reaches 95% accuracy (best 75.0%)"})
    error = error_of(classify(client, acme, abstain=True), 400)
    assert error["message"] == (
        "abstain: tweets:2 has no suggested abstain threshold: no threshold that keeps at least 4 of 4 validation rows "
        'answered reaches 95% accuracy (best 75.0%); give a threshold with "abstain_threshold"')


@pytest.mark.parametrize("body, param, message", [
    ({"abstain_threshold": 1.5}, "abstain_threshold", "abstain_threshold: Input should be less than or equal to 1"),
    ({"abstain_threshold": -0.1}, "abstain_threshold",
     "abstain_threshold: Input should be greater than or equal to 0"),
    ({"abstain_threshold": "high"}, "abstain_threshold",
     "abstain_threshold: Input should be a valid number, unable to parse string as a number"),
    ({"abstain": "maybe"}, "abstain", "abstain: Input should be a valid boolean, unable to interpret input"),
    ({"abstain": False, "abstain_threshold": 0.5}, "abstain_threshold",
     'abstain_threshold: given with "abstain": false; leave one of them out'),
])
def test_bad_abstain_settings_are_refused(client, acme, tweets, body, param, message):
    error = error_of(classify(client, acme, **body), 400)
    assert (error["param"], error["message"]) == (param, message)
