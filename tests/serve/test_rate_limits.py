"""Quotas and rate limits through the API: bursts get exactly their excess refused with 429 and Retry-After,
other keys and tenants are unaffected, uploads past the storage quota keep nothing, jobs past the job and
training-minute quotas are refused, and /metrics and /v1/quotas show it all."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tailor.db import now
from tailor.jobs.store import JobStore, _jobs
from tailor.security.keys import TenantStore
from tailor.security.quotas import QuotaStore

from api_helpers import Tenant, csv_bytes, error_of, upload
from samples import sample_rows

JOBS = "/v1/fine_tuning/jobs"


@pytest.fixture
def settings(fresh_home, db_url):
    from tailor.settings import Settings

    return Settings(home=fresh_home, database_url=db_url, key_rate_limit_rpm=10)


def job_body(file_id: str) -> dict:
    return {"model": "minilm-l6", "training_file": file_id, "seed": 0,
            "method": {"type": "supervised", "tailor": {"method": "head"}}}


def test_a_burst_past_a_keys_rate_gets_exactly_the_excess_refused(client, acme, globex, settings):
    statuses = [client.get("/v1/files", headers=acme.headers).status_code for _ in range(15)]
    assert statuses == [200] * 10 + [429] * 5
    refused = client.get("/v1/models", headers=acme.headers)
    error = error_of(refused, 429)
    key_id = TenantStore(settings.registry_url).list_keys("acme")[0].id
    assert error == {"message": f"rate limit reached for API key {key_id}: 10 requests per minute (key_rpm); "
                                "retry after 6s", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    assert refused.headers["Retry-After"] == "6"

    _, second_key = TenantStore(settings.registry_url).create_key("acme", "second", "read")
    assert client.get("/v1/files", headers=Tenant("acme", second_key).headers).status_code == 200
    assert client.get("/v1/files", headers=globex.headers).status_code == 200
    # requests no key signs, and the console's static assets, take no token
    assert client.get("/v1/files").status_code == 401
    assert all(client.get(path).status_code == 200 for path in ["/health", "/metrics"] * 3)
    assert all(client.get("/console/static/console.css").status_code == 200 for _ in range(12))

    metrics = client.get("/metrics").text
    assert 'tailor_quota_refusals_total{limit="key_rpm",tenant="acme"} 6.0' in metrics
    assert 'tailor_quota_limit{limit="key_rpm",tenant="acme"} 10.0' in metrics
    assert 'tailor_quota_limit{limit="rpm",tenant="globex"} 0.0' in metrics
    assert 'tailor_quota_limit{limit="jobs",tenant="acme"} 20.0' in metrics
    assert re.search(r'tailor_quota_use\{limit="storage_mb",tenant="acme"\} 0\.0\n', metrics)
    assert re.search(r'tailor_quota_use\{limit="jobs",tenant="acme"\} 0\.0\n', metrics)


def test_the_tenant_rate_counts_every_key_and_the_console_pages(app, acme, globex, settings):
    QuotaStore(settings.registry_url).set("acme", rpm=4, key_rpm=0)
    _, second_key = TenantStore(settings.registry_url).create_key("acme", "second", "read")
    second = Tenant("acme", second_key)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/files", headers=acme.headers).status_code == 200
        assert client.get("/v1/files", headers=second.headers).status_code == 200
        client.get("/console/sign-in")  # the sign-in form and its post take no token; the landing page does
        signed = client.post("/console/sign-in", data={"key": acme.key, "csrf": client.cookies["tailor_signin"],
                                                       "next": "/console/data"})
        assert signed.status_code == 200
        assert client.get("/console/data").status_code == 200
        page = client.get("/console/data")
        assert page.status_code == 429 and page.headers["Retry-After"] in ("14", "15")  # 60/4 s, less any refill
        assert (f"rate limit reached for tenant acme: 4 requests per minute (rpm), all its keys together; "
                f"retry after {page.headers['Retry-After']}s") in page.text
        refused = client.get("/v1/files", headers=second.headers)
        assert error_of(refused, 429)["code"] == "rate_limit_exceeded"
        assert client.get("/console/static/console.js").status_code == 200
        assert client.get("/v1/files", headers=globex.headers).status_code == 200
        quotas = client.get("/v1/quotas", headers=globex.headers)
    assert quotas.status_code == 200
    body = quotas.json()
    assert body["usage"].pop("key_rpm") == pytest.approx(2.0, abs=0.05)  # two requests, less the refill since
    assert body == {"object": "quota", "tenant": "globex",
                    "limits": {"rpm": 0, "key_rpm": 10, "jobs": 20, "storage_mb": 102_400, "train_minutes": 0},
                    "usage": {"rpm": 0.0, "jobs": 0, "storage_mb": 0.0, "storage_bytes": 0, "train_minutes": 0.0},
                    "redact_pii": False}


def big_csv(rows: int) -> bytes:
    """A valid text/label file of about ``rows`` * 100 bytes."""
    return csv_bytes([(f"row {i} " + "x" * 90, "good" if i % 2 else "bad") for i in range(rows)])


def just_over(room: int) -> bytes:
    """A file a few KiB over ``room``: its declared length passes the up-front check, the stream stops it."""
    rows = room // 100
    while len(content := big_csv(rows)) <= room + 8 * 1024:
        rows += 20
    assert len(content) < room + 40 * 1024
    return content


def test_an_upload_past_the_storage_quota_is_refused_and_nothing_kept(client, acme, globex, settings):
    QuotaStore(settings.registry_url).set("acme", storage_mb=1)
    first = upload(client, acme, big_csv(6000))  # ~0.6 MiB
    assert first.status_code == 200, first.text
    kept = first.json()["bytes"]
    room = 2**20 - kept
    message = (f"storage quota exceeded: tenant acme stores {kept / 2**20:.1f} MiB of its 1 MiB (storage_mb) and the "
               f"upload does not fit in the {(2**20 - kept) / 2**20:.1f} MiB left; delete files or ask for a larger "
               "quota")
    for content in (just_over(room), big_csv(30_000)):  # stopped mid-stream; refused by its declared length
        refused = upload(client, acme, content)
        assert error_of(refused, 429) == {"message": message, "type": "insufficient_quota", "param": None,
                                                   "code": "quota_exceeded"}
        assert "Retry-After" not in refused.headers
    listed = client.get("/v1/files", headers=acme.headers).json()["data"]
    assert [f["id"] for f in listed] == [first.json()["id"]]
    stored = [p.name for p in (settings.files_dir / "acme").iterdir()]
    assert stored == [f"{first.json()['id']}.csv"]
    assert list((settings.files_dir / ".incoming").iterdir()) == []
    assert upload(client, globex, big_csv(6000)).status_code == 200  # globex has the default 100 GiB
    metrics = client.get("/metrics").text
    assert 'tailor_quota_refusals_total{limit="storage_mb",tenant="acme"} 2.0' in metrics
    assert 'tailor_quota_limit{limit="storage_mb",tenant="acme"} 1.0' in metrics
    assert f'tailor_quota_use{{limit="storage_mb",tenant="acme"}} {round(kept / 2**20, 3)}' in metrics


def test_jobs_past_the_tenants_job_limit_are_refused_until_one_ends(client, acme, globex, settings):
    QuotaStore(settings.registry_url).set("acme", jobs=1, key_rpm=0)
    file_id = upload(client, acme, csv_bytes(sample_rows(per_label=12))).json()["id"]
    first = client.post(JOBS, headers=acme.headers, json=job_body(file_id))
    assert first.status_code == 200, first.text
    refused = client.post(JOBS, headers=acme.headers, json=job_body(file_id))
    assert error_of(refused, 429) == {
        "message": "too many fine-tuning jobs: tenant acme has 1 queued or running, its limit is 1 (jobs); wait for "
                   "one to finish or cancel one", "type": "insufficient_quota", "param": None, "code": "quota_exceeded"}
    assert len(client.get(JOBS, headers=acme.headers).json()["data"]) == 1  # nothing queued by the refusal
    paused = client.post(f"{JOBS}/{first.json()['id']}/pause", headers=acme.headers)
    assert paused.json()["status"] == "paused"
    second = client.post(JOBS, headers=acme.headers, json=job_body(file_id))
    assert second.status_code == 200  # a paused job does not count
    resumed = client.post(f"{JOBS}/{first.json()['id']}/resume", headers=acme.headers)
    assert error_of(resumed, 429)["message"].startswith("too many fine-tuning jobs: tenant acme has 1 ")
    client.post(f"{JOBS}/{second.json()['id']}/cancel", headers=acme.headers)
    assert client.post(f"{JOBS}/{first.json()['id']}/resume", headers=acme.headers).json()["status"] == "queued"
    globex_file = upload(client, globex, csv_bytes(sample_rows(per_label=12))).json()["id"]
    assert client.post(JOBS, headers=globex.headers, json=job_body(globex_file)).status_code == 200


def test_a_new_job_is_refused_once_the_days_training_minutes_are_used(client, acme, settings):
    QuotaStore(settings.registry_url).set("acme", train_minutes=2)
    file_id = upload(client, acme, csv_bytes(sample_rows(per_label=12))).json()["id"]
    job_id = client.post(JOBS, headers=acme.headers, json=job_body(file_id)).json()["id"]
    store = JobStore(settings.registry_url)
    assert store.claim("w1").id == job_id
    moment = now()
    if moment - moment.replace(hour=0, minute=0, second=0, microsecond=0) < timedelta(minutes=4):
        pytest.skip("too close to midnight UTC for a job that ran 3 minutes today")
    with store._engine.begin() as conn:  # the job ran 3 minutes so far
        conn.execute(update(_jobs).where(_jobs.c.id == job_id).values(started_at=moment - timedelta(minutes=3)))
    store.finish(job_id, "w1", "succeeded", message="done")
    refused = client.post(JOBS, headers=acme.headers, json=job_body(file_id))
    error = error_of(refused, 429)
    assert re.fullmatch(r"training minutes used up: tenant acme's jobs ran 3\.0 minutes today \(UTC\), its limit is "
                        r"2 \(train_minutes\); new jobs are accepted again after midnight UTC", error["message"])
    tomorrow = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs(int(refused.headers["Retry-After"]) - (tomorrow - moment).total_seconds()) < 60
    quotas = client.get("/v1/quotas", headers=acme.headers).json()
    assert quotas["limits"]["train_minutes"] == 2 and 3.0 <= quotas["usage"]["train_minutes"] < 3.5
    QuotaStore(settings.registry_url).set("acme", train_minutes=0)
    client.app.state.services.limits.quotas.forget("acme")
    assert client.post(JOBS, headers=acme.headers, json=job_body(file_id)).status_code == 200
