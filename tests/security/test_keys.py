"""TenantStore on every backend: tenants, API keys (only their SHA-256 stored), scopes, revocation, last use."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from tailor.db import open_engine
from tailor.errors import AuthenticationError, NotFoundError, UsageError
from tailor.security.keys import SCOPES, TenantStore, parse_scopes


@pytest.fixture
def store(db_url):
    return TenantStore(db_url)


def key_rows(db_url) -> list[dict]:
    with open_engine(db_url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM api_keys ORDER BY created_at"))]


def test_create_tenant_returns_a_secret_once_and_an_admin_key(store, db_url):
    key, secret = store.create_tenant("acme")

    assert secret.startswith("tk-") and len(secret) == 3 + 43
    assert key.tenant == "acme" and key.name == "default"
    assert key.scopes == SCOPES == ("read", "train", "deploy", "admin")
    assert key.prefix == secret[:10] and key.id.startswith("key_")
    assert key.last_used_at is None and key.revoked_at is None
    assert "secret" not in key.to_dict() and secret not in str(key.to_dict())
    [row] = key_rows(db_url)
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in [str(v) for v in row.values()]
    assert store.list_tenants() == [{"name": "acme", "created_at": store.list_tenants()[0]["created_at"],
                                     "active_keys": 1}]


def test_authenticate_gives_the_tenant_and_scopes(store):
    key, secret = store.create_tenant("acme")
    principal = store.authenticate(secret)
    assert (principal.tenant, principal.key_id, principal.scopes) == ("acme", key.id, SCOPES)
    assert principal.allows("deploy")


def test_duplicate_tenant_is_refused(store):
    store.create_tenant("acme")
    with pytest.raises(UsageError) as raised:
        store.create_tenant("acme")
    assert str(raised.value) == "tenant 'acme' already exists"
    assert [t["name"] for t in store.list_tenants()] == ["acme"]


@pytest.mark.parametrize("name", ["Acme", "ac me", "a" * 33, "-acme", ""])
def test_invalid_tenant_names_are_refused(store, name):
    with pytest.raises(UsageError) as raised:
        store.create_tenant(name)
    assert str(raised.value) == (f"invalid tenant name {name!r}: use 1-32 lowercase letters, digits or '-', "
                                 "starting with a letter or digit")
    assert store.list_tenants() == []


def test_a_32_character_name_is_the_longest_allowed(store):
    store.create_tenant("a" * 32)
    assert [t["name"] for t in store.list_tenants()] == ["a" * 32]


def test_create_key_parses_scopes(store):
    store.create_tenant("acme")
    key, secret = store.create_key("acme", "ci", "train, read")
    assert key.scopes == ("read", "train") and key.name == "ci"
    assert store.authenticate(secret).scopes == ("read", "train")
    assert not store.authenticate(secret).allows("deploy")
    assert store.create_key("acme", "ops", ["deploy"])[0].scopes == ("deploy",)


def test_unknown_or_missing_scope_is_refused(store):
    store.create_tenant("acme")
    with pytest.raises(UsageError) as raised:
        store.create_key("acme", "ci", "read,write")
    assert str(raised.value) == "unknown scope 'write'; scopes are: read, train, deploy, admin"
    with pytest.raises(UsageError) as raised:
        parse_scopes(" , ")
    assert str(raised.value) == "give at least one scope: read, train, deploy, admin"
    assert len(store.list_keys("acme")) == 1


def test_create_key_for_an_unknown_tenant(store):
    with pytest.raises(NotFoundError) as raised:
        store.create_key("nobody", "ci", "read")
    assert str(raised.value) == "tenant 'nobody' not found; create it with: tailor tenants create nobody"


def test_list_keys_oldest_first_per_tenant(store):
    admin, _ = store.create_tenant("acme")
    reader, _ = store.create_key("acme", "reader", "read")
    other, _ = store.create_tenant("globex")
    assert [k.id for k in store.list_keys("acme")] == [admin.id, reader.id]
    assert [k.id for k in store.list_keys("globex")] == [other.id]


def test_revoked_key_is_refused_by_prefix(store):
    store.create_tenant("acme")
    key, secret = store.create_key("acme", "ci", "read")
    revoked = store.revoke_key(key.id)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthenticationError) as raised:
        store.authenticate(secret)
    assert str(raised.value) == f"API key {secret[:10]}... was revoked"
    assert [t["active_keys"] for t in store.list_tenants()] == [1]
    assert store.revoke_key(key.id).revoked_at == revoked.revoked_at  # revoking again keeps the first time


def test_a_key_with_a_lifetime_works_until_it_expires_then_is_refused_with_the_time(store, db_url):
    store.create_tenant("acme")
    key, secret = store.create_key("acme", "contractor", "read", expires_in_days=30)
    assert round((key.expires_at - key.created_at).total_seconds()) == 30 * 86400
    assert key.to_dict()["expires_at"] == key.expires_at.isoformat()
    assert store.authenticate(secret).key_id == key.id
    with open_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE api_keys SET expires_at = :t WHERE id = :id"),
                     {"t": datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc), "id": key.id})
    with pytest.raises(AuthenticationError) as raised:
        store.authenticate(secret)
    assert str(raised.value) == f"API key {secret[:10]}... expired at 2026-01-02 03:04 UTC"
    assert [t["active_keys"] for t in store.list_tenants()] == [1]  # the tenant's admin key only
    assert store.create_tenant("globex")[0].expires_at is None


@pytest.mark.parametrize("days", [0, -1])
def test_a_lifetime_that_is_not_positive_is_refused(store, days):
    store.create_tenant("acme")
    with pytest.raises(UsageError) as raised:
        store.create_key("acme", "x", "read", expires_in_days=days)
    assert str(raised.value) == f"a key's lifetime must be more than 0 days, not {days}"


def test_revoke_unknown_key(store):
    with pytest.raises(NotFoundError) as raised:
        store.revoke_key("key_nope")
    assert str(raised.value) == "API key 'key_nope' not found"


def test_unknown_key_is_refused(store):
    store.create_tenant("acme")
    with pytest.raises(AuthenticationError) as raised:
        store.authenticate("tk-not-a-real-key")
    assert str(raised.value) == "invalid API key"


def test_last_used_at_is_set_on_first_use(store):
    key, secret = store.create_tenant("acme")
    assert store.list_keys("acme")[0].last_used_at is None
    store.authenticate(secret)
    first = store.list_keys("acme")[0].last_used_at
    assert first is not None and first >= key.created_at
    store.authenticate(secret)  # within a minute: not written again
    assert store.list_keys("acme")[0].last_used_at == first


def test_a_tenant_sets_and_clears_its_own_retention_limits(store):
    store.create_tenant("acme")
    assert store.retention("acme") == (None, None) and store.retention("nobody") == (None, None)
    store.set_retention("acme", 7, None)
    assert store.retention("acme") == (7, None)
    store.set_retention("acme", None, 500)
    assert store.retention("acme") == (None, 500)
    with pytest.raises(UsageError, match="retention rows must be at least 1, got 0"):
        store.set_retention("acme", 3, 0)
    with pytest.raises(NotFoundError, match="tenant 'globex' not found"):
        store.set_retention("globex", 3, 3)
