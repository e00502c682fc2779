"""Quotas and rate limits as a library: token buckets on a controlled clock, the tenants' own quotas in the
database (every backend), and the refusals' exact messages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from tailor.db import now
from tailor.errors import QuotaExceededError, UsageError
from tailor.jobs.store import JobStore, _jobs
from tailor.security.keys import TenantStore
from tailor.security.quotas import (CachedQuotas, Quota, QuotaStore, RateLimiter, check_jobs, check_request_rate,
                                    check_storage, check_train_minutes, effective_quota)
from tailor.settings import Settings


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_past_the_rate_gets_exactly_the_excess_refused_with_the_wait():
    clock = Clock()
    limiter = RateLimiter(clock)
    quota = Quota(rpm=0, key_rpm=10)
    refused = []
    for _ in range(15):
        try:
            check_request_rate(limiter, quota, "acme", "key_a")
        except QuotaExceededError as exc:
            refused.append((exc.limit, exc.retry_after, str(exc)))
    assert refused == [("key_rpm", 6, "rate limit reached for API key key_a: 10 requests per minute (key_rpm); "
                                      "retry after 6s")] * 5
    check_request_rate(limiter, quota, "acme", "key_b")  # another key has its own bucket
    clock.t += 5.9
    with pytest.raises(QuotaExceededError) as waited:
        check_request_rate(limiter, quota, "acme", "key_a")
    assert waited.value.retry_after == 1  # 0.1 s short of a token, rounded up to a whole second
    clock.t += 0.2
    check_request_rate(limiter, quota, "acme", "key_a")  # a token refills every 60/10 s
    assert limiter.used("key:key_a", 10) == pytest.approx(10 - 6.1 * 10 / 60 + 1)


def test_the_tenant_rate_counts_all_its_keys_and_a_refusal_takes_no_token():
    clock = Clock()
    limiter = RateLimiter(clock)
    quota = Quota(rpm=4, key_rpm=3)
    for key in ("k1", "k1", "k1", "k2"):
        check_request_rate(limiter, quota, "acme", key)
    with pytest.raises(QuotaExceededError) as key_refused:
        check_request_rate(limiter, quota, "acme", "k1")  # k1's own bucket is empty first
    assert key_refused.value.limit == "key_rpm"
    with pytest.raises(QuotaExceededError) as tenant_refused:
        check_request_rate(limiter, quota, "acme", "k2")
    assert (tenant_refused.value.limit, tenant_refused.value.retry_after) == ("rpm", 15)
    assert str(tenant_refused.value) == ("rate limit reached for tenant acme: 4 requests per minute (rpm), all its "
                                         "keys together; retry after 15s")
    assert limiter.used("key:k2", 3) == 1  # the refused request took nothing from k2's bucket
    check_request_rate(limiter, quota, "globex", "k9")  # another tenant is unaffected


def test_unlimited_rates_keep_no_bucket():
    limiter = RateLimiter(Clock())
    for _ in range(1000):
        check_request_rate(limiter, Quota(rpm=0, key_rpm=0), "acme", "k")
    assert limiter.names() == []


def test_jobs_storage_and_training_minutes_refusals():
    quota = Quota(jobs=2, storage_mb=1, train_minutes=30)
    check_jobs(quota, "acme", 1)
    with pytest.raises(QuotaExceededError) as jobs:
        check_jobs(quota, "acme", 2)
    assert (jobs.value.limit, jobs.value.retry_after) == ("jobs", None)
    assert str(jobs.value) == ("too many fine-tuning jobs: tenant acme has 2 queued or running, its limit is 2 "
                               "(jobs); wait for one to finish or cancel one")
    assert check_storage(quota, "acme", 1024 * 1024 - 100) == 100
    assert check_storage(quota, "acme", 0, adding_bytes=1024 * 1024) == 1024 * 1024
    with pytest.raises(QuotaExceededError) as storage:
        check_storage(quota, "acme", 512 * 1024, adding_bytes=512 * 1024 + 1)
    assert str(storage.value) == ("storage quota exceeded: tenant acme stores 0.5 MiB of its 1 MiB (storage_mb) and "
                                  "the upload does not fit in the 0.5 MiB left; delete files or ask for a larger quota")
    check_train_minutes(quota, "acme", 29 * 60 + 59, 3600)
    with pytest.raises(QuotaExceededError) as minutes:
        check_train_minutes(quota, "acme", 31 * 60, 3600.5)
    assert (minutes.value.limit, minutes.value.retry_after) == ("train_minutes", 3601)
    assert str(minutes.value) == ("training minutes used up: tenant acme's jobs ran 31.0 minutes today (UTC), its "
                                  "limit is 30 (train_minutes); new jobs are accepted again after midnight UTC")
    unlimited = Quota(jobs=0, storage_mb=0, train_minutes=0)
    check_jobs(unlimited, "acme", 10_000)
    assert check_storage(unlimited, "acme", 10**15) is None
    check_train_minutes(unlimited, "acme", 10**9, 1)


def test_a_tenants_own_quota_overrides_the_defaults_field_by_field(db_url, tmp_path):
    settings = Settings(home=tmp_path, database_url=db_url, rate_limit_rpm=600, tenant_max_jobs=5)
    TenantStore(db_url).create_tenant("acme")
    store = QuotaStore(db_url)
    assert store.get("acme") == Quota()
    assert effective_quota(store.get("acme"), settings) == Quota(rpm=600, key_rpm=0, jobs=5, storage_mb=102_400,
                                                                 train_minutes=0, redact_pii=False)
    store.set("acme", rpm=0, jobs=2)
    store.set("acme", storage_mb=10, redact_pii=True)
    assert store.get("acme") == Quota(rpm=0, jobs=2, storage_mb=10, redact_pii=True)
    assert effective_quota(store.get("acme"), settings) == Quota(rpm=0, key_rpm=0, jobs=2, storage_mb=10,
                                                                 train_minutes=0, redact_pii=True)
    assert store.redacting_tenants() == {"acme"}
    store.set("acme", jobs=None, redact_pii=False)
    assert store.get("acme") == Quota(rpm=0, storage_mb=10)
    assert store.redacting_tenants() == set()
    with pytest.raises(UsageError, match="^quota jobs must be 0 \\(unlimited\\) or more, got -1$"):
        store.set("acme", jobs=-1)
    with pytest.raises(UsageError, match="^unknown quota 'tokens'; quotas are: rpm, key_rpm, jobs, storage_mb, "
                                         "train_minutes, redact_pii$"):
        store.set("acme", tokens=5)


def test_cached_quotas_read_the_database_once_per_ttl(db_url, tmp_path):
    settings = Settings(home=tmp_path, database_url=db_url)
    TenantStore(db_url).create_tenant("acme")
    store, clock = QuotaStore(db_url), Clock()
    cached = CachedQuotas(store, settings, ttl_s=10, clock=clock)
    assert cached("acme").rpm == 0
    store.set("acme", rpm=50)
    assert cached("acme").rpm == 0  # within the TTL: the cached value
    clock.t += 10.5
    assert cached("acme").rpm == 50


def test_job_run_seconds_are_clipped_to_the_day_and_active_jobs_counted(db_url):
    TenantStore(db_url).create_tenant("acme")
    jobs = JobStore(db_url)
    made = [jobs.create("acme", model="minilm-l6", task="classification", training_file="f", validation_file=None,
                        suffix=None, seed=0, request={}) for _ in range(4)]
    moment = now()
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = {  # (status, started_at, finished_at, heartbeat_at)
        made[0].id: ("succeeded", moment - timedelta(minutes=30), moment - timedelta(minutes=20), None),
        made[1].id: ("failed", day - timedelta(minutes=10), day + timedelta(minutes=5), None),  # 5 min of today
        made[2].id: ("paused", moment - timedelta(minutes=9), None, moment - timedelta(minutes=6)),
    }
    with jobs._engine.begin() as conn:
        for job_id, (status, started, finished, heartbeat) in rows.items():
            conn.execute(update(_jobs).where(_jobs.c.id == job_id).values(
                status=status, started_at=started, finished_at=finished, heartbeat_at=heartbeat))
    if moment - day < timedelta(minutes=31):
        pytest.skip("too close to midnight UTC for the constructed times")
    assert jobs.run_seconds_since("acme", day) == pytest.approx((10 + 5 + 3) * 60, abs=1)
    assert jobs.active_count("acme") == 1  # made[3] is queued; paused and finished jobs do not count
    assert jobs.run_seconds_since("globex", day) == 0
