"""Tailor's alias routes under ``/v1/models/{model_id}/aliases``: set, move, remove, list with history; scopes,
tenant isolation and every refusal with its status, message and param. Also ``GET /`` and deleting by
``name@latest``."""

from __future__ import annotations

import pytest

from tailor.registry.service import open_registry
from tailor.security.keys import TenantStore

from api_helpers import Tenant, error_of, publish_copy


@pytest.fixture(autouse=True)
def never_a_500(client):
    yield
    assert 'status="500"' not in client.get("/metrics").text


@pytest.fixture
def tweets(settings, head_artifact, acme):
    """acme's classifier ``tweets`` with versions 1 and 2, no aliases."""
    for _ in range(2):
        publish_copy(settings, head_artifact, "acme", "tweets")
    return "tweets"


def put_alias(client, tenant, alias, version, model="tweets"):
    return client.put(f"/v1/models/{model}/aliases/{alias}", headers=tenant.headers, json={"version": version})


def history_of(client, tenant, model="tweets") -> list[tuple]:
    body = client.get(f"/v1/models/{model}/aliases", headers=tenant.headers).json()
    return [(e["alias"], e["version"], e["action"]) for e in body["history"]]


def test_promote_move_roll_back_and_remove(client, acme, tweets):
    response = put_alias(client, acme, "production", 1)
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "model.alias", "model": "tweets", "alias": "production", "version": 1,
                               "candidate": None}
    assert put_alias(client, acme, "canary", 2).json()["version"] == 2
    assert put_alias(client, acme, "production", 2).json()["version"] == 2  # promote
    assert client.get("/v1/models/tweets@production", headers=acme.headers).json()["version"] == 2
    assert put_alias(client, acme, "production", 1).json()["version"] == 1  # roll back
    assert client.get("/v1/models/tweets@production", headers=acme.headers).json()["version"] == 1
    deleted = client.delete("/v1/models/tweets/aliases/canary", headers=acme.headers)
    assert deleted.json() == {"id": "tweets@canary", "object": "model.alias", "deleted": True}
    error_of(client.get("/v1/models/tweets@canary", headers=acme.headers), 404)

    listed = client.get("/v1/models/tweets/aliases", headers=acme.headers)
    assert listed.status_code == 200
    body = listed.json()
    assert (body["object"], body["model"]) == ("list", "tweets")
    assert body["data"] == [{"object": "model.alias", "model": "tweets", "alias": "production", "version": 1,
                             "candidate": None}]
    assert [(e["alias"], e["version"], e["action"]) for e in body["history"]] == [
        ("production", 1, "set"), ("canary", 2, "set"), ("production", 2, "set"), ("production", 1, "set"),
        ("canary", None, "unset")]
    stamps = [e["created_at"] for e in body["history"]]
    assert stamps == sorted(stamps) and all(isinstance(t, int) and t > 1_700_000_000 for t in stamps)


def test_deleting_a_version_shows_in_the_history(client, acme, tweets):
    put_alias(client, acme, "production", 2)
    assert client.delete("/v1/models/tweets:2", headers=acme.headers).status_code == 200
    assert history_of(client, acme) == [("production", 2, "set"), ("production", None, "version_deleted")]
    assert client.get("/v1/models/tweets/aliases", headers=acme.headers).json()["data"] == []


