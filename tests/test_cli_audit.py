"""The CLI's audit trail: its state-changing verbs recorded as ``cli:<os user>`` (refused ones with their error),
``tailor audit list`` with its filters, and ``tailor audit verify`` passing an intact chain and naming a broken one."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tailor.cli import main
from tailor.cli_audit import parse_since
from tailor.db import open_engine
from tailor.errors import UsageError
from tailor.security.audit import AuditLog
from tailor.settings import Settings
from test_cli import _publish

ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TAILOR_HOME", str(home))
    monkeypatch.delenv("TAILOR_DATABASE_URL", raising=False)
    return home


def rows(home) -> list[tuple]:
    """(tenant, actor, action, target, result, error) of every audit row, oldest first."""
    listed, _ = AuditLog(Settings(home=home).registry_url).list(None, limit=1000)
    return [(r.tenant, r.actor, r.action, r.target, r.result, r.error) for r in reversed(listed)]


def cli_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_tenant_and_key_verbs_are_recorded(home, capsys):
    tenant = cli_json(capsys, "tenants", "create", "acme")
    key = cli_json(capsys, "keys", "create", "acme", "--name", "ci", "--scopes", "read,train")
    assert main(["keys", "revoke", key["id"]]) == 0
    assert main(["keys", "revoke", "key_nope"]) == 2
    assert main(["tenants", "retention", "acme"]) == 0  # only shows: not a change
    assert main(["tenants", "retention", "acme", "--days", "7"]) == 0
    assert rows(home) == [
        ("acme", ACTOR, "tenants create", {"name": "acme", "key_id": tenant["key"]["id"]}, "ok", None),
        ("acme", ACTOR, "keys create", {"name": "ci", "scopes": "read,train", "key_id": key["id"]}, "ok", None),
        ("acme", ACTOR, "keys revoke", {"key_id": key["id"]}, "ok", None),
        (None, ACTOR, "keys revoke", {"key_id": "key_nope"}, "error", "API key 'key_nope' not found"),
        ("acme", ACTOR, "tenants retention", {"name": "acme", "days": "7"}, "ok", None),
    ]
    assert {r.client for r in AuditLog(Settings(home=home).registry_url).list(None)[0]} == {"local"}


def test_model_verbs_are_recorded_with_refusals(home, capsys):
    _publish(home, "spam", versions=2)
    assert main(["models", "alias", "spam:1", "prod", "--reason", "first"]) == 0
    assert main(["models", "canary", "spam@prod", "2", "--share", "0.2"]) == 0
    assert main(["models", "promote", "spam@prod"]) == 0
    assert main(["models", "rollback", "spam@prod"]) == 0
    assert main(["models", "abort", "spam@prod"]) == 2  # nothing to stop: refused, and recorded with why
    assert main(["models", "alias", "spam:9", "prod"]) == 2
    assert main(["models", "delete", "spam:2"]) == 0
    assert main(["models", "list"]) == 0  # a read: not recorded
    recorded = rows(home)
    assert [(r[2], r[3], r[4]) for r in recorded[:4]] == [
        ("models alias", {"ref": "spam:1", "alias": "prod"}, "ok"),
        ("models canary", {"ref": "spam@prod", "version": "2"}, "ok"),
        ("models promote", {"ref": "spam@prod"}, "ok"),
        ("models rollback", {"ref": "spam@prod"}, "ok"),
    ]
    assert recorded[4:] == [
        ("default", ACTOR, "models abort", {"ref": "spam@prod"}, "error", "spam@prod has no canary or shadow to stop"),
        ("default", ACTOR, "models alias", {"ref": "spam:9", "alias": "prod"}, "error", "version spam:9 not found"),
        ("default", ACTOR, "models delete", {"ref": "spam:2"}, "ok", None),
    ]
    assert {r[0] for r in recorded} == {"default"}


def test_audit_list_filters_and_prints(home, capsys):
    _publish(home, "spam")
    assert main(["tenants", "create", "acme"]) == 0
    assert main(["models", "alias", "spam:1", "prod"]) == 0
    everything = cli_json(capsys, "audit", "list")
    assert [(r["seq"], r["tenant"], r["action"]) for r in everything["data"]] == [
        (2, "default", "models alias"), (1, "acme", "tenants create")]
    assert everything["has_more"] is False
    assert [r["seq"] for r in cli_json(capsys, "audit", "list", "--tenant", "acme")["data"]] == [1]
    assert [r["seq"] for r in cli_json(capsys, "audit", "list", "--action", "models alias")["data"]] == [2]
    assert [r["seq"] for r in cli_json(capsys, "audit", "list", "--since", "1h")["data"]] == [2, 1]
    assert cli_json(capsys, "audit", "list", "--since", "2999-01-01")["data"] == []
    page = cli_json(capsys, "audit", "list", "--limit", "1")
    assert ([r["seq"] for r in page["data"]], page["has_more"]) == ([2], True)
    assert [r["seq"] for r in cli_json(capsys, "audit", "list", "--after", "2")["data"]] == [1]
    capsys.readouterr()
    assert main(["audit", "list", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:1] == ["2"] and "models alias" in lines[0] and "alias=prod ref=spam:1" in lines[0]
    assert lines[1] == "(older rows left out: --after 2 shows the next page)"
    assert main(["audit", "list", "--since", "last week"]) == 2
    assert capsys.readouterr().err == ("error: --since 'last week': give a date or time (2026-11-30, "
                                       "2026-11-30T08:00) or a span back from now (90m, 24h, 7d)\n")


def test_audit_verify_passes_an_intact_chain_and_names_the_broken_row(home, capsys):
    for name in ("acme", "globex", "initech"):
        assert main(["tenants", "create", name]) == 0
    log = AuditLog(Settings(home=home).registry_url)
    head = log.list(None, limit=1)[0][0].hash
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out == f"chain intact: 3 rows, head {head}\n"

    with open_engine(Settings(home=home).registry_url).begin() as conn:
        conn.execute(text("UPDATE audit_log SET tenant = 'acme' WHERE seq = 2"))
    assert main(["audit", "verify"]) == 1
    assert capsys.readouterr().err == ("error: audit chain broken at seq 2: hash mismatch (a field was changed "
                                       "after the row was written)\n")
    assert main(["audit", "verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "intact": False, "rows": 1, "head": log.list(None, after=2)[0][0].hash, "bad_seq": 2,
        "problem": "hash mismatch (a field was changed after the row was written)"}

    with open_engine(Settings(home=home).registry_url).begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    assert main(["audit", "verify"]) == 1
    assert capsys.readouterr().err == ("error: audit chain broken at seq 2: missing: the chain jumps from seq 1 to "
                                       "seq 3 (a row was deleted)\n")


def test_parse_since():
    moment = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert parse_since("90m", now=moment) == moment - timedelta(minutes=90)
    assert parse_since("7d", now=moment) == moment - timedelta(days=7)
    assert parse_since("2026-11-30") == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert parse_since("2026-11-30T08:00+08:00") == datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
    with pytest.raises(UsageError):
        parse_since("soon")


def test_a_refused_training_is_recorded_with_why(home, tmp_path, small_train_csv):
    generic = tmp_path / "data" / "train.csv"
    generic.parent.mkdir()
    generic.write_bytes(small_train_csv.read_bytes())
    assert main(["train", str(generic)]) == 2
    assert rows(home) == [("default", ACTOR, "train", {"file": str(generic)}, "error",
                           "'train.csv' and its folder 'data' are too generic to name the model after: pass --name "
                           "NAME")]


def test_tenant_settings_are_recorded_and_showing_them_is_not(home):
    assert main(["tenants", "create", "acme"]) == 0
    assert main(["tenants", "quota", "acme"]) == 0
    assert main(["tenants", "quota", "acme", "--rpm", "600", "--jobs", "3"]) == 0
    assert main(["tenants", "redact-pii", "acme", "on"]) == 0
    assert main(["gate", "show", "acme"]) == 0
    assert main(["gate", "set", "acme", "--min-accuracy", "0.8"]) == 0
    assert [(r[0], r[2], r[3], r[4]) for r in rows(home)[1:]] == [
        ("acme", "tenants quota", {"name": "acme", "rpm": "600", "jobs": "3"}, "ok"),
        ("acme", "tenants redact-pii", {"name": "acme", "state": "on"}, "ok"),
        ("acme", "gate set", {"tenant": "acme", "min_accuracy": "0.8", "require_fairness": "False"}, "ok"),
    ]
