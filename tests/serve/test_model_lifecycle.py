"""The inference cache's lifecycle through the API: loading → ready, LRU eviction, a failed load (errored,
503 with Retry-After, then retried), warm-up with POST /load, and what /metrics reports of it."""

from __future__ import annotations

import shutil

import pytest

from api_helpers import publish_copy

TEXTS = ["Stocks rally as earnings beat forecasts", "Shares plunge after the profit warning"]


@pytest.fixture
def settings(fresh_home, db_url):
    from tailor.settings import Settings

    return Settings(home=fresh_home, database_url=db_url, adapter_cache_size=2)


def classify(client, tenant, model: str):
    return client.post("/v1/classifications", headers=tenant.headers, json={"model": model, "input": TEXTS})


def test_a_model_goes_from_not_loaded_to_ready_and_reports_its_runtime(client, settings, head_artifact, acme):
    publish_copy(settings, head_artifact, "acme", "tweets")
    status = client.get("/v1/models/tweets/status", headers=acme.headers).json()
    assert status == {"id": "tweets", "object": "model.status", "state": "not_loaded", "kind": None, "runtime": None,
                      "load_seconds": None, "loads": 0, "own_bytes": 0, "error": None,
                      "serving": head_artifact[1].metrics.get("serving")}
    loaded = client.post("/v1/models/tweets/load", headers=acme.headers)
    assert loaded.status_code == 200, loaded.text
    status = loaded.json()
    assert (status["state"], status["kind"], status["loads"]) == ("ready", "head", 1)
    assert status["runtime"] == head_artifact[1].metrics["serving"]["runtime"]
    assert 0 < status["load_seconds"] < 60 and 0 < status["own_bytes"] < 100_000  # a head is a few KB
    assert classify(client, acme, "tweets").status_code == 200
    assert client.get("/v1/models/tweets/status", headers=acme.headers).json()["loads"] == 1  # no reload


def test_the_least_recently_used_version_is_evicted_and_reloaded_on_demand(client, app, settings, head_artifact,
                                                                          acme):
    for name in ("a", "b", "c"):
        publish_copy(settings, head_artifact, "acme", name)
    for name in ("a", "b", "a", "c"):  # c pushes out b, the least recently used of a and b
        assert classify(client, acme, name).status_code == 200
    states = {n: client.get(f"/v1/models/{n}/status", headers=acme.headers).json()["state"] for n in "abc"}
    assert states == {"a": "ready", "b": "evicted", "c": "ready"}
    assert classify(client, acme, "b").status_code == 200
    status = client.get("/v1/models/b/status", headers=acme.headers).json()
    assert (status["state"], status["loads"]) == ("ready", 2)
    assert app.state.services.models.counts() == {("head", "ready"): 2, ("head", "evicted"): 1}
    text = client.get("/metrics").text
    assert 'tailor_model_evictions_total{kind="head"} 2.0' in text  # b, then a (b came back)
    assert 'tailor_model_loads_total{kind="head"} 4.0' in text
    assert 'tailor_model_load_seconds_count{kind="head"} 4.0' in text
    assert 'tailor_models{kind="head",state="ready"} 2.0' in text
    assert 'tailor_models{kind="head",state="evicted"} 1.0' in text
    assert "tailor_batch_texts_count 5.0" in text and "tailor_batch_texts_sum 10.0" in text


def test_a_model_that_fails_to_load_is_errored_answers_503_and_is_retried_later(client, app, settings,
                                                                                head_artifact, acme):
    version = publish_copy(settings, head_artifact, "acme", "broken")
    directory = app.state.services.registry.artifact_dir(version)
    (directory / "head.safetensors").write_bytes(b"not a safetensors file")
    first = classify(client, acme, "broken")
    assert first.status_code == 503, first.text
    error = first.json()["error"]
    assert error["code"] == "unavailable" and error["message"].startswith("the model could not be loaded: ")
    assert first.headers["Retry-After"] == "10"
    again = classify(client, acme, "broken")  # answered from the errored entry, no second load
    assert again.status_code == 503 and int(again.headers["Retry-After"]) <= 10
    status = client.get("/v1/models/broken/status", headers=acme.headers).json()
    assert status["state"] == "errored" and status["error"] == error["message"]
    assert 'tailor_model_load_errors_total{kind="head"} 1.0' in client.get("/metrics").text
    shutil.copy(head_artifact[0] / "head.safetensors", directory / "head.safetensors")  # the operator repairs it
    app.state.services.models.retry_s = 0
    assert classify(client, acme, "broken").status_code == 200
    assert client.get("/v1/models/broken/status", headers=acme.headers).json()["state"] == "ready"


def test_load_needs_the_deploy_scope_and_status_another_tenants_model_is_404(client, settings, head_artifact, acme,
                                                                            globex):
    from tailor.security.keys import TenantStore

    publish_copy(settings, head_artifact, "acme", "tweets")
    _, reader = TenantStore(settings.registry_url).create_key("acme", "reader", ["read"])
    denied = client.post("/v1/models/tweets/load", headers={"Authorization": f"Bearer {reader}"})
    assert denied.status_code == 403
    assert client.get("/v1/models/tweets/status", headers=globex.headers).status_code == 404
