"""The audit log: every state-changing action (who, on what, from where, how it ended, when), append-only and
hash-chained, so that an edited, deleted or cut-off row is found by :meth:`AuditLog.verify`.

A row holds ``seq`` (1, 2, 3, ... over every tenant), ``tenant`` (None for an unauthenticated request),
``actor`` (an API key id, ``console:<key id>`` for the web console, ``cli:<os user>`` for the CLI, or
``anonymous``), ``action`` (``POST /v1/fine_tuning/jobs`` as its route template, or a CLI verb such as
``models alias``), ``target`` (the ids it acted on), ``client`` (the caller's address), ``result`` (an HTTP status,
or ``ok``/``error`` from the CLI), ``error`` (the refusal's message) and ``at`` (UTC). Its ``hash`` is the SHA-256
of the previous row's hash followed by the canonical JSON of those fields (sorted keys, no spaces), so changing a
field, deleting a row or re-ordering rows breaks the chain from there on.

The chain's head (the last seq and hash) is one row of its own, read with ``SELECT ... FOR UPDATE`` and
rewritten in the same transaction as each append: appends from several processes (job workers, API replicas
over one PostgreSQL) queue on that lock and stay one line (SQLite serializes them with its write lock, which
every transaction takes when it begins, see :func:`tailor.db.create_db_engine`). Rows cut off the end of the
chain are found by comparing it with the head; to catch an attacker who rewrites the head too, keep the head
hash that ``tailor audit verify`` prints somewhere else and compare.

With a master key configured, a row's ``error`` (a refusal's message may quote the client's data) is sealed under
its tenant's data key (``tenc1:...``; a row without a tenant, or naming none that exists, keeps it plain). The
hash covers the row as stored, the sealed text included: the chain is verified without any key, so it still
verifies after the master key is rotated (the data keys, hence the sealed texts, do not change) and after a tenant
is deleted and its key destroyed, while changing the sealed text breaks it like any edit. :meth:`AuditLog.list`
shows the error opened, or :data:`tailor.security.sealing.ERASED` once its tenant's key is gone.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, insert, select, update

from tailor.db import JsonText, UtcDateTime, now, open_engine
from tailor.security.crypto import open_keyring
from tailor.security.sealing import open_str_or_placeholder, seal_str
from tailor.settings import get_settings

GENESIS = "0" * 64  # the prev_hash of the first row
ANONYMOUS = "anonymous"  # the actor of a request refused before its key was known
_MAX_ERROR_CHARS = 500
_MAX_FIELD_CHARS = 200

_metadata = MetaData()
_log = Table(
    "audit_log", _metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False), Column("tenant", String(64)),
    Column("actor", Text), Column("action", Text), Column("target", JsonText), Column("client", String(64)),
    Column("result", String(16)), Column("error", Text), Column("at", UtcDateTime), Column("prev_hash", String(64)),
    Column("hash", String(64)),
)
_head = Table("audit_head", _metadata, Column("id", Integer, primary_key=True), Column("seq", BigInteger),
              Column("hash", String(64)))
_tenants = Table("tenants", _metadata, Column("name", String(64), primary_key=True))
_tenant_keys = Table("tenant_keys", _metadata, Column("id", String(40), primary_key=True), Column("tenant", String(64)))


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log (``error`` as stored, sealed or not, in what :meth:`AuditLog.record` returns and
    what the hash covers; opened for reading in what :meth:`AuditLog.list` returns)."""

    seq: int
    tenant: str | None
    actor: str
    action: str
    target: dict[str, Any]
    client: str | None
    result: str
    error: str | None
    at: datetime
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, Any]:
        """The fields the row's hash covers (every column but the two hashes)."""
        return {"seq": self.seq, "tenant": self.tenant, "actor": self.actor, "action": self.action,
                "target": self.target, "client": self.client, "result": self.result, "error": self.error,
                "at": _iso(self.at)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.fields(), "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True)
class ChainReport:
    """What :meth:`AuditLog.verify` found: the rows it checked and the head, or the first broken row and why."""

    rows: int
    head: str
    bad_seq: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        if self.intact:
            return f"chain intact: {self.rows} rows, head {self.head}"
        return f"audit chain broken at seq {self.bad_seq}: {self.problem}"

    def to_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, "rows": self.rows, "head": self.head, "bad_seq": self.bad_seq,
                "problem": self.problem}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def canonical_json(fields: dict[str, Any]) -> str:
    """The one text of ``fields`` the hash is computed over: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``prev_hash`` followed by the canonical JSON of a row's ``fields``."""
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode()).hexdigest()


