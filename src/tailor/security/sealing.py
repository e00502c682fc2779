"""Sealed database columns: the stores' helpers to keep a tenant's client text encrypted in the database.

A column that holds client text (a version's lineage and metrics, a job's request, result and events, an audit
row's error) keeps, with a master key configured, the value sealed under the tenant's data key
(:meth:`tailor.security.crypto.Keyring.seal_text`, ``tenc1:...``); without one, or for rows written before
encryption was switched on, the plain value. A JSON column uses :class:`SealableJson`, which stores a dict as
sorted-key JSON text (as :class:`tailor.db.JsonText`) and a sealed value as it is, so neither needs a migration.

Stores seal before they open a write transaction and open after their connection is closed: loading a data key
reads the database on a connection of its own, which on SQLite would wait for the write lock the transaction holds.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text, TypeDecorator

from tailor.security.crypto import VALUE_PREFIX, DecryptionError, Keyring, is_sealed_value, open_value

ERASED = "[erased: the tenant's data key was destroyed]"
LOCKED = "[encrypted: no master key is configured]"
ALTERED = "[unreadable: the encrypted value was altered]"


class SealableJson(TypeDecorator):
    """A dict (or list) stored as JSON text with sorted keys, or a sealed value (``tenc1:...``) stored and read
    back as the string it is (open it with :func:`open_json`)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return value if is_sealed_value(value) else json.dumps(value, sort_keys=True)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        if value is None or is_sealed_value(value):
            return value
        return json.loads(value)


def seal_json(keys: Keyring | None, tenant: str, value: Any) -> Any:
    """``value`` for a :class:`SealableJson` column: its JSON sealed when encryption is on, else itself."""
    if keys is None or value is None:
        return value
    return keys.seal_text(tenant, json.dumps(value, sort_keys=True, ensure_ascii=False))


def open_json(keys: Keyring | None, tenant: str, value: Any) -> Any:
    """What a :class:`SealableJson` column held: the sealed JSON opened, a plain value as it is.

    Raises:
        DecryptionError: a sealed value that does not open (altered, destroyed key, no master key).
    """
    return json.loads(open_value(keys, tenant, value)) if is_sealed_value(value) else value


def seal_str(keys: Keyring | None, tenant: str, text: str | None) -> str | None:
    """``text`` sealed under the tenant's data key when encryption is on (None stays None)."""
    return text if keys is None or text is None else keys.seal_text(tenant, text)


def open_str(keys: Keyring | None, tenant: str, value: str | None) -> str | None:
    """The text of a stored value, sealed or plain (None stays None). Raises DecryptionError as :func:`open_json`."""
    return None if value is None else open_value(keys, tenant, value)


def open_str_or_placeholder(keys: Keyring | None, tenant: str | None, value: str | None) -> str | None:
    """The text of a stored value for display: :data:`ERASED` when its tenant's data key was destroyed (the tenant
    was deleted), :data:`LOCKED` without a master key, :data:`ALTERED` when it does not decrypt."""
    if not is_sealed_value(value) or tenant is None:
        return value
    try:
        return open_value(keys, tenant, value)
    except DecryptionError:
        if keys is None:
            return LOCKED
        key_id = value[len(VALUE_PREFIX):].partition(":")[0]
        try:
            keys.key_by_id(key_id, tenant)
        except DecryptionError:
            return ERASED
        return ALTERED


def preload(keys: Keyring | None, *tenants: str | None) -> None:
    """Load (or create) the tenants' data keys now, before a write transaction that seals or opens their values."""
    if keys is not None:
        for tenant in tenants:
            if tenant is not None:
                keys.data_key(tenant)
