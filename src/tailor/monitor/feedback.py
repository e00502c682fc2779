"""Feedback on served answers: the true label of a classification, or a rating and a corrected answer for a
completion, one per answer (a later one replaces it), kept per tenant in the ``feedback`` table.

:func:`give_feedback` checks a whole batch before writing any of it: every id must be one of the tenant's
recorded answers of the right kind, and a label one the answering version knows (its recorded probabilities
name them all), so a typo never becomes a silent training label. A correction is client text: sealed under the
tenant's data key when a master key is configured, like the answers' stored inputs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Column, MetaData, String, Table, Text, delete, func, insert, select

from tailor.db import UtcDateTime, now, open_engine
from tailor.errors import NotFoundError, UsageError
from tailor.monitor.records import PredictionStore, seal, unseal, unseal_input
from tailor.security.crypto import open_keyring
from tailor.monitor.records import _predictions  # the answers feedback is joined with (one database)

RATINGS = ("up", "down")
COMPLETION_KINDS = ("chat.completion", "text_completion")

_metadata = MetaData()
_feedback = Table(
    "feedback", _metadata,
    Column("id", String(40), primary_key=True), Column("tenant", String(64)), Column("record_id", String(40)),
    Column("label", Text), Column("rating", String(8)), Column("correction", Text), Column("created_at", UtcDateTime),
)


@dataclass(frozen=True)
class Feedback:
    """Feedback on one recorded answer: ``label`` for a classification; ``rating`` and/or ``correction``
    for a completion."""

    tenant: str
    record_id: str
    label: str | None = None
    rating: str | None = None
    correction: str | None = None
    id: str = field(default_factory=lambda: "fb-" + secrets.token_hex(12))
    created_at: datetime = field(default_factory=now)

    def to_dict(self) -> dict:
        out = {"id": self.id, "object": "feedback", "created_at": int(self.created_at.timestamp())}
        if self.label is not None:
            out |= {"prediction_id": self.record_id, "label": self.label}
        else:
            out |= {"completion_id": self.record_id, "rating": self.rating, "correction": self.correction}
        return out


class FeedbackStore:
    """The ``feedback`` table (migration ``m005_predictions``); corrections sealed when ``settings`` (read from
    the environment by default) configure a master key."""

    def __init__(self, url: str, settings=None):
        self._engine = open_engine(url)
        self.keys = open_keyring(url, settings)

    def put(self, items: list[Feedback]) -> None:
        """Write ``items`` in one transaction, each replacing earlier feedback on the same answer."""
        # sealed before the transaction: a tenant's first key is created in a transaction of its own
        rows = [{"id": i.id, "tenant": i.tenant, "record_id": i.record_id, "label": i.label, "rating": i.rating,
                 "correction": seal(self.keys, i.tenant, i.correction), "created_at": i.created_at} for i in items]
        with self._engine.begin() as conn:
            for item in items:
                conn.execute(delete(_feedback).where(_feedback.c.tenant == item.tenant,
                                                     _feedback.c.record_id == item.record_id))
            conn.execute(insert(_feedback), rows)

    def for_records(self, tenant: str, record_ids: list[str]) -> dict[str, Feedback]:
        """The tenant's feedback on those answers, by answer id."""
        rows = []
        with self._engine.connect() as conn:
            for start in range(0, len(record_ids), 500):  # keep each IN list small
                rows += conn.execute(select(_feedback).where(_feedback.c.tenant == tenant,
                                                             _feedback.c.record_id.in_(record_ids[start:start + 500])))
        # opened once the connection is closed (a key lookup must not wait on this transaction)
        return {r.record_id: Feedback(r.tenant, r.record_id, r.label, r.rating,
                                      unseal(self.keys, r.tenant, r.correction), r.id, r.created_at) for r in rows}

    def remove(self, tenant: str, record_id: str) -> bool:
        """Delete the tenant's feedback on the answer ``record_id`` (undoing a label); False when it had none."""
        with self._engine.begin() as conn:
            deleted = conn.execute(delete(_feedback).where(_feedback.c.tenant == tenant,
                                                           _feedback.c.record_id == record_id))
        return deleted.rowcount > 0

    def labelled_texts(self, tenant: str, model_names, since: datetime | None = None) -> list[tuple[str, str]]:
        """``(text, true label)`` for each of the tenant's stored classification answers by any version of the
        models ``model_names`` that has a feedback label (given at ``since`` or later, when set), oldest answer
        first (one query, joining the answers).

        An answer counts whichever id the client sent (``sentiment@prod``, ``sentiment:3``), so feedback on an
        alias's traffic is feedback on the model. Answers whose text was not stored cannot be scored again and
        are left out; so is a completion's rating.
        """
        answers = _predictions.c
        query = (select(answers.input, _feedback.c.label)
                 .join(_feedback, (_feedback.c.record_id == answers.id) & (_feedback.c.tenant == answers.tenant))
                 .where(answers.tenant == tenant, answers.kind == "classification", answers.stored == 1,
                        answers.model_name.in_(sorted(set(model_names))), _feedback.c.label.is_not(None))
                 .order_by(answers.created_at, answers.id))
        if since is not None:
            query = query.where(_feedback.c.created_at >= since)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        stored_labels = [(unseal_input(self.keys, tenant, stored), label) for stored, label in rows]
        return [(stored["text"], label) for stored, label in stored_labels
                if isinstance((stored or {}).get("text"), str)]

    def corrections(self, tenant: str, model_name: str) -> list[dict]:
        """The corrected answers given on the tenant's stored chat completions of model ``model_name`` (any
        version) as chat fine-tuning rows, oldest first: the conversation as it was sent, then the correction
        as the assistant's answer (``{"messages": [...]}``, the format a chat job trains on)."""
        answers = _predictions.c
        query = (select(answers.input, _feedback.c.correction)
                 .join(_feedback, (_feedback.c.record_id == answers.id) & (_feedback.c.tenant == answers.tenant))
                 .where(answers.tenant == tenant, answers.kind == "chat.completion", answers.stored == 1,
                        answers.model_name == model_name, _feedback.c.correction.is_not(None))
                 .order_by(answers.created_at, answers.id))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        opened = [(unseal_input(self.keys, tenant, stored), unseal(self.keys, tenant, correction))
                  for stored, correction in rows]
        return [{"messages": [{k: v for k, v in m.items() if v is not None} for m in stored["messages"]]
                 + [{"role": "assistant", "content": correction}]}
                for stored, correction in opened if correction.strip()]

    def count(self, tenant: str) -> int:
        with self._engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(_feedback).where(_feedback.c.tenant == tenant)))


