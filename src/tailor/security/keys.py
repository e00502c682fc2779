"""Tenants and their API keys, in the shared database.

A key is shown once, when it is created; the database keeps only its SHA-256 and a short prefix to
recognise it by in listings. Keys carry scopes:

=========  ==========================================================================
``read``   list and get files, jobs and models; run inference
``train``  upload and delete files; create, cancel, pause and resume jobs
``deploy`` delete models
``admin``  everything above; the tenant's keys and usage (/v1/keys, /v1/usage)
=========  ==========================================================================
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Integer, String, Table, MetaData, Text, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tailor.db import UtcDateTime, now, open_engine
from tailor.errors import AuthenticationError, NotFoundError, UsageError

SCOPES = ("read", "train", "deploy", "admin")
KEY_PREFIX = "tk-"
_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_LAST_USED_RESOLUTION = timedelta(minutes=1)

_metadata = MetaData()
_tenants = Table("tenants", _metadata, Column("name", String(64), primary_key=True),
                 Column("created_at", UtcDateTime), Column("retention_days", Integer),
                 Column("retention_rows", Integer))
_keys = Table(
    "api_keys", _metadata,
    Column("id", String(40), primary_key=True), Column("tenant", String(64)), Column("name", Text),
    Column("secret_hash", String(64)), Column("prefix", String(16)), Column("scopes", Text),
    Column("created_at", UtcDateTime), Column("last_used_at", UtcDateTime), Column("revoked_at", UtcDateTime),
    Column("expires_at", UtcDateTime),
)


@dataclass(frozen=True)
class ApiKey:
    """An API key as listings show it (never the secret)."""

    id: str
    tenant: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = None  # None: it does not expire

    def to_dict(self) -> dict:
        def iso(moment):
            return moment.isoformat() if moment else None

        return {"id": self.id, "tenant": self.tenant, "name": self.name, "prefix": self.prefix,
                "scopes": list(self.scopes), "created_at": iso(self.created_at),
                "last_used_at": iso(self.last_used_at), "revoked_at": iso(self.revoked_at),
                "expires_at": iso(self.expires_at)}


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a tenant, through one key with its scopes."""

    tenant: str
    key_id: str
    scopes: tuple[str, ...]
    key_name: str = ""

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def actor(self) -> str:
        """Who made a change, as histories record it: ``<tenant>/<key name> (<key id>)``."""
        return f"{self.tenant}/{self.key_name} ({self.key_id})"


