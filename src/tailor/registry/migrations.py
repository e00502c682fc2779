"""The registry's schema as ordered, named steps, each applied once in its own transaction.

A step is a frozen snapshot: never edit one that has shipped; add ``m002_...`` that alters the tables and
update the query-side tables in :mod:`tailor.registry.sql` to match. Applied steps are recorded in
``tailor_migrations(name, applied_at)``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError

_record_metadata = MetaData()
_applied = Table(
    "tailor_migrations",
    _record_metadata,
    Column("name", String(100), primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


def _m001_initial(conn: Connection) -> None:
    metadata = MetaData()
    Table(
        "models",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("tenant", String(64), nullable=False),
        Column("name", String(200), nullable=False),
        Column("description", Text, nullable=False),
        # The highest version number ever allocated, so numbers are never reused after a delete.
        Column("last_version", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("tenant", "name"),
    )
    Table(
        "model_versions",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
        Column("version", Integer, nullable=False),
        Column("task", String(50), nullable=False),
        Column("base_model", Text, nullable=False),
        Column("method", String(50), nullable=False),
        Column("artifact_path", Text, nullable=False),
        Column("params", Text, nullable=False),
        Column("metrics", Text, nullable=False),
        Column("lineage", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("model_id", "version"),
    )
    Table(
        "aliases",
        metadata,
        Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
        Column("alias", String(32), primary_key=True),
        Column("version", Integer, nullable=False),
        ForeignKeyConstraint(["model_id", "version"], ["model_versions.model_id", "model_versions.version"]),
    )
    metadata.create_all(conn)


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("m001_initial", _m001_initial),
]


def applied_migrations(engine: Engine) -> list[str]:
    """Names of the applied steps in the order they were applied; empty for a blank database."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, _applied.name):
            return []
        return list(conn.scalars(select(_applied.c.name).order_by(_applied.c.applied_at, _applied.c.name)))


def migrate(engine: Engine) -> list[str]:
    """Apply the steps not yet applied, each with its record in one transaction; return their names.

    Running it again is a no-op.
    """
    try:
        return _apply_pending(engine)
    except DBAPIError:
        # Two processes migrating one PostgreSQL database at once: the loser's DDL fails when the winner
        # commits. A second pass then finds the steps recorded, or raises the real error again.
        return _apply_pending(engine)


def _apply_pending(engine: Engine) -> list[str]:
    with engine.begin() as conn:
        _record_metadata.create_all(conn)
    newly_applied = []
    for name, step in MIGRATIONS:
        with engine.begin() as conn:
            if conn.scalar(select(_applied.c.name).where(_applied.c.name == name)) is not None:
                continue
            step(conn)
            conn.execute(insert(_applied).values(name=name, applied_at=datetime.now(timezone.utc)))
        newly_applied.append(name)
    return newly_applied