def give_feedback(records: PredictionStore, feedback: FeedbackStore, tenant: str, items: list[dict]) -> list[Feedback]:
    """Check and write a batch of feedback; nothing is written unless every item is right.

    Args:
        items: ``{"prediction_id", "label"}`` for classifications, ``{"completion_id", "rating"?,
            "correction"?}`` for completions.

    Raises:
        NotFoundError: an id that is not one of the tenant's answers of that kind (``feedback[i]`` named).
        UsageError: a label the answering version does not know, or a completion item with neither a rating
            nor a correction.
    """
    checked = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if item.get("prediction_id") is not None:
            record = _answer(records, tenant, item["prediction_id"], ("classification",), where, "prediction")
            known = sorted(record.scores or {})
            if item.get("label") not in known:
                raise UsageError(f"{where}.label: {item.get('label')!r} is not a label of {record.model_name}"
                                 f"{'' if record.version is None else f':{record.version}'} (its labels: "
                                 f"{', '.join(known)})")
            checked.append(Feedback(tenant, record.id, label=item["label"]))
        else:
            record = _answer(records, tenant, item["completion_id"], COMPLETION_KINDS, where, "completion")
            if item.get("rating") is None and not item.get("correction"):
                raise UsageError(f"{where}: give a rating ({' or '.join(RATINGS)}), a correction, or both")
            checked.append(Feedback(tenant, record.id, rating=item.get("rating"), correction=item.get("correction")))
    ids = [f.record_id for f in checked]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise UsageError(f"feedback: {duplicate!r} is given more than once in one request")
    feedback.put(checked)
    return checked


def _answer(records: PredictionStore, tenant: str, record_id: str, kinds: tuple[str, ...], where: str, what: str):
    try:
        record = records.get(tenant, record_id)
    except NotFoundError:
        raise NotFoundError(f"{where}: {what} {record_id!r} not found") from None
    if record.kind not in kinds:
        raise NotFoundError(f"{where}: {what} {record_id!r} not found (it is a {record.kind} answer)")
    return record
