"""Browser sessions of the web console: signing in with an API key opens one; its cookie then stands for the key.

The cookie carries a random token; the database keeps only the token's SHA-256, the key it stands for, the
session's CSRF token and when it expires. Every request re-reads the key, so a key revoked after sign-in ends
its sessions at once, and its scopes are the key's scopes, exactly as with ``Authorization: Bearer``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, MetaData, String, Table, delete, insert, select

from tailor.db import UtcDateTime, now, open_engine
from tailor.errors import AuthenticationError
from tailor.security.keys import Principal, TenantStore, _keys, key_refusal

_metadata = MetaData()
_sessions = Table("console_sessions", _metadata, Column("id", String(64), primary_key=True),
                  Column("key_id", String(40)), Column("csrf", String(64)), Column("created_at", UtcDateTime),
                  Column("expires_at", UtcDateTime))

# why a session no longer signs its user in (the sign-in page says)
EXPIRED, REVOKED, KEY_EXPIRED = "expired", "revoked", "key_expired"


class SessionError(AuthenticationError):
    """A console session that cannot sign its user in; ``reason`` is ``expired`` (the session), ``revoked`` or
    ``key_expired`` (its key)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Session:
    """A signed-in console user: the key's principal and the token its forms must echo."""

    principal: Principal
    csrf: str
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_matches(expected: str, given: str | None) -> bool:
    """Whether ``given`` is the session's CSRF token (compared in constant time)."""
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


class SessionStore:
    """Console sessions in the database at ``url`` (shared by every replica of the API)."""

    def __init__(self, url: str, tenants: TenantStore, lifetime: timedelta):
        self._engine = open_engine(url)
        self._tenants = tenants
        self._lifetime = lifetime

    def open(self, secret: str) -> tuple[str, Session]:
        """Sign in with API key ``secret``: a new session and its cookie token.

        Raises:
            AuthenticationError: the key is unknown or revoked.
        """
        principal = self._tenants.authenticate(secret)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        moment = now()
        expires = moment + self._lifetime
        with self._engine.begin() as conn:
            conn.execute(delete(_sessions).where(_sessions.c.expires_at < moment))  # old ones, while here
            conn.execute(insert(_sessions).values(id=_hash(token), key_id=principal.key_id, csrf=csrf,
                                                  created_at=moment, expires_at=expires))
        return token, Session(principal, csrf, expires)

    def get(self, token: str) -> Session:
        """The session of cookie ``token``.

        Raises:
            SessionError: no such session (signed out, or never opened), it expired, or its key was revoked or
                expired.
        """
        query = (select(_sessions, _keys.c.tenant, _keys.c.scopes, _keys.c.name, _keys.c.prefix, _keys.c.revoked_at,
                        _keys.c.expires_at.label("key_expires_at"))
                 .join(_keys, _keys.c.id == _sessions.c.key_id).where(_sessions.c.id == _hash(token)))
        with self._engine.begin() as conn:
            row = conn.execute(query).one_or_none()
        if row is None or row.expires_at <= now():
            raise SessionError("your session has ended; sign in again", EXPIRED)
        refusal = key_refusal(row.prefix, row.revoked_at, row.key_expires_at)
        if refusal:
            raise SessionError(f"{refusal}; sign in with another key", REVOKED if row.revoked_at else KEY_EXPIRED)
        return Session(Principal(row.tenant, row.key_id, tuple(row.scopes.split(",")), row.name), row.csrf,
                       row.expires_at)

    def close(self, token: str) -> None:
        """Sign out: the session's cookie stops working at once."""
        with self._engine.begin() as conn:
            conn.execute(delete(_sessions).where(_sessions.c.id == _hash(token)))