def validate_tenant_name(name: str) -> str:
    """Return ``name`` if it is a valid new tenant name (it appears in fine-tuned model ids).

    Raises:
        UsageError: not 1-32 lowercase letters, digits or '-', starting with a letter or digit.
    """
    if not _TENANT_NAME.fullmatch(name):
        raise UsageError(f"invalid tenant name {name!r}: use 1-32 lowercase letters, digits or '-', "
                         "starting with a letter or digit")
    return name


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"read,train"`` or a list → a sorted tuple of known scopes. Raises UsageError for an unknown one."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in items if s not in SCOPES]
    if unknown or not items:
        raise UsageError(f"unknown scope {unknown[0]!r}; scopes are: {', '.join(SCOPES)}" if unknown
                         else f"give at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in items)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _to_key(row) -> ApiKey:
    return ApiKey(row.id, row.tenant, row.name, row.prefix, tuple(row.scopes.split(",")), row.created_at,
                  row.last_used_at, row.revoked_at, row.expires_at)


def key_refusal(prefix: str, revoked_at: datetime | None, expires_at: datetime | None) -> str | None:
    """Why a key is refused (revoked, or past its expiry), or None while it works."""
    if revoked_at is not None:
        return f"API key {prefix}... was revoked"
    if expires_at is not None and expires_at <= now():
        return f"API key {prefix}... expired at {expires_at.strftime('%Y-%m-%d %H:%M')} UTC"
    return None


class TenantStore:
    """Tenants and API keys in the database at ``url``."""

    def __init__(self, url: str):
        self._engine = open_engine(url)

    def create_tenant(self, name: str) -> tuple[ApiKey, str]:
        """Create tenant ``name`` with one admin key; return the key and its secret (shown once).

        Raises:
            UsageError: the name is invalid or taken.
        """
        validate_tenant_name(name)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_tenants).values(name=name, created_at=now()))
                return self._insert_key(conn, name, "default", SCOPES)
        except IntegrityError:
            raise UsageError(f"tenant {name!r} already exists") from None

    def list_tenants(self) -> list[dict]:
        """Every tenant with its number of active keys (neither revoked nor expired), by name."""
        working = _keys.c.revoked_at.is_(None) & (_keys.c.expires_at.is_(None) | (_keys.c.expires_at > now()))
        active = (select(_keys.c.tenant, func.count().label("n")).where(working)
                  .group_by(_keys.c.tenant).subquery())
        with self._engine.begin() as conn:
            rows = conn.execute(select(_tenants, active.c.n).outerjoin(active, active.c.tenant == _tenants.c.name)
                                .order_by(_tenants.c.name)).all()
        return [{"name": r.name, "created_at": r.created_at.isoformat(), "active_keys": r.n or 0} for r in rows]

    def require_tenant(self, name: str) -> None:
        """Raises NotFoundError unless tenant ``name`` exists."""
        with self._engine.begin() as conn:
            if conn.scalar(select(_tenants.c.name).where(_tenants.c.name == name)) is None:
                raise NotFoundError(f"tenant {name!r} not found; create it with: tailor tenants create {name}")

    def retention(self, name: str) -> tuple[int | None, int | None]:
        """The tenant's own limits on its prediction records, ``(days, rows)``; None where the server's
        defaults apply (also for an unknown tenant)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_tenants.c.retention_days, _tenants.c.retention_rows)
                               .where(_tenants.c.name == name)).one_or_none()
        return (row.retention_days, row.retention_rows) if row is not None else (None, None)

    def set_retention(self, name: str, days: int | None, rows: int | None) -> None:
        """Set the tenant's limits on its prediction records (None: back to the server's default).

        Raises:
            NotFoundError: no such tenant.
            UsageError: a limit below 1.
        """
        for what, value in (("days", days), ("rows", rows)):
            if value is not None and value < 1:
                raise UsageError(f"retention {what} must be at least 1, got {value}")
        self.require_tenant(name)
        with self._engine.begin() as conn:
            conn.execute(update(_tenants).where(_tenants.c.name == name)
                         .values(retention_days=days, retention_rows=rows))

    def create_key(self, tenant: str, name: str, scopes, expires_in_days: float | None = None) -> tuple[ApiKey, str]:
        """A new key for ``tenant``, valid for ``expires_in_days`` days (None: until revoked); return it and its
        secret (shown once).

        Raises:
            UsageError: an unknown scope, an unknown tenant, or a lifetime that is not positive.
        """
        scopes = parse_scopes(scopes)
        if expires_in_days is not None and not expires_in_days > 0:
            raise UsageError(f"a key's lifetime must be more than 0 days, not {expires_in_days:g}")
        self.require_tenant(tenant)
        with self._engine.begin() as conn:
            return self._insert_key(conn, tenant, name, scopes, expires_in_days)

    def _insert_key(self, conn, tenant: str, name: str, scopes: tuple[str, ...],
                    expires_in_days: float | None = None) -> tuple[ApiKey, str]:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        created = now()
        expires = created + timedelta(days=expires_in_days) if expires_in_days is not None else None
        conn.execute(insert(_keys).values(id=key_id, tenant=tenant, name=name, secret_hash=_hash(secret),
                                          prefix=secret[:10], scopes=",".join(scopes), created_at=created,
                                          expires_at=expires))
        row = conn.execute(select(_keys).where(_keys.c.id == key_id)).one()
        return _to_key(row), secret

    def list_keys(self, tenant: str) -> list[ApiKey]:
        """The tenant's keys, oldest first, revoked ones included."""
        self.require_tenant(tenant)
        with self._engine.begin() as conn:
            rows = conn.execute(select(_keys).where(_keys.c.tenant == tenant).order_by(_keys.c.created_at)).all()
        return [_to_key(r) for r in rows]

    def revoke_key(self, key_id: str, tenant: str | None = None) -> ApiKey:
        """Revoke key ``key_id`` (at once: the next request with it gets 401); revoking it again changes nothing.

        Args:
            tenant: only a key of this tenant (another tenant's key is not found); None: any tenant's.

        Raises:
            NotFoundError: no such key (of ``tenant``).
        """
        mine = (_keys.c.id == key_id) if tenant is None else (_keys.c.id == key_id) & (_keys.c.tenant == tenant)
        with self._engine.begin() as conn:
            conn.execute(update(_keys).where(mine, _keys.c.revoked_at.is_(None)).values(revoked_at=now()))
            row = conn.execute(select(_keys).where(mine)).one_or_none()
        if row is None:
            raise NotFoundError(f"API key {key_id!r} not found")
        return _to_key(row)

    def authenticate(self, secret: str) -> Principal:
        """The principal of an active key.

        Raises:
            AuthenticationError: the key is unknown, revoked or expired.
        """
        with self._engine.begin() as conn:
            row = conn.execute(select(_keys).where(_keys.c.secret_hash == _hash(secret))).one_or_none()
            if row is None:
                raise AuthenticationError("invalid API key")
            problem = key_refusal(row.prefix, row.revoked_at, row.expires_at)
            if problem:
                raise AuthenticationError(problem)
            moment = now()
            if row.last_used_at is None or moment - row.last_used_at > _LAST_USED_RESOLUTION:
                conn.execute(update(_keys).where(_keys.c.id == row.id).values(last_used_at=moment))
        return Principal(row.tenant, row.id, tuple(row.scopes.split(",")), row.name)
