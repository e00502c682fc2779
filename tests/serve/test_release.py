"""Releasing through an alias over HTTP: a canary answers its share of requests, sticky by key; a shadow never
answers but its answers are recorded; promote and rollback change who answers; the history says who, when and
why; every refusal with its status and message; scopes, tenant isolation, and a second replica seeing changes.

The versions here answer one fixed label each (their head's weights zeroed, one bias raised), so a response's
label tells which version answered, as its ``x-tailor-version`` header says."""

from __future__ import annotations

import random
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from api_helpers import Tenant, error_of
from tailor.registry.entities import ModelVersion, Route
from tailor.security.keys import TenantStore
from tailor.serve.release import choose, route_point

TEXT = "Shares of the bank fell after the profit warning"
LABELS = ["bearish", "bullish", "neutral"]  # SMALL_CSV's labels, in the head's order


def publish_fixed(settings, head_artifact, tenant: str, name: str, label: int) -> ModelVersion:
    """Register a copy of the session's head version that answers ``LABELS[label]`` to every text."""
    import numpy as np
    from safetensors.numpy import save_file

    from tailor.registry.artifacts import MARKER
    from tailor.registry.service import open_registry

    source, version = head_artifact
    registry = open_registry(settings)
    with registry.artifacts.stage() as staged:
        shutil.copytree(source, staged, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER))
        bias = np.zeros(len(LABELS), dtype=np.float32)
        bias[label] = 10.0
        save_file({"weight": np.zeros((len(LABELS), 384), dtype=np.float32), "bias": bias},
                  str(staged / "head.safetensors"))
        return registry.publish_version(tenant, name, staged, task=version.task, base_model=version.base_model,
                                        method=version.method, params=version.params, metrics=version.metrics,
                                        lineage=version.lineage)


@pytest.fixture(autouse=True)
def never_a_500(client):
    yield
    assert 'status="500"' not in client.get("/metrics").text


@pytest.fixture
def tweets(settings, head_artifact, acme, client):
    """acme's ``tweets``: version N answers LABELS[N - 1]; ``tweets@prod`` points at version 1."""
    for label in range(3):
        publish_fixed(settings, head_artifact, "acme", "tweets", label)
    assert client.put("/v1/models/tweets/aliases/prod", headers=acme.headers, json={"version": 1}).status_code == 200
    return "tweets"


def classify(client, tenant, model="tweets@prod", user=None, key=None) -> tuple[str, str]:
    """``(x-tailor-version, label)`` of one classification."""
    body = {"model": model, "input": TEXT} | ({"user": user} if user else {})
    headers = tenant.headers | ({"X-Tailor-Route-Key": key} if key else {})
    response = client.post("/v1/classifications", headers=headers, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == model  # the id the client sent, whoever answered
    return response.headers["x-tailor-version"], response.json()["data"][0]["label"]


def release(client, tenant, action, body=None, alias="prod", model="tweets"):
    return client.post(f"/v1/models/{model}/aliases/{alias}/{action}", headers=tenant.headers, json=body)


def actor_of(settings, tenant: str) -> str:
    key = TenantStore(settings.registry_url).list_keys(tenant)[0]
    return f"{tenant}/{key.name} ({key.id})"


def test_a_canary_answers_its_share_sticky_by_user_or_route_key(client, acme, tweets):
    response = release(client, acme, "canary", {"version": 2, "share": 0.2, "reason": "try v2 on 20%"})
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "model.alias", "model": "tweets", "alias": "prod", "version": 1,
                               "candidate": {"version": 2, "mode": "canary", "share": 0.2}}
    assert client.get("/v1/models/tweets/aliases/prod", headers=acme.headers).json() == response.json()

    users = [f"user-{i}" for i in range(60)]
    candidate, current = ("tweets:2", "bullish"), ("tweets:1", "bearish")
    expected = {u: candidate if route_point("acme", "tweets", "prod", u) < 0.2 else current for u in users}
    assert sum(v == candidate for v in expected.values()) == 9  # 9 of the 60 users are in the canary
    assert {u: classify(client, acme, user=u) for u in users} == expected
    for u in users[:5]:  # sticky: the same key, the same version, by the body's user or the header
        assert classify(client, acme, user=u) == classify(client, acme, key=u) == expected[u]
    assert classify(client, acme, model="tweets:3") == ("tweets:3", "neutral")  # a version ref is never routed
    assert classify(client, acme, model="tweets") == ("tweets:3", "neutral")


