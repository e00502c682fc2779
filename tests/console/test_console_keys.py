"""The Keys page: the tenant's keys with create (secret once) and revoke, and its usage, for an admin key only;
in both languages, escaped, tenant-isolated, and a revoked own key signing the user out."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from tailor.db import now
from tailor.monitor.records import PredictionRecord, PredictionStore
from tailor.security.keys import TenantStore

from console.conftest import sign_in


def keys_table(html: str) -> str:
    return re.search(r'<table id="keys".*?</table>', html, re.S).group(0)


def test_an_admin_sees_the_keys_with_their_scopes_and_its_own_marked(console, settings):
    store = TenantStore(settings.registry_url)
    store.create_key("acme", "<script>alert(1)</script>", "read")
    revoked, _ = store.create_key("acme", "old laptop", "read,train")
    store.revoke_key(revoked.id)
    html = console.get("/console/keys?lang=en").text
    assert "<title>API keys and usage · Tailor</title>" in html and "/console/static/keys.js" in html
    table = keys_table(html)
    names = re.findall(r'<tr data-key-id="key_[0-9a-f]+" data-key-name="([^"]*)">', table)
    assert names == ["default", "&lt;script&gt;alert(1)&lt;/script&gt;", "old laptop"]
    assert "<script>alert(1)</script>" not in html
    own = store.list_keys("acme")[0]
    first = re.search(rf'<tr data-key-id="{own.id}".*?</tr>', table, re.S).group(0)
    assert "<td>default <strong class=\"own\">(this session)</strong></td>" in first
    assert f"<td><code>{own.prefix}…</code></td>" in first and "<td>read, train, deploy, admin</td>" in first
    assert 'aria-label="Revoke the key default">Revoke</button>' in first
    last = re.search(rf'<tr data-key-id="{revoked.id}".*?</tr>', table, re.S).group(0)
    assert '<span class="status status-failed">revoked</span>' in last and "button" not in last
    assert f'data-own="{own.id}"' in table
    chinese = console.get("/console/keys?lang=zh").text
    assert "（当前会话）" in chinese and "已吊销" in chinese and "创建密钥" in chinese


def test_a_key_without_admin_gets_a_message_and_no_keys(app, settings, acme):
    _, secret = TenantStore(settings.registry_url).create_key("acme", "trainer", "read,train,deploy")
    with TestClient(app, raise_server_exceptions=False) as client:
        csrf = sign_in(client, secret)
        html = client.get("/console/keys").text
        assert ("Your API key lacks the “admin” scope needed here. Only a key with the admin scope can see and "
                "manage the tenant&#39;s keys and usage.") in html
        assert '<table id="keys"' not in html and "/console/static/keys.js" not in html and "data-key-name" not in html
        refused = client.post("/v1/keys", json={"name": "mine", "scopes": ["admin"]}, headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 403 and refused.json()["error"]["message"].startswith(
            "this API key lacks the 'admin' scope")


def test_creating_a_key_shows_its_secret_once(console, settings):
    assert console.post("/v1/keys", json={"name": "ci", "scopes": ["read"]}).status_code == 403  # no CSRF header
    created = console.post("/v1/keys", json={"name": "ci", "scopes": ["read", "train"]},
                           headers={"X-CSRF-Token": console.csrf})
    assert created.status_code == 200
    secret = created.json()["secret"]
    html = console.get("/console/keys").text
    assert secret not in html and f"<td><code>{secret[:10]}…</code></td>" in html
    assert '<div id="new-secret" class="card secret" role="status" hidden>' in html
    assert "it is shown this once and cannot be shown again" in html
    with TestClient(console.app) as other:
        assert other.get("/v1/files", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_revoking_the_sessions_own_key_signs_the_user_out(console, settings):
    own = TenantStore(settings.registry_url).list_keys("acme")[0]
    html = console.get("/console/keys").text
    assert "Revoking the key you signed in with signs you out at your next step." in html
    revoked = console.post(f"/v1/keys/{own.id}/revoke", headers={"X-CSRF-Token": console.csrf})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    response = console.get("/console/keys", follow_redirects=False)
    assert response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fkeys&reason=revoked"


def test_another_tenants_key_cannot_be_revoked_from_the_console(console, globex, settings):
    theirs = TenantStore(settings.registry_url).list_keys("globex")[0]
    response = console.post(f"/v1/keys/{theirs.id}/revoke", headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 404 and response.json()["error"]["message"] == f"API key {theirs.id!r} not found"
    assert theirs.id not in console.get("/console/keys").text
    assert TenantStore(settings.registry_url).list_keys("globex")[0].revoked_at is None


def test_the_usage_section_shows_what_is_recorded(console, settings):
    PredictionStore(settings.registry_url).add([
        PredictionRecord(id=f"pred-{i}", tenant="acme", kind="classification", model="mail", model_name="mail",
                         version=1, request_id=f"clf-{i // 2}", prompt_tokens=10) for i in range(5)] + [
        PredictionRecord(id="chatcmpl-1", tenant="acme", kind="chat.completion", model="smol", model_name="smol",
                         version=None, request_id="chatcmpl-1", prompt_tokens=30, completion_tokens=12),
        PredictionRecord(id="pred-old", tenant="acme", kind="classification", model="mail", model_name="mail",
                         version=1, request_id="clf-old", created_at=now() - timedelta(days=31)),
        PredictionRecord(id="pred-<b>", tenant="globex", kind="classification", model="<b>x</b>",
                         model_name="<b>x</b>", version=1, request_id="clf-g")])
    console.post("/v1/files", files={"file": ("a.csv", b"text,label\na,x\nb,y\n")}, data={"purpose": "fine-tune"},
                 headers={"X-CSRF-Token": console.csrf})
    html = console.get("/console/keys").text
    assert "Usage in the last 30 days" in html and 'id="recording-off"' not in html
    usage = re.search(r'<table id="usage-models".*?</table>', html, re.S).group(0)
    assert re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td class=\"num\">(\d+)</td>\s*<td class=\"num\">(\d+)"
                      r"</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td></tr>", usage) == [
        ("mail", "classification", "3", "5", "50", "0"), ("smol", "chat completion", "1", "1", "30", "12")]
    other = re.search(r'<dl class="facts" id="usage-other">.*?</dl>', html, re.S).group(0)
    assert "<dd>0 created</dd>" in other and "<dd>0 s over 0 finished job(s)</dd>" in other
    assert "<dd>1 file(s), 19 B</dd>" in other and "<dd>0 model(s), 0 version(s), 0 B</dd>" in other
    assert "&lt;b&gt;" not in html and "<b>x" not in html  # another tenant's records
    assert "对话补全" in console.get("/console/keys?lang=zh").text


def test_the_usage_section_says_when_recording_is_off(fresh_home):
    from tailor.serve.app import create_app
    from tailor.settings import Settings

    settings = Settings(home=fresh_home, record_predictions=False)
    _, secret = TenantStore(settings.registry_url).create_tenant("initech")
    with TestClient(create_app(settings)) as client:
        sign_in(client, secret)
        html = client.get("/console/keys").text
    assert ("This server does not record answers (TAILOR_RECORD_PREDICTIONS is off), so requests and tokens are "
            "not counted.") in html
    assert '<table id="usage-models"' not in html and "No requests in this period." not in html
