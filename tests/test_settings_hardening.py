"""Settings outside development: every insecure default refused by name (by `tailor serve` without a traceback,
and by create_app), development starting as before; CORS only for the origins named."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tailor.cli import main
from tailor.security.hardening import InsecureSettingsError, require_safe_settings, settings_problems
from tailor.settings import Settings

NO_KEY = "no master key (set TAILOR_MASTER_KEY or TAILOR_MASTER_KEY_FILE)"
OPEN_CORS = "CORS is open to every origin (TAILOR_CORS_ORIGINS has '*'; list the origins allowed)"
KEY = "q0fXm3b2J8y7Zc1V5n4T6w9R0k2L8s3D7f1G5h9J2k4="


def bound(host: str) -> str:
    return (f"bound to {host} beyond localhost without TLS (give --ssl-certfile and --ssl-keyfile) or a proxy in "
            "front (set TAILOR_FORWARDED_ALLOW_IPS to its address)")


def production(tmp_path, **fields) -> Settings:
    return Settings(home=tmp_path, environment="production", **fields)


def test_development_is_the_default_and_refuses_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("TAILOR_ENVIRONMENT", raising=False)
    settings = Settings(home=tmp_path, cors_origins=["*"])
    assert (settings.environment, settings.master_key, settings.master_key_file) == ("development", None, None)
    assert (settings.cors_origins, settings.forwarded_allow_ips) == (["*"], [])
    assert settings_problems(settings, host="0.0.0.0") == []
    require_safe_settings(settings, host="0.0.0.0")


def test_production_without_a_master_key_is_refused(tmp_path):
    assert settings_problems(production(tmp_path)) == [NO_KEY]
    with pytest.raises(InsecureSettingsError) as raised:
        require_safe_settings(production(tmp_path))
    assert str(raised.value) == f"refusing to start with TAILOR_ENVIRONMENT=production: {NO_KEY}"
    assert raised.value.exit_code == 2


def test_a_master_key_file_that_does_not_exist_is_refused(tmp_path):
    missing = tmp_path / "master.key"
    assert settings_problems(production(tmp_path, master_key_file=missing)) == [
        f"the master key file {missing} does not exist (TAILOR_MASTER_KEY_FILE)"]
    missing.write_text(KEY)
    assert settings_problems(production(tmp_path, master_key_file=missing)) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.example.com"])
def test_binding_beyond_localhost_needs_tls_or_a_proxy(tmp_path, host):
    settings = production(tmp_path, master_key=KEY)
    assert settings_problems(settings, host=host) == [bound(host)]
    assert settings_problems(settings, host=host, tls=True) == []
    assert settings_problems(production(tmp_path, master_key=KEY, forwarded_allow_ips=["10.0.0.5"]), host=host) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_localhost_needs_neither(tmp_path, host):
    assert settings_problems(production(tmp_path, master_key=KEY), host=host) == []


def test_cors_open_to_every_origin_is_refused_and_named_origins_are_not(tmp_path):
    assert settings_problems(production(tmp_path, master_key=KEY, cors_origins=["https://a.example", "*"])) == [
        OPEN_CORS]
    assert settings_problems(production(tmp_path, master_key=KEY, cors_origins=["https://a.example"])) == []


def test_every_problem_is_named_at_once(tmp_path):
    with pytest.raises(InsecureSettingsError) as raised:
        require_safe_settings(production(tmp_path, cors_origins=["*"]), host="0.0.0.0")
    assert str(raised.value) == (f"refusing to start with TAILOR_ENVIRONMENT=production: {NO_KEY}; "
                                 f"{bound('0.0.0.0')}; {OPEN_CORS}")


def test_lists_come_from_the_environment_comma_separated_or_as_json(monkeypatch, tmp_path):
    monkeypatch.setenv("TAILOR_CORS_ORIGINS", "https://a.example, http://b.example:8080")
    monkeypatch.setenv("TAILOR_FORWARDED_ALLOW_IPS", '["10.0.0.0/8", "192.0.2.1"]')
    monkeypatch.setenv("TAILOR_ENVIRONMENT", "production")
    monkeypatch.setenv("TAILOR_MASTER_KEY", KEY)
    settings = Settings(home=tmp_path)
    assert settings.cors_origins == ["https://a.example", "http://b.example:8080"]
    assert settings.forwarded_allow_ips == ["10.0.0.0/8", "192.0.2.1"]
    assert settings.master_key.get_secret_value() == KEY and KEY not in repr(settings)


@pytest.mark.parametrize("field, value, message", [
    ("cors_origins", ["https://a.example/app"], "'https://a.example/app' is not an origin: give scheme://host[:port] "
                                                "(no path), or '*'"),
    ("forwarded_allow_ips", ["proxy.local"], "'proxy.local' is not an IP address or network (e.g. 10.0.0.5, "
                                             "10.0.0.0/8), nor '*'"),
])
def test_bad_list_entries_are_refused(tmp_path, field, value, message):
    with pytest.raises(ValidationError) as raised:
        Settings(home=tmp_path, **{field: value})
    assert raised.value.errors()[0]["msg"] == f"Value error, {message}"


def test_create_app_refuses_production_without_a_master_key(tmp_path):
    from tailor.serve.app import create_app

    with pytest.raises(InsecureSettingsError, match="no master key"):
        create_app(production(tmp_path))


def test_tailor_serve_refuses_with_one_line_and_no_traceback(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    monkeypatch.setenv("TAILOR_ENVIRONMENT", "production")
    monkeypatch.setenv("TAILOR_CORS_ORIGINS", "*")
    assert main(["serve", "--host", "0.0.0.0", "--no-workers"]) == 2
    assert capsys.readouterr().err == (f"error: refusing to start with TAILOR_ENVIRONMENT=production: {NO_KEY}; "
                                       f"{bound('0.0.0.0')}; {OPEN_CORS}\n")
    monkeypatch.setenv("TAILOR_ENVIRONMENT", "staging")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == ("error: invalid setting TAILOR_ENVIRONMENT: Input should be 'development' "
                                       "or 'production'\n")


def test_tailor_serve_wants_both_tls_files(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    assert main(["serve", "--ssl-certfile", str(tmp_path / "cert.pem")]) == 2
    assert capsys.readouterr().err == "error: give both --ssl-certfile and --ssl-keyfile for TLS, or neither\n"
    (tmp_path / "key.pem").write_text("x")
    assert main(["serve", "--ssl-certfile", str(tmp_path / "cert.pem"),
                 "--ssl-keyfile", str(tmp_path / "key.pem")]) == 2
    assert capsys.readouterr().err == f"error: --ssl-certfile {tmp_path / 'cert.pem'}: no such file\n"


def test_cors_headers_only_for_the_origins_named(tmp_path):
    from tailor.serve.app import create_app

    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    with TestClient(create_app(Settings(home=tmp_path / "plain"))) as client:
        plain = client.get("/health", headers={"Origin": "https://app.example"})
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
    with TestClient(create_app(Settings(home=tmp_path / "cors", cors_origins=["https://app.example"]))) as client:
        allowed = client.options("/v1/files", headers=preflight)
        assert (allowed.status_code, allowed.headers["access-control-allow-origin"]) == (200, "https://app.example")
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