REFUSALS = [
    ("PUT", "tweets", "latest", {"version": 1}, 400,
     "alias 'latest' is reserved: it always means the highest version", "alias"),
    ("PUT", "tweets", "Prod", {"version": 1}, 400,
     "invalid alias 'Prod': use 1-32 lowercase letters, digits, '_' or '-', starting with a letter", "alias"),
    ("DELETE", "tweets", "latest", None, 400, "alias 'latest' is reserved: it always means the highest version",
     "alias"),
    ("PUT", "tweets", "production", {"version": 7}, 404, "version tweets:7 not found", "version"),
    ("PUT", "tweets", "production", {"version": 0}, 400, "version: Input should be greater than or equal to 1",
     "version"),
    ("PUT", "tweets", "production", {"version": "two"}, 400,
     "version: Input should be a valid integer, unable to parse string as an integer", "version"),
    ("PUT", "tweets", "production", {}, 400, "version: Field required", "version"),
    ("PUT", "tweets", "production", {"version": 1, "note": "x"}, 400, "note: unknown field", "note"),
    ("PUT", "tweets:1", "production", {"version": 1}, 400,
     "give the model's name (tweets), not a version or an alias", "model_id"),
    ("GET", "tweets@latest", None, None, 400, "give the model's name (tweets), not a version or an alias",
     "model_id"),
    ("PUT", "minilm-l6", "production", {"version": 1}, 400,
     "'minilm-l6' is a base model of the catalog; aliases name versions of fine-tuned models", "model_id"),
    ("PUT", "nope", "production", {"version": 1}, 404, "model 'nope' not found", None),
    ("GET", "nope", None, None, 404, "model 'nope' not found", None),
    ("GET", "Bad Name", None, None, 404,
     "model 'Bad Name' not found (invalid model reference 'Bad Name': expected NAME, NAME:VERSION or NAME@ALIAS "
     "(e.g. credit-risk, credit-risk:3, credit-risk@production, credit-risk@latest))", None),
    ("DELETE", "tweets", "canary", None, 404, "alias tweets@canary not found", "alias"),
]


@pytest.mark.parametrize("method, model, alias, body, status, message, param", REFUSALS,
                         ids=[f"{r[0]} {r[1]} {r[2]} {r[3]}" for r in REFUSALS])
def test_refusals_name_the_param(client, acme, tweets, method, model, alias, body, status, message, param):
    path = f"/v1/models/{model}/aliases" + (f"/{alias}" if alias else "")
    error = error_of(client.request(method, path, headers=acme.headers, json=body), status)
    assert (error["message"], error["param"]) == (message, param)
    assert history_of(client, acme) == []


def test_another_tenants_model_is_absent(client, acme, globex, tweets):
    put_alias(client, acme, "production", 1)
    for method, path, body in (("GET", "/v1/models/tweets/aliases", None),
                               ("PUT", "/v1/models/tweets/aliases/production", {"version": 2}),
                               ("DELETE", "/v1/models/tweets/aliases/production", None)):
        error = error_of(client.request(method, path, headers=globex.headers, json=body), 404)
        assert (error["message"], error["code"]) == ("model 'tweets' not found", "not_found"), (method, path)
    assert history_of(client, acme) == [("production", 1, "set")]


def test_setting_and_removing_need_the_deploy_scope(client, settings, acme, tweets):
    _, secret = TenantStore(settings.registry_url).create_key("acme", "reader", "read")
    reader = Tenant("acme", secret)
    for response in (put_alias(client, reader, "production", 1),
                     client.delete("/v1/models/tweets/aliases/production", headers=reader.headers)):
        error = error_of(response, 403)
        assert error["message"] == "this API key lacks the 'deploy' scope (it has: read)"
    assert client.get("/v1/models/tweets/aliases", headers=reader.headers).json()["history"] == []
    _, secret = TenantStore(settings.registry_url).create_key("acme", "release", "deploy")
    assert put_alias(client, Tenant("acme", secret), "production", 1).status_code == 200


def test_delete_by_latest_is_refused_not_a_whole_model(client, acme, tweets, settings):
    error = error_of(client.delete("/v1/models/tweets@latest", headers=acme.headers), 400)
    assert (error["message"], error["param"]) == ("delete 'tweets' or one version (tweets:N), not an alias",
                                                  "model_id")
    assert [v.version for v in open_registry(settings).store.list_versions("acme", "tweets")] == [1, 2]


def test_root_redirects_to_the_docs_and_is_not_in_the_spec(client):
    response = client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, "/console")
    assert "/" not in client.get("/openapi.json").json()["paths"]
    paths = client.get("/openapi.json").json()["paths"]
    assert sorted(paths["/v1/models/{model_id}/aliases/{alias}"]) == ["delete", "get", "put"]
    assert sorted(paths["/v1/models/{model_id}/aliases"]) == ["get"]