def cli_actor() -> str:
    """Who the CLI acts as: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in this environment (a container without a passwd entry)
        return "cli:unknown"


def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit - 1] + "…"


def _to_entry(row) -> AuditEntry:
    return AuditEntry(row.seq, row.tenant, row.actor, row.action, row.target, row.client, row.result, row.error,
                      row.at, row.prev_hash, row.hash)


class AuditLog:
    """The audit log in the database at ``url`` (shared by every process of the service); ``settings`` say where
    the master key comes from (default: the environment's)."""

    def __init__(self, url: str, settings=None):
        self._engine = open_engine(url)
        self.keys = open_keyring(url, settings)

    def record(self, *, tenant: str | None, actor: str, action: str, result: str,
               target: dict[str, Any] | None = None, client: str | None = None, error: str | None = None) -> AuditEntry:
        """Append one action to the chain and return its row.

        Args:
            tenant: whose object it acted on (None: unknown, e.g. a request with an invalid key).
            actor: an API key id, ``console:<key id>``, ``cli:<os user>`` or ``anonymous``.
            action: the route template with its method (``DELETE /v1/files/{file_id}``) or a CLI verb.
            result: the HTTP status (``"201"``), or ``"ok"`` / ``"error"``.
            target: the ids acted on (a route's path parameters).
            client: the caller's address.
            error: why it was refused or failed (cut to 500 characters).
        """
        values = {"tenant": tenant, "actor": _clip(actor, _MAX_FIELD_CHARS), "action": _clip(action, _MAX_FIELD_CHARS),
                  "target": dict(target or {}), "client": _clip(client, 64), "result": result,
                  "error": _clip(error, _MAX_ERROR_CHARS)}
        if values["error"] is not None and self._holds_data(tenant):
            # sealed before the transaction: loading the tenant's key needs a connection of its own
            values["error"] = seal_str(self.keys, tenant, values["error"])
        with self._engine.begin() as conn:
            head = conn.execute(select(_head).where(_head.c.id == 1).with_for_update()).one()
            entry = AuditEntry(seq=head.seq + 1, at=now(), prev_hash=head.hash, hash="", **values)
            entry = replace(entry, hash=entry_hash(head.hash, entry.fields()))
            conn.execute(insert(_log).values(**asdict(entry)))
            conn.execute(update(_head).where(_head.c.id == 1).values(seq=entry.seq, hash=entry.hash))
        return entry

    def _holds_data(self, tenant: str | None) -> bool:
        """Whether an error of ``tenant`` is sealed: encryption is on and the tenant exists or has a data key. A
        name that is no tenant (a CLI verb refused for a typo, or for a deleted tenant) gets no key made for it."""
        if self.keys is None or tenant is None:
            return False
        with self._engine.connect() as conn:
            return conn.scalar(select(_tenants.c.name).where(_tenants.c.name == tenant)) is not None or \
                conn.scalar(select(_tenant_keys.c.id).where(_tenant_keys.c.tenant == tenant).limit(1)) is not None

    def list(self, tenant: str | None = None, *, since: datetime | None = None, action: str | None = None,
             after: int | None = None, limit: int = 100) -> tuple[list[AuditEntry], bool]:
        """Rows newest first, and whether older ones remain; each error opened (or shown as erased, see
        :func:`tailor.security.sealing.open_str_or_placeholder`).

        Args:
            tenant: only this tenant's rows (None: every row, the operator's view).
            since: only rows at or after this moment.
            action: only rows of exactly this action.
            after: only rows older than this seq (the cursor of the next page: the last seq of this one).
            limit: most rows returned.
        """
        query = select(_log).order_by(_log.c.seq.desc()).limit(limit + 1)
        if tenant is not None:
            query = query.where(_log.c.tenant == tenant)
        if since is not None:
            query = query.where(_log.c.at >= since)
        if action is not None:
            query = query.where(_log.c.action == action)
        if after is not None:
            query = query.where(_log.c.seq < after)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        entries = [_to_entry(r) for r in rows[:limit]]
        return [replace(e, error=open_str_or_placeholder(self.keys, e.tenant, e.error)) for e in entries], \
            len(rows) > limit

    def verify(self, *, batch: int = 1000) -> ChainReport:
        """Walk the whole chain in order and check every link, then the head.

        Returns:
            The number of rows and the head hash; or the first broken row's seq and why: a hash that does not match
            its fields (edited), a seq missing (deleted), a prev_hash that is not the previous row's hash
            (replaced), or rows missing at the end (the head records more than the chain holds).
        """
        expected_seq, prev_hash = 1, GENESIS
        with self._engine.connect() as conn:
            head = conn.execute(select(_head).where(_head.c.id == 1)).one()
            while True:
                rows = conn.execute(select(_log).where(_log.c.seq >= expected_seq).order_by(_log.c.seq)
                                    .limit(batch)).all()
                for row in rows:
                    entry = _to_entry(row)
                    problem = _link_problem(entry, expected_seq, prev_hash)
                    if problem:
                        return ChainReport(expected_seq - 1, prev_hash, *problem)
                    expected_seq, prev_hash = expected_seq + 1, entry.hash
                if len(rows) < batch:
                    break
        last = expected_seq - 1
        if head.seq > last:
            return ChainReport(last, prev_hash, last + 1,
                               f"missing: the head records {head.seq} rows, the chain ends at seq {last} "
                               "(rows were deleted from its end)")
        if head.seq < last or head.hash != prev_hash:
            return ChainReport(last, prev_hash, last,
                               f"the head records seq {head.seq} with hash {head.hash}, not this row "
                               "(rows were added outside the log, or the head was changed)")
        return ChainReport(last, prev_hash)


def _link_problem(entry: AuditEntry, expected_seq: int, prev_hash: str) -> tuple[int, str] | None:
    """``(seq, why)`` when ``entry`` does not follow the row before it (``expected_seq - 1`` with ``prev_hash``)."""
    if entry.seq != expected_seq:
        if expected_seq == 1:
            return 1, f"missing: the chain starts at seq {entry.seq} (rows were deleted from its start)"
        return expected_seq, (f"missing: the chain jumps from seq {expected_seq - 1} to seq {entry.seq} "
                              "(a row was deleted)")
    if entry.prev_hash != prev_hash:
        before = f"the hash of seq {entry.seq - 1}" if entry.seq > 1 else "the genesis hash"
        return entry.seq, f"prev_hash does not match {before} (a row was replaced)"
    if entry_hash(entry.prev_hash, entry.fields()) != entry.hash:
        return entry.seq, "hash mismatch (a field was changed after the row was written)"
    return None


def record(action: str, *, tenant: str | None, result: str = "ok", target: dict[str, Any] | None = None,
           error: str | None = None, actor: str | None = None, url: str | None = None) -> AuditEntry:
    """Append one action done outside the API (the CLI, a maintenance script) to the audit log.

    Args:
        action: what was done, e.g. ``models alias`` or ``keys rotate-master``.
        tenant: whose data it touched (None: the whole service).
        result: ``ok`` or ``error``.
        target: the ids acted on.
        error: why it failed.
        actor: who did it (default: ``cli:<os user>``).
        url: the database (default: the settings' registry).
    """
    log = AuditLog(url or get_settings().registry_url)
    return log.record(tenant=tenant, actor=actor or cli_actor(), action=action, result=result, target=target,
                      client="local", error=error)
