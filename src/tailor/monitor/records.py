"""What every inference request did, one row per answer: the ``predictions`` table and its store.

A row is written for each text a classifier labels (``kind`` ``classification``, its id the ``id`` of the
response's ``data`` item), each embeddings request (``embedding``) and each chat or text completion
(``chat.completion``, ``text_completion``, its id OpenAI's ``id``), and each request that failed once its
model was known (``error``, its status and message in ``details``). It holds who asked (tenant), which model
answered (the id the client sent, and the registered model's name and version, or the base's id with no
version), when, how long the request took, its tokens, and the answer: the label with every label's
probability, or the generated text. The input (a classified text, a chat's messages, a prompt) is kept only
when the request says ``"store": true``; statistics need none of it.

Rows are written off the request path in batches (:mod:`tailor.monitor.recorder`) and pruned per tenant
by age and count (:meth:`PredictionStore.prune`), oldest first. With a master key configured, the client's
text in a row (the stored ``input``, a completion's ``output``, the client's ``metadata`` tags and the ``details``,
whose error message may quote the input) is sealed under the tenant's data key (:mod:`tailor.security.crypto`);
rows written before encryption was switched on are read as they are. Labels, scores and the text features stay
plain: the monitoring reports aggregate them over many rows.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, delete, func, insert, select, update

from tailor.db import JsonText, UtcDateTime, now, open_engine
from tailor.errors import NotFoundError
from tailor.security.crypto import Keyring, open_keyring, open_value
from tailor.security.sealing import SealableJson, open_json, preload, seal_json

KINDS = ("classification", "embedding", "chat.completion", "text_completion", "error")
ID_PREFIXES = {"classification": "pred-", "embedding": "emb-", "chat.completion": "chatcmpl-",
               "text_completion": "cmpl-", "error": "err-"}

_metadata = MetaData()
_predictions = Table(
    "predictions", _metadata,
    Column("id", String(40), primary_key=True), Column("tenant", String(64)), Column("kind", String(24)),
    Column("request_id", String(40)), Column("model", Text), Column("model_name", String(200)),
    Column("version", Integer), Column("created_at", UtcDateTime), Column("latency_ms", Float),
    Column("prompt_tokens", Integer), Column("completion_tokens", Integer), Column("label", Text),
    Column("score", Float), Column("scores", JsonText), Column("output", Text), Column("input", JsonText),
    Column("stored", Integer), Column("metadata", SealableJson), Column("details", SealableJson),
    Column("features", JsonText),
)


def new_id(kind: str) -> str:
    """A fresh record id in OpenAI's style for ``kind`` (``pred-``, ``emb-``, ``chatcmpl-``, ``cmpl-`` + 24 hex)."""
    return ID_PREFIXES[kind] + secrets.token_hex(12)


@dataclass(frozen=True)
class PredictionRecord:
    """One answer a served model gave.

    Attributes:
        id: the answer's id, as the response gave it.
        request_id: the response's id (several classification answers share one request).
        model: the model id the client sent (``acme-sentiment@prod``, ``ft:...``, a base id).
        model_name / version: the registered model and version that answered; a base's id and None.
        latency_ms: the request's time in the server, from its arrival to its answer.
        label / score / scores: a classification's label (None when abstained), top probability and every
            label's probability.
        output: a completion's generated text.
        input: the stored input (``{"text": ...}``, ``{"messages": [...]}``, ``{"prompt": ...}``), None unless
            the request asked to store it.
        metadata: the client's string key-value tags (OpenAI's ``metadata``).
        details: what else the answer had (a completion's ``finish_reason`` and ``created``, an abstention's
            reason, an embeddings request's text count).
        features: a classified text's length, main script and unknown tokens
            (:func:`tailor.data.fingerprint.text_features`), kept whether or not the text is.
    """

    id: str
    tenant: str
    kind: str
    model: str
    model_name: str
    version: int | None
    request_id: str | None = None
    created_at: datetime = field(default_factory=now)
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    label: str | None = None
    score: float | None = None
    scores: dict | None = None
    output: str | None = None
    input: dict | None = None
    metadata: dict | None = None
    details: dict | None = None
    features: dict | None = None

    @property
    def stored(self) -> bool:
        return self.input is not None


def seal(keys: Keyring | None, tenant: str, text: str | None) -> str | None:
    """``text`` sealed under the tenant's data key when encryption is on (None stays None)."""
    return text if keys is None or text is None else keys.seal_text(tenant, text)


def unseal(keys: Keyring | None, tenant: str, value: str | None) -> str | None:
    """The text of a stored value (sealed or from before encryption; None stays None)."""
    return None if value is None else open_value(keys, tenant, value)


def seal_input(keys: Keyring | None, tenant: str, stored: dict | None) -> dict | str | None:
    """A stored input for its JSON column: the dict itself, or its JSON sealed when encryption is on."""
    if keys is None or stored is None:
        return stored
    return keys.seal_text(tenant, json.dumps(stored, sort_keys=True, ensure_ascii=False))


