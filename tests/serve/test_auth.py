"""API keys and scopes on every route, and tenant isolation: globex never sees, changes or uses acme's objects."""

from __future__ import annotations

import pytest

from tailor.catalog import CATALOG
from tailor.security.keys import TenantStore

from api_helpers import Tenant, error_of, publish_copy, upload

MISSING = "missing API key: send the header 'Authorization: Bearer <key>'"


@pytest.fixture
def reader(settings, acme) -> Tenant:
    """A read-only key of acme."""
    _, secret = TenantStore(settings.registry_url).create_key("acme", "reader", "read")
    return Tenant("acme", secret)


@pytest.fixture
def acme_objects(client, acme) -> dict:
    file_id = upload(client, acme).json()["id"]
    job = client.post("/v1/fine_tuning/jobs", headers=acme.headers,
                      json={"model": "minilm-l6", "training_file": file_id, "suffix": "tweets"}).json()
    return {"file": file_id, "job": job["id"]}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}])
def test_missing_key(client, headers):
    response = client.get("/v1/files", headers=headers)
    error = error_of(response, 401)
    assert (error["message"], error["type"], error["code"]) == (MISSING, "authentication_error", "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_key(client, acme):
    error = error_of(client.get("/v1/models", headers={"Authorization": "Bearer tk-nope"}), 401)
    assert (error["message"], error["type"]) == ("invalid API key", "authentication_error")


def test_revoked_key(client, settings, acme):
    tenants = TenantStore(settings.registry_url)
    key, secret = tenants.create_key("acme", "ci", "read")
    assert client.get("/v1/files", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    tenants.revoke_key(key.id)
    error = error_of(client.get("/v1/files", headers={"Authorization": f"Bearer {secret}"}), 401)
    assert error["message"] == f"API key {secret[:10]}... was revoked"
    assert client.get("/v1/files", headers=acme.headers).status_code == 200


@pytest.mark.parametrize("method, path, scope", [
    ("POST", "/v1/files", "train"),
    ("POST", "/v1/fine_tuning/jobs", "train"),
    ("POST", "/v1/fine_tuning/jobs/{job}/cancel", "train"),
    ("POST", "/v1/fine_tuning/jobs/{job}/pause", "train"),
    ("POST", "/v1/fine_tuning/jobs/{job}/resume", "train"),
    ("DELETE", "/v1/files/{file}", "train"),
    ("DELETE", "/v1/models/x", "deploy"),
])
def test_read_only_key_cannot_change_anything(client, acme, reader, acme_objects, method, path, scope):
    body = {"model": "minilm-l6", "training_file": acme_objects["file"]} if path == "/v1/fine_tuning/jobs" else None
    response = client.request(method, path.format(**acme_objects), headers=reader.headers, json=body)
    error = error_of(response, 403)
    assert error["message"] == f"this API key lacks the '{scope}' scope (it has: read)"
    assert (error["type"], error["code"]) == ("permission_error", "insufficient_scope")
    job = client.get(f"/v1/fine_tuning/jobs/{acme_objects['job']}", headers=acme.headers).json()
    assert job["status"] == "queued"
    assert len(client.get("/v1/files", headers=acme.headers).json()["data"]) == 1
    assert len(client.get("/v1/fine_tuning/jobs", headers=acme.headers).json()["data"]) == 1


READ_ROUTES = ["/v1/files", "/v1/files/{file}", "/v1/files/{file}/content", "/v1/files/{file}/report",
               "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/{job}", "/v1/fine_tuning/jobs/{job}/events",
               "/v1/fine_tuning/jobs/{job}/checkpoints", "/v1/models", "/v1/models/minilm-l6"]


def test_read_only_key_can_read(client, reader, acme_objects):
    statuses = {path: client.get(path.format(**acme_objects), headers=reader.headers).status_code
                for path in READ_ROUTES}
    assert statuses == {path: 200 for path in READ_ROUTES}


TENANT_ROUTES = [
    ("GET", "/v1/files/{file}", "file {file!r} not found"),
    ("DELETE", "/v1/files/{file}", "file {file!r} not found"),
    ("GET", "/v1/files/{file}/content", "file {file!r} not found"),
    ("GET", "/v1/files/{file}/report", "file {file!r} not found"),
    ("GET", "/v1/fine_tuning/jobs/{job}", "fine-tuning job {job!r} not found"),
    ("GET", "/v1/fine_tuning/jobs/{job}/events", "fine-tuning job {job!r} not found"),
    ("GET", "/v1/fine_tuning/jobs/{job}/checkpoints", "fine-tuning job {job!r} not found"),
    ("POST", "/v1/fine_tuning/jobs/{job}/cancel", "fine-tuning job {job!r} not found"),
    ("POST", "/v1/fine_tuning/jobs/{job}/pause", "fine-tuning job {job!r} not found"),
    ("POST", "/v1/fine_tuning/jobs/{job}/resume", "fine-tuning job {job!r} not found"),
]


def test_other_tenant_gets_404_on_every_route(client, acme, globex, acme_objects):
    for method, path, message in TENANT_ROUTES:
        response = client.request(method, path.format(**acme_objects), headers=globex.headers)
        error = error_of(response, 404)
        assert error == {"message": message.format(**acme_objects), "type": "invalid_request_error", "param": None,
                         "code": "not_found"}, (method, path)
    # acme's objects are untouched
    assert client.get(f"/v1/files/{acme_objects['file']}", headers=acme.headers).status_code == 200
    job = client.get(f"/v1/fine_tuning/jobs/{acme_objects['job']}", headers=acme.headers).json()
    assert job["status"] == "queued"
    events = client.get(f"/v1/fine_tuning/jobs/{acme_objects['job']}/events", headers=acme.headers).json()
    assert [e["message"] for e in events["data"]] == ["Job queued",
                                                      f"Validated training file: {acme_objects['file']}"]


def test_other_tenant_lists_only_its_own(client, acme, globex, acme_objects):
    own_file = upload(client, globex).json()["id"]
    files = client.get("/v1/files", headers=globex.headers).json()
    assert [f["id"] for f in files["data"]] == [own_file]
    assert client.get("/v1/fine_tuning/jobs", headers=globex.headers).json()["data"] == []
    assert error_of(client.get("/v1/files", headers=globex.headers, params={"after": acme_objects["file"]}),
                    404)["message"] == f"file {acme_objects['file']!r} not found"
    assert error_of(client.get("/v1/fine_tuning/jobs", headers=globex.headers, params={"after": acme_objects["job"]}),
                    404)["message"] == f"fine-tuning job {acme_objects['job']!r} not found"


def test_other_tenant_cannot_train_on_acmes_file(client, globex, acme_objects):
    response = client.post("/v1/fine_tuning/jobs", headers=globex.headers,
                           json={"model": "minilm-l6", "training_file": acme_objects["file"]})
    error = error_of(response, 400)
    assert error["message"] == f"training_file {acme_objects['file']!r} not found; upload it with POST /v1/files"
    assert (error["param"], error["code"]) == ("training_file", "file_not_found")
    response = client.post("/v1/fine_tuning/jobs", headers=globex.headers,
                           json={"model": "minilm-l6", "training_file": upload(client, globex).json()["id"],
                                 "validation_file": acme_objects["file"]})
    assert error_of(response, 400)["param"] == "validation_file"
    assert client.get("/v1/fine_tuning/jobs", headers=globex.headers).json()["data"] == []


def test_other_tenant_never_sees_registered_models(client, settings, acme, globex, head_artifact):
    publish_copy(settings, head_artifact, "acme", "tweets")
    mine = client.get("/v1/models/tweets", headers=acme.headers)
    assert mine.status_code == 200 and mine.json()["owned_by"] == "acme"

    for ref in ("tweets", "tweets:1", "tweets@latest"):
        error = error_of(client.get(f"/v1/models/{ref}", headers=globex.headers), 404)
        assert error["message"] == "model 'tweets' not found"
    error_of(client.delete("/v1/models/tweets", headers=globex.headers), 404)
    error_of(client.delete("/v1/models/tweets:1", headers=globex.headers), 404)
    classified = client.post("/v1/classifications", headers=globex.headers, json={"model": "tweets", "input": "up"})
    assert error_of(classified, 404)["message"] == "model 'tweets' not found"
    embedded = client.post("/v1/embeddings", headers=globex.headers, json={"model": "tweets", "input": "up"})
    assert error_of(embedded, 404)["message"] == "model 'tweets' not found"

    listing = client.get("/v1/models", headers=globex.headers).json()
    assert [m["id"] for m in listing["data"]] == list(CATALOG)
    assert {m["owned_by"] for m in listing["data"]} == {"tailor"}
    assert [m["id"] for m in client.get("/v1/models", headers=acme.headers).json()["data"]] == [*CATALOG, "tweets"]
    # still there for acme after globex's attempts
    assert client.get("/v1/models/tweets:1", headers=acme.headers).json()["version"] == 1
    ok = client.post("/v1/classifications", headers=acme.headers, json={"model": "tweets", "input": "up"})
    assert ok.status_code == 200