def test_canary_shares_over_a_thousand_keys_and_random_draws():
    version = ModelVersion(1, "acme", "tweets", 1, "classify", "minilm-l6", "head", "x", {}, {}, {},
                           datetime.now(timezone.utc), ("prod",))
    candidate = ModelVersion(2, "acme", "tweets", 2, "classify", "minilm-l6", "head", "y", {}, {}, {},
                             datetime.now(timezone.utc), ())
    route = Route(version, alias="prod", candidate=candidate, mode="canary", share=0.2)
    keyed = [choose(route, "acme", "tweets@prod", f"key-{i}").answering.version.version for i in range(1000)]
    assert keyed.count(2) == 225 and abs(keyed.count(2) / 1000 - 0.2) <= 0.04  # the hash is fixed: 22.5%
    assert keyed == [choose(route, "acme", "tweets@prod", f"key-{i}").answering.version.version for i in range(1000)]
    other_tenant = [choose(route, "globex", "tweets@prod", f"key-{i}").answering.version.version for i in range(1000)]
    assert other_tenant != keyed  # the tenant is part of the hash: tenants' canaries are drawn apart
    draws = random.Random(0)
    drawn = [choose(route, "acme", "tweets@prod", None, draws.random).answering.version.version for _ in range(1000)]
    assert drawn.count(2) == 201 and abs(drawn.count(2) / 1000 - 0.2) <= 0.04
    assert choose(Route(version, alias="prod", candidate=candidate, mode="shadow"), "acme", "tweets@prod",
                  "key-1").shadow.version == candidate


def test_a_shadow_never_answers_and_its_answers_are_recorded(app, client, acme, tweets):
    services = app.state.services
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert release(client, acme, "shadow", {"version": 3}).json()["candidate"] == {
        "version": 3, "mode": "shadow", "share": None}
    responses = [client.post("/v1/classifications", headers=acme.headers,
                             json={"model": "tweets@prod", "input": [TEXT, "the stock jumped"], "user": f"u{i}"})
                 for i in range(8)]
    assert {(r.status_code, r.headers["x-tailor-version"]) for r in responses} == {(200, "tweets:1")}
    assert {item["label"] for r in responses for item in r.json()["data"]} == {"bearish"}
    assert services.shadow.wait_idle(60)
    services.recorder.flush()
    records = services.predictions.since(since)
    primary = [r for r in records if r.version == 1]
    shadow = [r for r in records if r.version == 3]
    assert (len(primary), len(shadow)) == (16, 16)
    assert {(r.model, r.model_name, r.label, r.details) for r in primary} == {
        ("tweets@prod", "tweets", "bearish", None)}
    assert {(r.model, r.model_name, r.label, str(r.details)) for r in shadow} == {
        ("tweets@prod", "tweets", "neutral", "{'shadow': True}")}
    assert sorted(r.request_id for r in shadow) == sorted(r.json()["id"] for r in responses for _ in range(2))
    assert {r.id for r in shadow}.isdisjoint(item["id"] for r in responses for item in r.json()["data"])
    assert services.shadow.outcomes == {"done": 8, "dropped": 0, "failed": 0}


def test_a_full_shadow_queue_drops_the_copy_never_the_request(app, client, acme, tweets):
    services = app.state.services
    release(client, acme, "shadow", {"version": 2})
    services.shadow.max_pending = 0
    assert classify(client, acme) == ("tweets:1", "bearish")
    assert services.shadow.outcomes == {"done": 0, "dropped": 1, "failed": 0}
    assert 'tailor_shadow_requests_total{outcome="dropped"} 1.0' in client.get("/metrics").text