def unseal_input(keys: Keyring | None, tenant: str, value: dict | str | None) -> dict | None:
    """The stored input of a row: a dict written before encryption, or the sealed JSON opened."""
    return json.loads(open_value(keys, tenant, value)) if isinstance(value, str) else value


def _row(record: PredictionRecord, keys: Keyring | None) -> dict:
    return {"id": record.id, "tenant": record.tenant, "kind": record.kind, "request_id": record.request_id,
            "model": record.model, "model_name": record.model_name, "version": record.version,
            "created_at": record.created_at, "latency_ms": record.latency_ms, "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens, "label": record.label, "score": record.score,
            "scores": record.scores, "output": seal(keys, record.tenant, record.output),
            "input": seal_input(keys, record.tenant, record.input),
            "stored": int(record.stored), "metadata": seal_json(keys, record.tenant, record.metadata),
            "details": seal_json(keys, record.tenant, record.details),
            "features": record.features}


def _record(row, keys: Keyring | None) -> PredictionRecord:
    return PredictionRecord(
        id=row.id, tenant=row.tenant, kind=row.kind, model=row.model, model_name=row.model_name,
        version=row.version, request_id=row.request_id, created_at=row.created_at, latency_ms=row.latency_ms,
        prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens, label=row.label,
        score=row.score, scores=row.scores, output=unseal(keys, row.tenant, row.output),
        input=unseal_input(keys, row.tenant, row.input), metadata=open_json(keys, row.tenant, row.metadata),
        details=open_json(keys, row.tenant, row.details), features=row.features)


