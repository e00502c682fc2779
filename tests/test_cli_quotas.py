"""``tailor tenants quota`` and ``tailor tenants redact-pii``: set and show a tenant's limits with its use, back
to the defaults, and the errors of an unknown tenant or a negative limit."""

from __future__ import annotations

import json

import pytest

from tailor.cli import main


@pytest.fixture
def home(fresh_home, monkeypatch):
    monkeypatch.setenv("TAILOR_TENANT_MAX_JOBS", "7")
    assert main(["tenants", "create", "acme", "--json"]) == 0
    return fresh_home


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_quota_shows_the_defaults_then_the_tenants_own(home, capsys):
    capsys.readouterr()
    assert main(["tenants", "quota", "acme", "--json"]) == 0
    assert _json(capsys) == {
        "tenant": "acme", "limits": {"rpm": 0, "key_rpm": 0, "jobs": 7, "storage_mb": 102_400, "train_minutes": 0},
        "usage": {"rpm": None, "key_rpm": None, "jobs": 0, "storage_mb": 0.0, "storage_bytes": 0,
                  "train_minutes": 0.0},
        "redact_pii": False,
        "own": {"rpm": None, "key_rpm": None, "jobs": None, "storage_mb": None, "train_minutes": None}}
    assert main(["tenants", "quota", "acme", "--rpm", "600", "--key-rpm", "120", "--jobs", "2", "--storage-mb", "50",
                 "--train-minutes", "90"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "tenant acme",
        "  rpm                  600  requests per minute of the tenant; counted by the server",
        "  key_rpm              120  requests per minute of each key; counted by the server",
        "  jobs                   2  jobs queued or running at once; used 0",
        "  storage_mb            50  MiB of stored files; used 0.0",
        "  train_minutes         90  training minutes per day (UTC); used 0.0"]
    assert main(["tenants", "quota", "acme", "--default", "--rpm", "0", "--json"]) == 0
    shown = _json(capsys)
    assert shown["own"] == {"rpm": 0, "key_rpm": None, "jobs": None, "storage_mb": None, "train_minutes": None}
    assert shown["limits"] == {"rpm": 0, "key_rpm": 0, "jobs": 7, "storage_mb": 102_400, "train_minutes": 0}


def test_redact_pii_switch(home, capsys):
    assert main(["tenants", "redact-pii", "acme", "on"]) == 0
    assert capsys.readouterr().out.strip() == ("tenant acme: personal data (e-mails, phones, card, ID and IBAN "
                                               "numbers) is replaced by placeholders before training and before "
                                               "inputs are stored")
    assert main(["tenants", "quota", "acme", "--json"]) == 0
    assert _json(capsys)["redact_pii"] is True
    assert main(["tenants", "quota", "acme", "--jobs", "3", "--json"]) == 0  # setting a limit keeps the switch
    assert _json(capsys)["redact_pii"] is True
    assert main(["tenants", "redact-pii", "acme", "off", "--json"]) == 0
    assert _json(capsys) == {"tenant": "acme", "redact_pii": False}


def test_bad_input_is_one_line_without_a_traceback(home, capsys):
    capsys.readouterr()
    assert main(["tenants", "quota", "nobody"]) == 2
    assert capsys.readouterr().err == ("error: tenant 'nobody' not found; create it with: tailor tenants create "
                                       "nobody\n")
    assert main(["tenants", "quota", "acme", "--jobs", "-1"]) == 2
    assert capsys.readouterr().err == "error: quota jobs must be 0 (unlimited) or more, got -1\n"
    assert main(["tenants", "redact-pii", "nobody", "on"]) == 2
    assert "error: tenant 'nobody' not found" in capsys.readouterr().err