def test_promote_then_rollback_change_who_answers_and_the_history_says_who_and_why(settings, client, acme, tweets):
    release(client, acme, "canary", {"version": 2, "share": 0.5})
    promoted = release(client, acme, "promote", {"reason": "v2 beats v1"})
    assert promoted.json() == {"object": "model.alias", "model": "tweets", "alias": "prod", "version": 2,
                               "candidate": None}
    assert {classify(client, acme, user=f"u{i}") for i in range(10)} == {("tweets:2", "bullish")}
    rolled = client.post("/v1/models/tweets/aliases/prod/rollback", headers=acme.headers)  # no body: no reason
    assert rolled.json()["version"] == 1
    assert {classify(client, acme, user=f"u{i}") for i in range(10)} == {("tweets:1", "bearish")}
    assert release(client, acme, "promote", {"version": 3}).json()["version"] == 3
    assert classify(client, acme) == ("tweets:3", "neutral")
    release(client, acme, "shadow", {"version": 2})
    assert release(client, acme, "abort", {"reason": "enough"}).json()["candidate"] is None
    deleted = client.delete("/v1/models/tweets/aliases/prod?reason=retired", headers=acme.headers)
    assert deleted.status_code == 200

    body = client.get("/v1/models/tweets/aliases", headers=acme.headers).json()
    actor = actor_of(settings, "acme")
    assert [(e["action"], e["version"], e["candidate"], e["actor"], e["reason"]) for e in body["history"]] == [
        ("set", 1, None, actor, None), ("canary", 1, {"version": 2, "mode": "canary", "share": 0.5}, actor, None),
        ("promote", 2, None, actor, "v2 beats v1"), ("rollback", 1, None, actor, None),
        ("promote", 3, None, actor, None), ("shadow", 3, {"version": 2, "mode": "shadow", "share": None}, actor, None),
        ("abort", 3, None, actor, "enough"), ("unset", None, None, actor, "retired")]
    assert actor.startswith("acme/default (key_")


REFUSALS = [
    ("canary", {"version": 2, "share": 1.5}, 400, "share: Input should be less than 1", "share"),
    ("canary", {"version": 2, "share": 0}, 400, "share: Input should be greater than 0", "share"),
    ("canary", {"version": 2}, 400, "share: Field required", "share"),
    ("canary", {"version": 1, "share": 0.1}, 409,
     "tweets@prod already points at tweets:1; a candidate must be another version", None),
    ("canary", {"version": 9, "share": 0.1}, 404, "version tweets:9 not found", "version"),
    ("shadow", {"version": 2, "share": 0.1}, 400, "share: unknown field", "share"),
    ("shadow", {"version": 2, "reason": "x" * 1001}, 400, "reason: String should have at most 1000 characters",
     "reason"),
    ("promote", None, 409, "tweets@prod has no candidate to promote: start a canary or a shadow first, or give the "
                           "version to promote", None),
    ("promote", {"version": 1}, 409, "tweets@prod already points at tweets:1", None),
    ("rollback", {}, 409, "tweets@prod has no earlier version to roll back to", None),
    ("abort", None, 409, "tweets@prod has no canary or shadow to stop", None),
]


@pytest.mark.parametrize("action, body, status, message, param", REFUSALS,
                         ids=[f"{r[0]} {r[1]}"[:60] for r in REFUSALS])
def test_refusals_say_why_and_change_nothing(client, acme, tweets, action, body, status, message, param):
    error = error_of(release(client, acme, action, body), status)
    assert (error["message"], error["param"]) == (message, param)
    history = client.get("/v1/models/tweets/aliases", headers=acme.headers).json()["history"]
    assert [e["action"] for e in history] == ["set"]


@pytest.mark.parametrize("path, status, message, param", [
    ("/v1/models/tweets/aliases/beta/promote", 404, "alias tweets@beta not found", "alias"),
    ("/v1/models/tweets/aliases/latest/rollback", 400, "alias 'latest' is reserved: it always means the highest "
                                                       "version", "alias"),
    ("/v1/models/tweets:1/aliases/prod/rollback", 400, "give the model's name (tweets), not a version or an alias",
     "model_id"),
    ("/v1/models/minilm-l6/aliases/prod/abort", 400,
     "'minilm-l6' is a base model of the catalog; aliases name versions of fine-tuned models", "model_id"),
])
def test_a_bad_model_or_alias_is_refused(client, acme, tweets, path, status, message, param):
    error = error_of(client.post(path, headers=acme.headers), status)
    assert (error["message"], error["param"]) == (message, param)


