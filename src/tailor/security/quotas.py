"""Each tenant's quotas and rate limits, and the in-process token buckets that enforce the request rates.

A tenant's limits are the server's defaults (``TAILOR_RATE_LIMIT_RPM``, ``TAILOR_KEY_RATE_LIMIT_RPM``,
``TAILOR_TENANT_MAX_JOBS``, ``TAILOR_TENANT_STORAGE_MB``, ``TAILOR_TENANT_TRAIN_MINUTES_PER_DAY``) unless the
``tenant_quotas`` table holds its own (``tailor tenants quota NAME --rpm N ...``). In either place **0 means
unlimited**; a NULL column means "the server's default". The same row holds the tenant's ``redact_pii``
switch (personal data replaced by placeholders before training and before inputs are stored).

=================  ======================================================================================
``rpm``            requests per minute of the whole tenant (all its keys together)
``key_rpm``        requests per minute of each of its API keys
``jobs``           fine-tuning jobs queued or running at once; another is refused with 429 (as OpenAI does)
``storage_mb``     MiB of uploaded files kept; an upload that would pass it is refused and nothing kept
``train_minutes``  minutes of job run time per UTC day; a new job is refused once they are used
=================  ======================================================================================

The request rates are counted in this process (one replica); a token bucket per key and per tenant holds
``rpm`` tokens and refills ``rpm / 60`` per second, so a burst of ``rpm`` requests passes and the next waits.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update

from tailor.db import UtcDateTime, now, open_engine
from tailor.errors import QuotaExceededError, UsageError

LIMITS = ("rpm", "key_rpm", "jobs", "storage_mb", "train_minutes")
LIMIT_NAMES = {"rpm": "requests per minute of the tenant", "key_rpm": "requests per minute of each key",
               "jobs": "jobs queued or running at once", "storage_mb": "MiB of stored files",
               "train_minutes": "training minutes per day (UTC)"}

_metadata = MetaData()
_quotas = Table(
    "tenant_quotas", _metadata,
    Column("tenant", String(64), primary_key=True), Column("rpm", Integer), Column("key_rpm", Integer),
    Column("jobs", Integer), Column("storage_mb", Integer), Column("train_minutes", Integer),
    Column("redact_pii", Integer), Column("updated_at", UtcDateTime),
)


@dataclass(frozen=True)
class Quota:
    """A tenant's limits (0: unlimited) and its personal-data switch.

    In a tenant's own row a None limit stands for the server's default; :func:`effective_quota` fills them.
    """

    rpm: int | None = None
    key_rpm: int | None = None
    jobs: int | None = None
    storage_mb: int | None = None
    train_minutes: int | None = None
    redact_pii: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def default_quota(settings) -> Quota:
    """The server's limits from ``settings`` (every tenant's unless it has its own)."""
    return Quota(rpm=settings.rate_limit_rpm, key_rpm=settings.key_rate_limit_rpm, jobs=settings.tenant_max_jobs,
                 storage_mb=settings.tenant_storage_mb, train_minutes=settings.tenant_train_minutes_per_day)


def effective_quota(own: Quota, settings) -> Quota:
    """``own`` with each None limit replaced by the server's default."""
    defaults = default_quota(settings)
    return Quota(**{name: getattr(defaults, name) if getattr(own, name) is None else getattr(own, name)
                    for name in LIMITS}, redact_pii=own.redact_pii)


class QuotaStore:
    """The tenants' own quotas and ``redact_pii`` switches, in the database at ``url``."""

    def __init__(self, url: str):
        self._engine = open_engine(url)

    def get(self, tenant: str) -> Quota:
        """The tenant's own row (all None, redaction off, when it has none)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_quotas).where(_quotas.c.tenant == tenant)).one_or_none()
        if row is None:
            return Quota()
        return Quota(**{name: getattr(row, name) for name in LIMITS}, redact_pii=bool(row.redact_pii))

    def set(self, tenant: str, **changes) -> Quota:
        """Change some of the tenant's own limits (``rpm=100``; None: back to the server's default) or its
        ``redact_pii`` switch; the others keep their values. The caller checks that the tenant exists.

        Raises:
            UsageError: an unknown field, or a limit below 0.
        """
        known = {f.name for f in fields(Quota)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(f"unknown quota {unknown[0]!r}; quotas are: {', '.join(LIMITS)}, redact_pii")
        for name in LIMITS:
            value = changes.get(name)
            if value is not None and value < 0:
                raise UsageError(f"quota {name} must be 0 (unlimited) or more, got {value}")
        values = {**changes, "updated_at": now()}
        if "redact_pii" in values:
            values["redact_pii"] = int(bool(values["redact_pii"]))
        with self._engine.begin() as conn:
            if not conn.execute(update(_quotas).where(_quotas.c.tenant == tenant).values(**values)).rowcount:
                conn.execute(insert(_quotas).values(tenant=tenant, **{"redact_pii": 0, **values}))
        return self.get(tenant)

    def redacting_tenants(self) -> set[str]:
        """The tenants whose ``redact_pii`` switch is on."""
        with self._engine.connect() as conn:
            return set(conn.scalars(select(_quotas.c.tenant).where(_quotas.c.redact_pii == 1)))


class CachedQuotas:
    """Each tenant's effective quota, read from the store at most once per ``ttl_s`` (a request must not wait
    for the database; a change made by ``tailor tenants quota`` applies within ``ttl_s``)."""

    def __init__(self, store: QuotaStore, settings, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.store, self.settings, self.ttl_s, self.clock = store, settings, ttl_s, clock
        self._cache: dict[str, tuple[float, Quota]] = {}

    def __call__(self, tenant: str) -> Quota:
        moment = self.clock()
        cached = self._cache.get(tenant)
        if cached is None or moment - cached[0] > self.ttl_s:
            cached = (moment, effective_quota(self.store.get(tenant), self.settings))
            self._cache[tenant] = cached
        return cached[1]

    def forget(self, tenant: str) -> None:
        """Read ``tenant``'s quota afresh next time (after this process changed it)."""
        self._cache.pop(tenant, None)


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float):
        self.tokens, self.stamp = tokens, stamp


