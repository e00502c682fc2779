"""The API's audit trail: every state-changing request recorded (refused ones included) with its caller, route,
ids, address and result; inference left out; ``GET /v1/audit`` for a tenant's admins only."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api_helpers import Tenant, error_of, upload
from tailor.security.audit import AuditLog


def key_id(client, tenant: Tenant) -> str:
    [key] = [k for k in client.get("/v1/keys", headers=tenant.headers).json()["data"] if k["name"] == "default"]
    return key["id"]


def audit_rows(client, tenant: Tenant, **params) -> list[dict]:
    response = client.get("/v1/audit", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def brief(row: dict) -> tuple:
    return row["actor"], row["action"], row["target"], row["result"], row["error"]


def test_changes_are_recorded_with_actor_target_client_and_status(client, acme):
    me = key_id(client, acme)
    file_id = upload(client, acme).json()["id"]
    assert client.delete(f"/v1/files/{file_id}", headers=acme.headers).status_code == 200
    created = client.post("/v1/keys", headers=acme.headers, json={"name": "ci", "scopes": ["read"]}).json()
    assert client.post(f"/v1/keys/{created['id']}/revoke", headers=acme.headers).status_code == 200

    rows = audit_rows(client, acme)
    assert [brief(r) for r in rows] == [
        (me, "POST /v1/keys/{key_id}/revoke", {"key_id": created["id"]}, "200", None),
        (me, "POST /v1/keys", {"id": created["id"]}, "200", None),
        (me, "DELETE /v1/files/{file_id}", {"file_id": file_id}, "200", None),
        (me, "POST /v1/files", {"id": file_id}, "200", None),
    ]
    assert {(r["object"], r["tenant"], r["client"]) for r in rows} == {("audit.event", "acme", "testclient")}
    assert [r["seq"] for r in rows] == [4, 3, 2, 1]
    assert rows[0]["prev_hash"] == rows[1]["hash"] and rows[3]["prev_hash"] == "0" * 64
    assert created["secret"] not in str(rows)


def test_refused_requests_are_recorded_with_their_error(client, acme):
    me = key_id(client, acme)
    error_of(client.delete("/v1/files/file-nope", headers=acme.headers), 404)
    error_of(client.post("/v1/keys", headers=acme.headers, json={"name": "x", "scopes": ["root"]}), 400)
    error_of(client.post("/v1/keys?dry_run=1", headers=acme.headers, json={"name": "x", "scopes": ["read"]}), 400)
    assert [brief(r) for r in audit_rows(client, acme)] == [
        (me, "POST /v1/keys", {}, "400", "unknown query parameter 'dry_run' (this route takes: none)"),
        (me, "POST /v1/keys", {}, "400", "scopes.0: Input should be 'read', 'train', 'deploy' or 'admin'"),
        (me, "DELETE /v1/files/{file_id}", {"file_id": "file-nope"}, "404", "file 'file-nope' not found"),
    ]


def test_a_scope_refusal_names_the_key_and_an_unknown_key_is_anonymous(client, settings, acme):
    reader = client.post("/v1/keys", headers=acme.headers, json={"name": "r", "scopes": ["read"]}).json()
    error_of(client.delete("/v1/files/file-1", headers={"Authorization": f"Bearer {reader['secret']}"}), 403)
    error_of(client.post("/v1/keys", headers={"Authorization": "Bearer tk-not-a-key"}, json={}), 401)
    [refused, _created] = audit_rows(client, acme)
    assert brief(refused) == (reader["id"], "DELETE /v1/files/{file_id}", {"file_id": "file-1"}, "403",
                              "this API key lacks the 'train' scope (it has: read)")
    [anonymous] = [r for r in AuditLog(settings.registry_url).list(None)[0] if r.tenant is None]
    assert (anonymous.actor, anonymous.action, anonymous.result, anonymous.error) == (
        "anonymous", "POST /v1/keys", "401", "invalid API key")


def test_inference_and_read_only_computations_are_not_recorded(client, settings, acme):
    for path, body in (("/v1/classifications", {"model": "nope", "input": "hi"}),
                       ("/v1/embeddings", {"model": "nope", "input": "hi"}),
                       ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/completions", {"model": "nope", "prompt": "hi"}),
                       ("/v1/models/compare", {"a": "nope:1", "b": "nope:2"}),
                       ("/v1/fine_tuning/jobs/estimate", {"model": "minilm-l6", "training_file": "file-nope"})):
        assert client.post(path, headers=acme.headers, json=body).status_code in (400, 404), path
    assert client.get("/v1/files", headers=acme.headers).status_code == 200
    assert AuditLog(settings.registry_url).list(None) == ([], False)


def test_tenants_see_only_their_own_rows(client, acme, globex):
    upload(client, acme)
    upload(client, globex)
    error_of(client.delete("/v1/files/file-x", headers=globex.headers), 404)
    assert [(r["tenant"], r["action"]) for r in audit_rows(client, acme)] == [("acme", "POST /v1/files")]
    assert [(r["tenant"], r["action"]) for r in audit_rows(client, globex)] == [
        ("globex", "DELETE /v1/files/{file_id}"), ("globex", "POST /v1/files")]


def test_only_admin_keys_read_the_audit_log(client, acme):
    reader = client.post("/v1/keys", headers=acme.headers, json={"name": "r", "scopes": ["read", "train", "deploy"]})
    refused = client.get("/v1/audit", headers={"Authorization": f"Bearer {reader.json()['secret']}"})
    assert error_of(refused, 403)["message"] == "this API key lacks the 'admin' scope (it has: read, train, deploy)"


def test_filters_and_cursor(client, acme):
    for _ in range(3):
        upload(client, acme)
    error_of(client.delete("/v1/files/file-x", headers=acme.headers), 404)
    assert [r["seq"] for r in audit_rows(client, acme, action="POST /v1/files")] == [3, 2, 1]
    page = client.get("/v1/audit", headers=acme.headers, params={"limit": 2}).json()
    assert [r["seq"] for r in page["data"]] == [4, 3] and page["has_more"] is True
    page = client.get("/v1/audit", headers=acme.headers, params={"limit": 2, "after": 3}).json()
    assert [r["seq"] for r in page["data"]] == [2, 1] and page["has_more"] is False
    third = audit_rows(client, acme)[1]["at"]
    assert [r["seq"] for r in audit_rows(client, acme, since=third)] == [4, 3]
    assert audit_rows(client, acme, since="2999-01-01T00:00:00") == []
    assert error_of(client.get("/v1/audit", headers=acme.headers, params={"limit": 0}), 400)["param"] == "limit"
    assert error_of(client.get("/v1/audit", headers=acme.headers, params={"since": "yesterday"}), 400)["param"] \
        == "since"


def test_console_sign_in_changes_and_sign_out_are_recorded_as_console(client, settings, acme):
    me = key_id(client, acme)
    client.get("/console/sign-in")
    signed = client.post("/console/sign-in", data={"key": acme.key, "csrf": client.cookies["tailor_signin"],
                                                   "next": "/console"}, follow_redirects=False)
    assert signed.status_code == 303
    csrf = client.get("/console").text.split('name="csrf-token" content="')[1].split('"')[0]
    refused = client.post("/v1/keys", json={"name": "x", "scopes": ["read"]})  # no CSRF header
    assert refused.status_code == 403
    assert client.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    rows = AuditLog(settings.registry_url).list("acme")[0]
    assert [(r.actor, r.action, r.result) for r in rows] == [
        (f"console:{me}", "POST /console/sign-out", "303"),
        (f"console:{me}", "POST /v1/keys", "403"),
        (f"console:{me}", "POST /console/sign-in", "303"),
    ]


@pytest.mark.parametrize("proxies, peer, forwarded, expected", [
    ([], "10.0.0.2", "203.0.113.9", "10.0.0.2"),                         # no proxy trusted: the peer
    (["10.0.0.0/8"], "192.0.2.7", "203.0.113.9", "192.0.2.7"),           # an untrusted peer cannot claim another
    (["10.0.0.0/8"], "10.0.0.2", "203.0.113.9", "203.0.113.9"),          # the trusted proxy's word
    (["10.0.0.0/8"], "10.0.0.2", "198.51.100.1, 203.0.113.9, 10.0.0.3", "203.0.113.9"),  # nearest untrusted hop
    (["*"], "10.0.0.2", "198.51.100.1, 203.0.113.9", "198.51.100.1"),    # every hop trusted: the first
])
def test_the_client_address_believes_x_forwarded_for_only_from_trusted_proxies(settings, acme, proxies, peer,
                                                                              forwarded, expected):
    from tailor.serve.app import create_app

    app = create_app(settings.model_copy(update={"forwarded_allow_ips": proxies}))
    with TestClient(app, raise_server_exceptions=False, client=(peer, 40000)) as client:
        upload(client, acme).raise_for_status()
        client.headers["X-Forwarded-For"] = forwarded
        upload(client, acme).raise_for_status()
    rows = AuditLog(settings.registry_url).list("acme")[0]
    assert [r.client for r in rows] == [expected, peer]