class PredictionStore:
    """The ``predictions`` table (created by migration ``m005_predictions``) on the shared database; client
    text sealed when ``settings`` (read from the environment by default) configure a master key."""

    def __init__(self, url: str, settings=None):
        self._engine = open_engine(url)
        self.keys = open_keyring(url, settings)

    def add(self, records: list[PredictionRecord]) -> None:
        """Insert ``records`` in one transaction."""
        if records:
            # sealed before the transaction: a tenant's first key is created in a transaction of its own
            rows = [_row(r, self.keys) for r in records]
            with self._engine.begin() as conn:
                conn.execute(insert(_predictions), rows)

    def get(self, tenant: str, record_id: str, kind: str | None = None, stored: bool = False) -> PredictionRecord:
        """The tenant's record ``record_id`` (of ``kind``; with ``stored``, only one whose input was kept).

        Raises:
            NotFoundError: no such record for this tenant (another tenant's id is not found either).
        """
        query = select(_predictions).where(_predictions.c.tenant == tenant, _predictions.c.id == record_id)
        if kind is not None:
            query = query.where(_predictions.c.kind == kind)
        if stored:
            query = query.where(_predictions.c.stored == 1)
        with self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            what = "stored completion" if stored else "prediction"
            raise NotFoundError(f"{what} {record_id!r} not found")
        return _record(row, self.keys)

    def list_stored(self, tenant: str, kind: str, *, model: str | None = None, metadata: dict | None = None,
                    after: str | None = None, limit: int = 20, newest_first: bool = False
                    ) -> tuple[list[PredictionRecord], bool]:
        """The tenant's stored records of ``kind`` in creation order (``newest_first`` reverses it): those for
        ``model`` (the id the client sent) whose metadata holds every pair of ``metadata``, after the record
        ``after``; returns ``(up to limit records, whether more follow)``.

        Raises:
            NotFoundError: ``after`` is not one of the tenant's stored records of ``kind``.
        """
        table = _predictions.c
        query = select(_predictions).where(table.tenant == tenant, table.kind == kind, table.stored == 1)
        if model is not None:
            query = query.where(table.model == model)
        order = (table.created_at.desc(), table.id.desc()) if newest_first else (table.created_at, table.id)
        if after is not None:
            cursor = self.get(tenant, after, kind, stored=True)
            if newest_first:
                query = query.where((table.created_at < cursor.created_at)
                                    | ((table.created_at == cursor.created_at) & (table.id < cursor.id)))
            else:
                query = query.where((table.created_at > cursor.created_at)
                                    | ((table.created_at == cursor.created_at) & (table.id > cursor.id)))
        wanted = dict(metadata or {})
        rows = []
        if wanted:
            preload(self.keys, tenant)  # the metadata is opened while the connection is open
        with self._engine.connect() as conn:
            # metadata is JSON text, sealed or not: filtered here rather than in SQL, so every database behaves alike
            for row in conn.execute(query.order_by(*order)):
                tags = open_json(self.keys, tenant, row.metadata) if wanted else None
                if all((tags or {}).get(k) == v for k, v in wanted.items()):
                    rows.append(row)
                    if len(rows) > limit:
                        break
        # opened once the connection is closed (a key lookup must not wait on this transaction)
        return [_record(row, self.keys) for row in rows[:limit]], len(rows) > limit

    def update_metadata(self, tenant: str, record_id: str, kind: str, metadata: dict) -> PredictionRecord:
        """Replace a stored record's metadata; returns the updated record.

        Raises:
            NotFoundError: no such stored record for this tenant.
        """
        record = self.get(tenant, record_id, kind, stored=True)
        sealed = seal_json(self.keys, tenant, metadata)  # before the transaction, like every seal
        with self._engine.begin() as conn:
            conn.execute(update(_predictions).where(_predictions.c.id == record.id).values(metadata=sealed))
        return replace(record, metadata=metadata)

    def delete(self, tenant: str, record_id: str, kind: str) -> None:
        """Delete a stored record.

        Raises:
            NotFoundError: no such stored record for this tenant.
        """
        record = self.get(tenant, record_id, kind, stored=True)
        with self._engine.begin() as conn:
            conn.execute(delete(_predictions).where(_predictions.c.id == record.id))

    def answers(self, tenant: str, model_name: str, version: int | None, since: datetime, until: datetime,
                kind: str = "classification", *, stored: bool = False,
                newest: int | None = None) -> list[PredictionRecord]:
        """The tenant's records of ``kind`` by that model version, created in ``[since, until)``, oldest first;
        with ``stored``, only those whose input was kept; with ``newest``, only the newest that many."""
        table = _predictions.c
        query = select(_predictions).where(
            table.tenant == tenant, table.model_name == model_name, table.kind == kind,
            table.version.is_(None) if version is None else table.version == version,
            table.created_at >= since, table.created_at < until)
        if stored:
            query = query.where(table.stored == 1)
        if newest is not None:
            query = query.order_by(table.created_at.desc(), table.id.desc()).limit(newest)
            with self._engine.connect() as conn:
                rows = list(reversed(conn.execute(query).all()))
            return [_record(row, self.keys) for row in rows]
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(table.created_at, table.id)).all()
        return [_record(row, self.keys) for row in rows]

    def versions(self, tenant: str, model_name: str, since: datetime, kind: str = "classification") -> list[int]:
        """The versions of the tenant's model that answered (``kind``) since ``moment``, ascending."""
        table = _predictions.c
        query = select(table.version).distinct().where(
            table.tenant == tenant, table.model_name == model_name, table.kind == kind, table.version.is_not(None),
            table.created_at >= since)
        with self._engine.connect() as conn:
            return sorted(conn.scalars(query))

    def since(self, moment: datetime, kind: str = "classification") -> list[PredictionRecord]:
        """Every tenant's records of ``kind`` created at or after ``moment``, oldest first (for /metrics)."""
        table = _predictions.c
        query = (select(_predictions).where(table.kind == kind, table.created_at >= moment)
                 .order_by(table.created_at, table.id))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_record(row, self.keys) for row in rows]

    def count(self, tenant: str, kind: str | None = None) -> int:
        """How many records the tenant has (of ``kind``)."""
        query = select(func.count()).select_from(_predictions).where(_predictions.c.tenant == tenant)
        if kind is not None:
            query = query.where(_predictions.c.kind == kind)
        with self._engine.connect() as conn:
            return int(conn.scalar(query))

    def usage(self, tenant: str, since: datetime) -> list[dict]:
        """What the tenant's records created since ``since`` add up to, per model and kind, by model then kind:
        ``{"model", "kind", "requests", "answers", "prompt_tokens", "completion_tokens"}``. A request is one
        response (a classification request answers each of its texts; a shadow copy's answers join its
        request's), ``model`` the registered model's name or the base's id."""
        table = _predictions.c
        query = (select(table.model_name, table.kind,
                        func.count(func.distinct(func.coalesce(table.request_id, table.id))).label("requests"),
                        func.count().label("answers"),
                        func.coalesce(func.sum(table.prompt_tokens), 0).label("prompt_tokens"),
                        func.coalesce(func.sum(table.completion_tokens), 0).label("completion_tokens"))
                 .where(table.tenant == tenant, table.created_at >= since)
                 .group_by(table.model_name, table.kind).order_by(table.model_name, table.kind))
        with self._engine.connect() as conn:
            return [{"model": row.model_name, "kind": row.kind, "requests": int(row.requests),
                     "answers": int(row.answers), "prompt_tokens": int(row.prompt_tokens),
                     "completion_tokens": int(row.completion_tokens)} for row in conn.execute(query)]

    def tenants(self) -> list[str]:
        """Tenants that have records."""
        with self._engine.connect() as conn:
            return sorted(conn.scalars(select(_predictions.c.tenant).distinct()))

    def prune(self, tenant: str, older_than: datetime, keep_rows: int) -> int:
        """Delete the tenant's records created before ``older_than``, then its oldest beyond the newest
        ``keep_rows``; returns how many went."""
        table = _predictions.c
        with self._engine.begin() as conn:
            gone = conn.execute(delete(_predictions).where(table.tenant == tenant, table.created_at < older_than))
            removed = gone.rowcount or 0
            # the newest keep_rows-th record's time and id: everything strictly older than it goes
            edge = conn.execute(select(table.created_at, table.id).where(table.tenant == tenant)
                                .order_by(table.created_at.desc(), table.id.desc())
                                .offset(keep_rows).limit(1)).one_or_none()
            if edge is not None:
                gone = conn.execute(delete(_predictions).where(
                    table.tenant == tenant,
                    (table.created_at < edge.created_at) | ((table.created_at == edge.created_at) & (table.id <= edge.id))))
                removed += gone.rowcount or 0
        return removed
