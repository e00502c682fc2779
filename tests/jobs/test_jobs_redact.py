"""A job of a tenant whose redact_pii switch is on trains on redacted rows: its data report counts them and
none of its artifacts holds the personal data; a job can also ask for it (method.tailor.redact_pii)."""

from __future__ import annotations

import json

from tailor.jobs.runner import StopSignal, run_job
from tailor.jobs.store import JobStore
from tailor.registry.service import open_registry
from tailor.security.keys import TenantStore
from tailor.security.quotas import QuotaStore

from api_helpers import csv_bytes
from samples import sample_rows

JOBS = "/v1/fine_tuning/jobs"
PII_ROWS = [("Bank customer ann.lee@corp.com says shares fell sharply", "bearish"),
            ("Call +1 415 555 2671 now: stock rallies to a record", "bullish"),
            ("Card 4111 1111 1111 1111 holders see no change today", "neutral")]


def _create(api, headers, **tailor) -> dict:
    data = csv_bytes(sample_rows(per_label=12) + PII_ROWS)
    file_id = api.post("/v1/files", headers=headers, files={"file": ("tweets.csv", data)},
                       data={"purpose": "fine-tune"}).json()["id"]
    response = api.post(JOBS, headers=headers, json={
        "model": "minilm-l6", "training_file": file_id, "seed": 0,
        "method": {"type": "supervised", "tailor": {"method": "head", **tailor}}})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_redacting_tenants_job_trains_on_redacted_rows(api, settings):
    headers = {"Authorization": f"Bearer {TenantStore(settings.registry_url).create_tenant('acme')[1]}"}
    QuotaStore(settings.registry_url).set("acme", redact_pii=True)
    job = _create(api, headers)
    store = JobStore(settings.registry_url)
    claimed = store.claim("w1")
    run_job(claimed, store=store, settings=settings, worker_id="w1", signal=StopSignal())

    done = store.get("acme", job["id"])
    assert done.status == "succeeded", done.error
    events = [e.message for e in store.events("acme", job["id"], limit=100)[0]]
    assert "personal data redacted in 3 rows (email 1, phone 1, card_number 1)" in events
    registry = open_registry(settings)
    version = registry.store.resolve("acme", done.fine_tuned_model)
    artifacts = registry.artifact_dir(version)
    report = json.loads((artifacts / "data_report.json").read_text(encoding="utf-8"))
    assert report["redacted"] == {"email": 1, "phone": 1, "card_number": 1, "id_number": 0, "iban": 0,
                                  "rows_redacted": 3}
    assert report["pii"]["rows_with_pii"] == 0
    for path in artifacts.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in (b"ann.lee@corp.com", b"415 555 2671", b"4111 1111 1111 1111"):
                assert secret not in content, (path.name, secret)


def test_a_job_may_ask_for_redaction_itself(api, settings):
    headers = {"Authorization": f"Bearer {TenantStore(settings.registry_url).create_tenant('globex')[1]}"}
    asked = _create(api, headers, redact_pii=True)
    assert asked["method"]["tailor"]["redact_pii"] is True
    assert JobStore(settings.registry_url).get("globex", asked["id"]).request["overrides"]["redact_pii"] is True
    plain = _create(api, headers)
    assert "redact_pii" not in JobStore(settings.registry_url).get("globex", plain["id"]).request["overrides"]
