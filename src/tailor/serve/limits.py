"""The API's quotas and rate limits (see :mod:`tailor.security.quotas` for the limits themselves).

- Every authenticated request (API routes and console pages; never static assets, ``/health`` or
  ``/metrics``) takes a token from its key's and its tenant's bucket (:meth:`ServerLimits.check_request`),
  in this process: one replica's counts.
- A new or resumed fine-tuning job is refused with 429 while the tenant has ``jobs`` queued or running, or
  once its jobs ran ``train_minutes`` today (:meth:`ServerLimits.check_new_job`).
- An upload streams under the room the tenant's ``storage_mb`` leaves; past it the upload stops and nothing
  is kept (:meth:`ServerLimits.upload_room`, :meth:`ServerLimits.storage_refusal`).

Refusals and each tenant's use against its limits are exported to ``/metrics``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from tailor.errors import QuotaExceededError
from tailor.security.keys import Principal
from tailor.security.quotas import (LIMITS, CachedQuotas, Quota, QuotaStore, RateLimiter, check_jobs,
                                    check_request_rate, check_storage, check_train_minutes, storage_refusal)


def day_start(moment: datetime) -> datetime:
    """Midnight UTC of ``moment``'s day: the training-minutes quota counts from there."""
    return moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def quota_usage(quota: Quota, tenant: str, files, jobs, rates: dict[str, float] | None = None) -> dict:
    """What ``tenant`` uses of each limit of ``quota`` now.

    Args:
        files / jobs: the :class:`~tailor.data.files.FileStore` and :class:`~tailor.jobs.store.JobStore`.
        rates: the request rates' use (``rpm``, ``key_rpm``: tokens spent), known to the serving process only.

    Returns:
        ``{"limits": {name: int, 0 unlimited}, "usage": {"rpm", "key_rpm", "jobs", "storage_mb", "storage_bytes",
        "train_minutes"}, "redact_pii": bool}``; the rates' use is None outside the server.
    """
    _, stored = files.totals(tenant)
    moment = datetime.now(timezone.utc)
    minutes = jobs.run_seconds_since(tenant, day_start(moment)) / 60
    rates = rates or {}
    return {"limits": {name: getattr(quota, name) or 0 for name in LIMITS},
            "usage": {"rpm": rates.get("rpm"), "key_rpm": rates.get("key_rpm"), "jobs": jobs.active_count(tenant),
                      "storage_mb": round(stored / (1024 * 1024), 3), "storage_bytes": stored,
                      "train_minutes": round(minutes, 2)},
            "redact_pii": quota.redact_pii}


class ServerLimits:
    """One app's quota checks, its token buckets and its refusal counts.

    Args:
        store: the tenants' own quotas.
        settings: the server's defaults.
        metrics_registry: where ``tailor_quota_refusals_total`` is registered (the app's own).
    """

    def __init__(self, store: QuotaStore, settings, metrics_registry=None):
        self.store = store
        self.quotas = CachedQuotas(store, settings)
        self.rates = RateLimiter()
        self.refusals = Counter("tailor_quota_refusals", "requests refused by a quota or rate limit",
                                ["limit", "tenant"], registry=metrics_registry)

    def check_request(self, principal: Principal) -> None:
        """Count one request of ``principal`` against its key's and tenant's rates.

        Raises:
            QuotaExceededError: a rate is used up (429 with Retry-After).
        """
        try:
            check_request_rate(self.rates, self.quotas(principal.tenant), principal.tenant, principal.key_id)
        except QuotaExceededError as exc:
            self.refusals.labels(exc.limit, principal.tenant).inc()
            raise

    def check_new_job(self, tenant: str, jobs) -> None:
        """Refuse a job the tenant's ``jobs`` or ``train_minutes`` quota has no room for.

        Raises:
            QuotaExceededError: 429 (``jobs``: none is retried by itself; ``train_minutes``: after midnight UTC).
        """
        quota = self.quotas(tenant)
        try:
            if quota.jobs:
                check_jobs(quota, tenant, jobs.active_count(tenant))
            if quota.train_minutes:
                moment = datetime.now(timezone.utc)
                start = day_start(moment)
                check_train_minutes(quota, tenant, jobs.run_seconds_since(tenant, start),
                                    (start + timedelta(days=1) - moment).total_seconds())
        except QuotaExceededError as exc:
            self.refusals.labels(exc.limit, tenant).inc()
            raise

    def upload_room(self, tenant: str, files) -> int | None:
        """Bytes the tenant may still upload (None: unlimited).

        Raises:
            QuotaExceededError: ``storage_mb`` is used up already.
        """
        quota = self.quotas(tenant)
        if not quota.storage_mb:
            return None
        try:
            return check_storage(quota, tenant, files.totals(tenant)[1])
        except QuotaExceededError as exc:
            self.refusals.labels(exc.limit, tenant).inc()
            raise

    def storage_refusal(self, tenant: str, files) -> QuotaExceededError:
        """The error of an upload that passed the tenant's room, counted as a refusal."""
        self.refusals.labels("storage_mb", tenant).inc()
        return storage_refusal(self.quotas(tenant), tenant, files.totals(tenant)[1])

    def rate_use(self, tenant: str, key_id: str | None = None) -> dict[str, float]:
        """Tokens spent now of the tenant's (and of ``key_id``'s) bucket."""
        quota = self.quotas(tenant)
        use = {"rpm": round(self.rates.used(f"tenant:{tenant}", quota.rpm or 0), 2)}
        if key_id is not None:
            use["key_rpm"] = round(self.rates.used(f"key:{key_id}", quota.key_rpm or 0), 2)
        return use

    def collector(self, services) -> "_QuotaCollector":
        return _QuotaCollector(self, services)


class _QuotaCollector:
    """``tailor_quota_limit`` and ``tailor_quota_use`` per tenant and limit, at scrape time (each tenant's use is
    read from the database at most once per ``TTL_S``)."""

    TTL_S = 30.0

    def __init__(self, limits: ServerLimits, services):
        self.limits, self.services = limits, services
        self._read: tuple[float, list[tuple[str, dict]]] = (float("-inf"), [])

    def _tenants(self) -> list[tuple[str, dict]]:
        taken, rows = self._read
        if time.monotonic() - taken > self.TTL_S:
            services = self.services
            rows = [(t["name"], quota_usage(self.limits.quotas(t["name"]), t["name"], services.files, services.jobs))
                    for t in services.tenants.list_tenants()]
            self._read = (time.monotonic(), rows)
        return rows

    def collect(self):
        limit = GaugeMetricFamily("tailor_quota_limit", "a tenant's limit (0: unlimited)", labels=["tenant", "limit"])
        use = GaugeMetricFamily("tailor_quota_use", "a tenant's use of its limit now (rpm: tokens of the last "
                                "minute's bucket spent; storage_mb: MiB; train_minutes: today, UTC)",
                                labels=["tenant", "limit"])
        for tenant, report in self._tenants():
            usage = {**report["usage"], **self.limits.rate_use(tenant)}
            for name in ("rpm", "key_rpm", "jobs", "storage_mb", "train_minutes"):
                limit.add_metric([tenant, name], report["limits"][name])
                if usage.get(name) is not None:
                    use.add_metric([tenant, name], usage[name])
        yield limit
        yield use
