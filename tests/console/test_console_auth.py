"""Signing in and out of the console, its session cookie and CSRF tokens, the language, and error pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console.conftest import sign_in

CONSOLE = Path(__file__).parents[2] / "src" / "tailor" / "serve" / "console"


def test_a_page_without_a_session_sends_the_browser_to_sign_in_and_back(app, acme):
    with TestClient(app) as client:
        response = client.get("/console?lang=en", follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (
            303, "/console/sign-in?next=%2Fconsole%3Flang%3Den&reason=signin")
        form = client.get(response.headers["location"]).text
        assert "Sign in to continue." in form and 'name="next" value="/console?lang=en"' in form
        landed = client.post("/console/sign-in", data={"key": acme.key, "csrf": client.cookies["tailor_signin"],
                                                       "next": "/console?lang=en"}, follow_redirects=False)
        assert (landed.status_code, landed.headers["location"]) == (303, "/console?lang=en")


def test_the_session_cookie_is_httponly_samesite_and_holds_no_key(app, acme):
    with TestClient(app) as client:
        client.get("/console/sign-in")
        response = client.post("/console/sign-in", data={"key": acme.key, "csrf": client.cookies["tailor_signin"]},
                               follow_redirects=False)
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("tailor_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Max-Age=43200" in cookie
        assert acme.key not in cookie and "Secure" not in cookie


def test_a_wrong_key_is_answered_beside_the_field_and_opens_no_session(app, acme):
    with TestClient(app) as client:
        client.get("/console/sign-in")
        response = client.post("/console/sign-in", data={"key": "tk-nope", "csrf": client.cookies["tailor_signin"]})
        assert response.status_code == 401
        assert '<p id="key-error" class="error" role="alert" data-error-for="key">invalid API key</p>' in response.text
        assert "tailor_session" not in client.cookies
        empty = client.post("/console/sign-in", data={"key": " ", "csrf": client.cookies["tailor_signin"]})
        assert empty.status_code == 400 and "Enter your API key." in empty.text


def test_forms_without_their_csrf_token_are_refused(app, acme):
    with TestClient(app) as client:
        client.get("/console/sign-in")
        refused = client.post("/console/sign-in", data={"key": acme.key})
        assert refused.status_code == 403 and "missing CSRF token" in refused.text
        assert "tailor_session" not in client.cookies
        sign_in(client, acme.key)
        assert client.post("/console/sign-out", data={"csrf": "forged"}).status_code == 403
        assert client.get("/v1/files").status_code == 200  # still signed in


def test_the_api_takes_the_session_cookie_and_wants_the_csrf_header_for_changes(console):
    assert console.get("/v1/files").json()["data"] == []
    refused = console.post("/v1/files", files={"file": ("a.csv", b"text,label\na,x\nb,y\n")},
                           data={"purpose": "fine-tune"})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "missing or wrong X-CSRF-Token header: a change signed by the console's session cookie must carry the "
        "session's CSRF token")
    wrong = console.post("/v1/files", files={"file": ("a.csv", b"text,label\na,x\nb,y\n")},
                         data={"purpose": "fine-tune"}, headers={"X-CSRF-Token": console.csrf[:-1] + "x"})
    assert wrong.status_code == 403
    accepted = console.post("/v1/files", files={"file": ("a.csv", b"text,label\na,x\nb,y\n")},
                            data={"purpose": "fine-tune"}, headers={"X-CSRF-Token": console.csrf})
    assert accepted.status_code == 200 and accepted.json()["filename"] == "a.csv"


def test_signing_out_ends_the_session_for_pages_and_the_api(console):
    response = console.post("/console/sign-out", data={"csrf": console.csrf}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/console/sign-in?reason=signed_out")
    assert "You are signed out." in console.get(response.headers["location"]).text
    assert console.get("/v1/files").status_code == 401
    assert console.get("/console", follow_redirects=False).status_code == 303


def test_a_revoked_key_sends_its_user_back_to_sign_in_with_the_reason(console, settings):
    from tailor.security.keys import TenantStore

    store = TenantStore(settings.registry_url)
    store.revoke_key(store.list_keys("acme")[0].id)
    response = console.get("/console", follow_redirects=False)
    assert response.headers["location"] == "/console/sign-in?next=%2Fconsole&reason=revoked"
    assert "The API key of your session was revoked." in console.get(response.headers["location"]).text
    assert console.get("/v1/files").json()["error"]["message"].endswith("was revoked; sign in with another key")


def test_an_expired_key_sends_its_user_back_to_sign_in_with_the_reason(app, settings):
    from datetime import datetime, timezone

    from sqlalchemy import text

    from tailor.db import open_engine
    from tailor.security.keys import TenantStore

    store = TenantStore(settings.registry_url)
    store.create_tenant("initech")
    key, secret = store.create_key("initech", "temp", "read", expires_in_days=1)
    with TestClient(app) as client:
        sign_in(client, secret)
        with open_engine(settings.registry_url).begin() as conn:
            conn.execute(text("UPDATE api_keys SET expires_at = :t WHERE id = :id"),
                         {"t": datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc), "id": key.id})
        response = client.get("/console", follow_redirects=False)
        assert response.headers["location"] == "/console/sign-in?next=%2Fconsole&reason=key_expired"
        page = client.get(response.headers["location"]).text
        assert "The API key of your session has expired. Sign in with another key." in page
        assert client.get("/v1/files").json()["error"]["message"] == (
            f"API key {secret[:10]}... expired at 2026-01-02 03:04 UTC; sign in with another key")
        client.get("/console/sign-in")
        refused = client.post("/console/sign-in", data={"key": secret, "csrf": client.cookies["tailor_signin"]})
        assert refused.status_code == 401 and f"API key {secret[:10]}... expired at 2026-01-02 03:04 UTC" in refused.text


def test_an_ended_session_sends_its_user_back_to_sign_in(console, settings):
    from sqlalchemy import text

    from tailor.db import open_engine

    with open_engine(settings.registry_url).begin() as conn:
        conn.execute(text("UPDATE console_sessions SET expires_at = '2020-01-01 00:00:00.000000'"))
    response = console.get("/console", follow_redirects=False)
    assert response.headers["location"] == "/console/sign-in?next=%2Fconsole&reason=expired"
    assert "Your session has ended. Sign in again." in console.get(response.headers["location"]).text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console", "/v1/files", "/console\\x"])
def test_sign_in_only_returns_to_console_pages(app, acme, target):
    with TestClient(app) as client:
        client.get("/console/sign-in")
        response = client.post("/console/sign-in", data={"key": acme.key, "csrf": client.cookies["tailor_signin"],
                                                         "next": target}, follow_redirects=False)
        assert response.headers["location"] == "/console"


def test_the_language_comes_from_the_query_then_the_cookie_then_the_browser(console):
    assert '<html lang="en">' in console.get("/console").text
    chinese = console.get("/console?lang=zh")
    assert '<html lang="zh-CN">' in chinese.text and "退出登录" in chinese.text
    assert "tailor_lang=zh" in chinese.headers["set-cookie"]
    assert "退出登录" in console.get("/console").text  # remembered
    console.cookies.delete("tailor_lang")
    assert "退出登录" in console.get("/console", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text
    assert "Sign out" in console.get("/console", headers={"Accept-Language": "fr-FR,en;q=0.5,zh;q=0.4"}).text
    refused = console.get("/console?lang=fr")
    assert refused.status_code == 400 and "lang" in refused.text and "<html" in refused.text


def test_the_language_switch_keeps_the_page_and_its_query(console):
    html = console.get("/console?lang=en").text
    assert '<a href="/console?lang=zh" hreflang="zh" lang="zh">中文</a>' in html
    assert '<strong aria-current="true">English</strong>' in html


def test_browser_language_ranks_by_quality():
    from tailor.serve.console.i18n import browser_language

    assert browser_language("en;q=0.4, zh-TW;q=0.9") == "zh"
    assert browser_language("de, fr;q=0.8") == "en"
    assert browser_language("") == "en"
    assert browser_language("zh;q=abc, en") == "en"


def test_pages_carry_the_security_headers_and_load_nothing_from_outside(console):
    response = console.get("/console")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store" and response.headers["x-frame-options"] == "DENY"
    assert not re.search(r'(src|href)="(https?:)?//', response.text)


def test_unknown_console_paths_are_404_pages_and_the_root_redirects_to_the_console(console):
    missing = console.get("/console/nothing-here")
    assert missing.status_code == 404 and "<title>Error 404 · Tailor</title>" in missing.text
    assert console.get("/", follow_redirects=False).headers["location"] == "/console"
    assert console.get("/v1/nothing").json()["error"]["message"] == "unknown route: GET /v1/nothing"  # still JSON


def test_a_key_name_with_html_is_shown_as_text(app, settings):
    from tailor.security.keys import TenantStore

    store = TenantStore(settings.registry_url)
    store.create_tenant("initech")
    _, secret = store.create_key("initech", "<script>alert(1)</script>", "read")
    with TestClient(app) as client:
        sign_in(client, secret)
        html = client.get("/console").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_every_string_has_both_languages_and_every_key_a_template_uses_exists():
    from tailor.serve.console.i18n import Catalog

    catalog = Catalog.load()
    used = set()
    for template in (CONSOLE / "templates").glob("*.html"):
        used |= set(re.findall(r"""\bt\(['"]([a-z0-9_.]+)['"]""", template.read_text(encoding="utf-8")))
    for module in [*CONSOLE.glob("*.py"), *(CONSOLE / "pages").glob("*.py")]:
        used |= set(re.findall(r"""\.t\(['"]([a-z0-9_.]+)['"]""", module.read_text(encoding="utf-8")))
    for script in (CONSOLE / "static").glob("*.js"):
        used |= set(re.findall(r"""\bt\(['"](js\.[a-z0-9_.]+)['"]""", script.read_text(encoding="utf-8")))
    used = {key for key in used if not key.endswith(".")}  # a prefix completed at run time ('nav.' + name)
    assert used and sorted(used - set(catalog.strings)) == []


def test_a_locale_file_with_a_missing_translation_is_refused(tmp_path):
    from tailor.serve.console.i18n import Catalog

    (tmp_path / "a.json").write_text('{"x.y": {"en": "Yes", "zh": ""}}', encoding="utf-8")
    with pytest.raises(ValueError, match="a.json: key 'x.y' has no zh text"):
        Catalog.load(tmp_path)
    (tmp_path / "a.json").write_text('{"x.y": {"en": "Yes", "zh": "是"}}', encoding="utf-8")
    (tmp_path / "b.json").write_text('{"x.y": {"en": "Yes", "zh": "是"}}', encoding="utf-8")
    with pytest.raises(ValueError, match="b.json: key 'x.y' is defined twice"):
        Catalog.load(tmp_path)