class RateLimiter:
    """Token buckets by name (``key:<id>``, ``tenant:<name>``), each holding up to ``rpm`` tokens that refill
    at ``rpm / 60`` per second. ``clock`` is injectable so tests control time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, wanted: list[tuple[str, int]]) -> tuple[int, float] | None:
        """Take one token from each named bucket of ``wanted`` (``(name, rpm)``; rpm 0 is unlimited) only if
        every one has a token.

        Returns:
            None when taken; else ``(index in wanted, seconds until that bucket has a token)`` for the first
            empty bucket, and nothing is taken from any.
        """
        moment = self.clock()
        with self._lock:
            buckets = []
            for index, (name, rpm) in enumerate(wanted):
                if not rpm:
                    continue
                bucket = self._refilled(name, rpm, moment)
                if bucket.tokens < 1:
                    return index, (1 - bucket.tokens) * 60.0 / rpm
                buckets.append(bucket)
            for bucket in buckets:
                bucket.tokens -= 1
        return None

    def used(self, name: str, rpm: int) -> float:
        """How many of the bucket's ``rpm`` tokens are spent now (0 for a bucket never used)."""
        with self._lock:
            if name not in self._buckets or not rpm:
                return 0.0
            return rpm - self._refilled(name, rpm, self.clock()).tokens

    def names(self) -> list[str]:
        with self._lock:
            return list(self._buckets)

    def _refilled(self, name: str, rpm: int, moment: float) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(float(rpm), moment)
        else:
            bucket.tokens = min(float(rpm), bucket.tokens + (moment - bucket.stamp) * rpm / 60.0)
            bucket.stamp = moment
        return bucket


def check_request_rate(limiter: RateLimiter, quota: Quota, tenant: str, key_id: str) -> None:
    """Count one request of ``key_id`` (of ``tenant``) against its key's and its tenant's rates.

    Raises:
        QuotaExceededError: either rate is used up (``limit`` ``key_rpm`` or ``rpm``), with the seconds to wait.
    """
    if not (quota.key_rpm or quota.rpm):
        return
    wanted = [(f"key:{key_id}", quota.key_rpm or 0), (f"tenant:{tenant}", quota.rpm or 0)]
    refused = limiter.take(wanted)
    if refused is None:
        return
    index, wait_s = refused
    retry_after = max(1, math.ceil(wait_s))
    if index == 0:
        raise QuotaExceededError(f"rate limit reached for API key {key_id}: {quota.key_rpm} requests per minute "
                                 f"(key_rpm); retry after {retry_after}s", limit="key_rpm", retry_after=retry_after)
    raise QuotaExceededError(f"rate limit reached for tenant {tenant}: {quota.rpm} requests per minute (rpm), all "
                             f"its keys together; retry after {retry_after}s", limit="rpm", retry_after=retry_after)


def check_jobs(quota: Quota, tenant: str, active: int) -> None:
    """Refuse one more job while ``active`` jobs (queued or running) reach the tenant's limit.

    Raises:
        QuotaExceededError: ``limit`` ``jobs``.
    """
    if quota.jobs and active >= quota.jobs:
        raise QuotaExceededError(f"too many fine-tuning jobs: tenant {tenant} has {active} queued or running, its "
                                 f"limit is {quota.jobs} (jobs); wait for one to finish or cancel one", limit="jobs")


def check_storage(quota: Quota, tenant: str, used_bytes: int, adding_bytes: int | None = None) -> int | None:
    """The bytes the tenant may still store (None: unlimited).

    Args:
        used_bytes: what its files hold now.
        adding_bytes: an upload's size, when known; refused if it does not fit.

    Raises:
        QuotaExceededError: ``limit`` ``storage_mb``: nothing is left, or ``adding_bytes`` does not fit.
    """
    if not quota.storage_mb:
        return None
    room = max(0, quota.storage_mb * 1024 * 1024 - used_bytes)
    if room == 0 or (adding_bytes is not None and adding_bytes > room):
        raise storage_refusal(quota, tenant, used_bytes)
    return room


def storage_refusal(quota: Quota, tenant: str, used_bytes: int) -> QuotaExceededError:
    """The error of an upload that does not fit in the tenant's storage quota."""
    room = max(0, quota.storage_mb * 1024 * 1024 - used_bytes)
    return QuotaExceededError(f"storage quota exceeded: tenant {tenant} stores {_mib(used_bytes)} of its "
                              f"{quota.storage_mb} MiB (storage_mb) and the upload does not fit in the "
                              f"{_mib(room)} left; delete files or ask for a larger quota", limit="storage_mb")


def check_train_minutes(quota: Quota, tenant: str, used_s: float, seconds_to_midnight: float) -> None:
    """Refuse a new job once the tenant's jobs ran ``train_minutes`` minutes today (UTC).

    Raises:
        QuotaExceededError: ``limit`` ``train_minutes``, retry after the day ends.
    """
    if quota.train_minutes and used_s >= quota.train_minutes * 60:
        raise QuotaExceededError(f"training minutes used up: tenant {tenant}'s jobs ran {used_s / 60:.1f} minutes "
                                 f"today (UTC), its limit is {quota.train_minutes} (train_minutes); new jobs are "
                                 "accepted again after midnight UTC", limit="train_minutes",
                                 retry_after=max(1, math.ceil(seconds_to_midnight)))


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
