"""``/v1/keys`` and ``/v1/usage``: an admin key lists, creates and revokes its tenant's keys and reads its usage;
other keys are refused, another tenant's key id is not found, and a revoked key is refused at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tailor.db import now
from tailor.monitor.records import PredictionRecord, PredictionStore
from tailor.security.keys import TenantStore

from api_helpers import Tenant, error_of, upload


@pytest.fixture
def reader(settings, acme) -> Tenant:
    _, secret = TenantStore(settings.registry_url).create_key("acme", "dashboard", "read,deploy")
    return Tenant("acme", secret)


def test_create_list_and_revoke_a_key(client, acme):
    created = client.post("/v1/keys", headers=acme.headers, json={"name": " ci runner ", "scopes": ["train", "read"]})
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == {"id", "object", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at",
                         "expires_at", "secret"}
    assert (body["object"], body["name"], body["scopes"], body["last_used_at"], body["revoked_at"]) == (
        "api_key", "ci runner", ["read", "train"], None, None)
    assert body["secret"].startswith("tk-") and body["secret"][:10] == body["prefix"]
    new = {"Authorization": f"Bearer {body['secret']}"}
    assert client.get("/v1/files", headers=new).status_code == 200

    listed = client.get("/v1/keys", headers=acme.headers).json()
    assert listed["object"] == "list"
    assert [(k["name"], k["scopes"], "secret" in k) for k in listed["data"]] == [
        ("default", ["read", "train", "deploy", "admin"], False), ("ci runner", ["read", "train"], False)]
    assert listed["data"][1]["last_used_at"] is not None  # it was just used

    revoked = client.post(f"/v1/keys/{body['id']}/revoke", headers=acme.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert error_of(client.get("/v1/files", headers=new), 401)["message"].endswith("was revoked")
    again = client.post(f"/v1/keys/{body['id']}/revoke", headers=acme.headers).json()
    assert again["revoked_at"] == revoked.json()["revoked_at"]  # revoking again changes nothing


def test_only_an_admin_key_manages_keys(client, acme, reader):
    for response in (client.get("/v1/keys", headers=reader.headers),
                     client.post("/v1/keys", headers=reader.headers, json={"name": "x", "scopes": ["admin"]}),
                     client.post("/v1/keys/key_0/revoke", headers=reader.headers),
                     client.get("/v1/usage", headers=reader.headers)):
        assert error_of(response, 403)["message"] == ("this API key lacks the 'admin' scope (it has: read, deploy)")
    assert error_of(client.get("/v1/keys"), 401)["code"] == "invalid_api_key"


def test_another_tenants_key_is_not_found_and_stays_active(client, acme, globex, settings):
    globex_key = TenantStore(settings.registry_url).list_keys("globex")[0]
    error = error_of(client.post(f"/v1/keys/{globex_key.id}/revoke", headers=acme.headers), 404)
    assert error["message"] == f"API key {globex_key.id!r} not found"
    assert client.get("/v1/files", headers=globex.headers).status_code == 200
    assert [k["name"] for k in client.get("/v1/keys", headers=globex.headers).json()["data"]] == ["default"]
    assert len(client.get("/v1/keys", headers=acme.headers).json()["data"]) == 1


def test_a_key_created_with_a_lifetime_says_when_it_expires(client, acme):
    body = client.post("/v1/keys", headers=acme.headers,
                       json={"name": "contractor", "scopes": ["read"], "expires_in_days": 7}).json()
    assert body["expires_at"] - body["created_at"] in (7 * 86400, 7 * 86400 - 1)  # whole seconds of each
    assert client.get("/v1/keys", headers=acme.headers).json()["data"][1]["expires_at"] == body["expires_at"]
    assert client.get("/v1/keys", headers=acme.headers).json()["data"][0]["expires_at"] is None


@pytest.mark.parametrize("body, param, message", [
    ({"name": "x", "scopes": ["read"], "expires_in_days": 0}, "expires_in_days", "Input should be greater than 0"),
    ({"name": "x", "scopes": ["root"]}, "scopes.0", "Input should be 'read', 'train', 'deploy' or 'admin'"),
    ({"name": "x", "scopes": []}, "scopes", "List should have at least 1 item after validation, not 0"),
    ({"name": "   ", "scopes": ["read"]}, "name", "name: give the key a name (what it is for)"),
    ({"name": "x", "scopes": ["read"], "tenant": "globex"}, "tenant", "tenant: unknown field"),
])
def test_a_bad_create_request_names_its_field(client, acme, body, param, message):
    error = error_of(client.post("/v1/keys", headers=acme.headers, json=body), 400)
    assert error["param"] == param and message in error["message"]


def add_jobs(settings) -> None:
    """acme: a job that ran 90 s, one queued, one from 40 days ago; globex: one queued."""
    from sqlalchemy import text

    from tailor.db import open_engine
    from tailor.jobs.store import JobStore

    jobs = JobStore(settings.registry_url)
    spec = {"model": "minilm-l6", "task": "classify", "training_file": "file-1", "validation_file": None,
            "suffix": None, "seed": 0, "request": {}}
    ran, _, old = (jobs.create("acme", **spec) for _ in range(3))
    jobs.create("globex", **spec)
    assert jobs.claim("w1").id == ran.id
    jobs.finish(ran.id, "w1", "succeeded", message="done")
    with open_engine(settings.registry_url).begin() as conn:
        conn.execute(text("UPDATE jobs SET started_at = :a, finished_at = :b WHERE id = :id"),
                     {"a": now() - timedelta(minutes=5), "b": now() - timedelta(minutes=5) + timedelta(seconds=90),
                      "id": ran.id})
        conn.execute(text("UPDATE jobs SET created_at = :c WHERE id = :id"),
                     {"c": now() - timedelta(days=40), "id": old.id})


def test_usage_counts_the_tenants_records_jobs_files_and_models(client, acme, globex, settings, head_artifact):
    from api_helpers import publish_copy

    # The recorder prunes records past the tenant's retention when the app starts, at a moment of its own:
    # acme keeps its records 90 days, so the 40-day-old one stays whenever that prune runs.
    TenantStore(settings.registry_url).set_retention("acme", 90, None)
    store = PredictionStore(settings.registry_url)
    old = now() - timedelta(days=40)
    store.add([
        PredictionRecord(id="pred-1", tenant="acme", kind="classification", model="tweets", model_name="tweets",
                         version=1, request_id="clf-a", prompt_tokens=7),
        PredictionRecord(id="pred-2", tenant="acme", kind="classification", model="tweets", model_name="tweets",
                         version=1, request_id="clf-a", prompt_tokens=5),
        PredictionRecord(id="pred-3", tenant="acme", kind="classification", model="tweets@prod", model_name="tweets",
                         version=1, request_id="clf-b", prompt_tokens=4),
        PredictionRecord(id="chatcmpl-1", tenant="acme", kind="chat.completion", model="smol", model_name="smol",
                         version=None, request_id="chatcmpl-1", prompt_tokens=20, completion_tokens=9),
        PredictionRecord(id="err-1", tenant="acme", kind="error", model="tweets", model_name="tweets", version=1),
        PredictionRecord(id="pred-old", tenant="acme", kind="classification", model="tweets", model_name="tweets",
                         version=1, request_id="clf-old", created_at=old, prompt_tokens=100),
        PredictionRecord(id="pred-g", tenant="globex", kind="classification", model="tweets", model_name="tweets",
                         version=1, request_id="clf-g", prompt_tokens=100),
    ])
    add_jobs(settings)
    assert upload(client, acme).status_code == 200
    version = publish_copy(settings, head_artifact, "acme", "tweets")
    response = client.get("/v1/usage", headers=acme.headers)
    assert response.status_code == 200, response.text
    usage = response.json()
    assert (usage["object"], usage["days"], usage["recording"], usage["records_kept_days"]) == ("usage", 30, True, 90)
    assert usage["until"] - usage["since"] == 30 * 86400
    assert usage["models"] == [
        {"model": "smol", "kind": "chat.completion", "requests": 1, "answers": 1, "prompt_tokens": 20,
         "completion_tokens": 9},
        {"model": "tweets", "kind": "classification", "requests": 2, "answers": 3, "prompt_tokens": 16,
         "completion_tokens": 0},
        {"model": "tweets", "kind": "error", "requests": 1, "answers": 1, "prompt_tokens": 0, "completion_tokens": 0}]
    assert usage["jobs"] == {"created": 2, "by_status": {"queued": 1, "succeeded": 1}, "finished": 1,
                             "run_seconds": 90.0}
    files = client.get("/v1/files", headers=acme.headers).json()["data"]
    assert usage["files"] == {"count": 1, "bytes": files[0]["bytes"]}
    artifact = settings.artifacts_dir / version.artifact_path
    size = sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file())
    assert usage["stored_models"] == {"models": 1, "versions": 1, "bytes": size} and size > 10_000
    week = client.get("/v1/usage?days=60", headers=acme.headers).json()["models"]
    assert [(m["model"], m["kind"], m["requests"]) for m in week][1] == ("tweets", "classification", 3)
    assert client.get("/v1/usage", headers=globex.headers).json()["models"][0]["prompt_tokens"] == 100


def test_usage_says_when_recording_is_off_and_how_long_records_are_kept(fresh_home):
    from fastapi.testclient import TestClient

    from tailor.serve.app import create_app
    from tailor.settings import Settings

    settings = Settings(home=fresh_home, record_predictions=False)
    tenants = TenantStore(settings.registry_url)
    _, secret = tenants.create_tenant("initech")
    tenants.set_retention("initech", 7, None)
    with TestClient(create_app(settings)) as client:
        usage = client.get("/v1/usage", headers={"Authorization": f"Bearer {secret}"}).json()
    assert (usage["recording"], usage["records_kept_days"], usage["models"]) == (False, 7, [])