def test_another_tenant_reaches_none_of_it(client, acme, globex, tweets):
    release(client, acme, "canary", {"version": 2, "share": 0.5})
    calls = [("GET", "/v1/models/tweets/aliases/prod", None),
             ("POST", "/v1/models/tweets/aliases/prod/canary", {"version": 3, "share": 0.1}),
             ("POST", "/v1/models/tweets/aliases/prod/shadow", {"version": 3}),
             ("POST", "/v1/models/tweets/aliases/prod/promote", None),
             ("POST", "/v1/models/tweets/aliases/prod/rollback", None),
             ("POST", "/v1/models/tweets/aliases/prod/abort", None)]
    for method, path, body in calls:
        error = error_of(client.request(method, path, headers=globex.headers, json=body), 404)
        assert (error["message"], error["code"]) == ("model 'tweets' not found", "not_found"), path
    error = error_of(client.post("/v1/classifications", headers=globex.headers,
                                 json={"model": "tweets@prod", "input": TEXT}), 404)
    assert error["message"] == "model 'tweets' not found"
    alias = client.get("/v1/models/tweets/aliases/prod", headers=acme.headers).json()
    assert (alias["version"], alias["candidate"]) == (1, {"version": 2, "mode": "canary", "share": 0.5})


def test_releases_need_the_deploy_scope_and_reading_the_read_scope(settings, client, acme, tweets):
    _, secret = TenantStore(settings.registry_url).create_key("acme", "reader", "read")
    reader = Tenant("acme", secret)
    for action, body in (("canary", {"version": 2, "share": 0.5}), ("shadow", {"version": 2}), ("promote", None),
                         ("rollback", None), ("abort", None)):
        error = error_of(release(client, reader, action, body), 403)
        assert error["message"] == "this API key lacks the 'deploy' scope (it has: read)"
    assert client.get("/v1/models/tweets/aliases/prod", headers=reader.headers).json()["candidate"] is None
    _, secret = TenantStore(settings.registry_url).create_key("acme", "release-bot", "deploy")
    assert release(client, Tenant("acme", secret), "shadow", {"version": 2}).status_code == 200


def test_a_second_replica_sees_each_change_on_its_next_request(settings, client, acme, tweets):
    from tailor.serve.app import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as replica:
        assert classify(replica, acme) == ("tweets:1", "bearish")
        release(client, acme, "promote", {"version": 2})
        assert classify(replica, acme) == ("tweets:2", "bullish")
        release(client, acme, "rollback")
        assert classify(replica, acme) == ("tweets:1", "bearish")
        release(client, acme, "canary", {"version": 3, "share": 0.99})
        keys = [k for k in (f"k{i}" for i in range(50)) if route_point("acme", "tweets", "prod", k) < 0.99][:3]
        assert [classify(replica, acme, key=k) for k in keys] == [("tweets:3", "neutral")] * 3


def test_the_openapi_spec_lists_the_release_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for action in ("canary", "shadow", "promote", "rollback", "abort"):
        assert sorted(paths[f"/v1/models/{{model_id}}/aliases/{{alias}}/{action}"]) == ["post"]
    headers = [p["name"] for p in paths["/v1/classifications"]["post"]["parameters"]]
    assert headers == ["X-Tailor-Route-Key"]


def test_chat_models_canary_by_user_and_refuse_a_shadow(settings, chat_artifact, client, acme):
    from api_helpers import publish_copy

    for version in (1, 2):
        publish_copy(settings, chat_artifact, "acme", "reviews")
        client.post(f"/v1/models/reviews:{version}/load", headers=acme.headers)
    client.put("/v1/models/reviews/aliases/prod", headers=acme.headers, json={"version": 1})
    error = error_of(release(client, acme, "shadow", {"version": 2}, model="reviews"), 400)
    assert error["message"] == "shadow is for classifiers: reviews:2 is a chat model; try it out with a canary instead"
    assert release(client, acme, "canary", {"version": 2, "share": 0.5}, model="reviews").status_code == 200
    users = {v: next(f"u{i}" for i in range(100) if (route_point("acme", "reviews", "prod", f"u{i}") < 0.5) == (v == 2))
             for v in (1, 2)}
    for version, user in users.items():
        body = {"model": "reviews@prod", "messages": [{"role": "user", "content": "the lamp is great"}],
                "max_tokens": 2, "user": user}
        answer = client.post("/v1/chat/completions", headers=acme.headers, json=body)
        assert (answer.status_code, answer.headers["x-tailor-version"], answer.json()["model"]) == (
            200, f"reviews:{version}", "reviews@prod"), answer.text
        streamed = client.post("/v1/chat/completions", headers=acme.headers, json=body | {"stream": True})
        assert (streamed.status_code, streamed.headers["x-tailor-version"]) == (200, f"reviews:{version}")
