"""The database every Tailor store shares: one engine per URL and process, migrated on first open.

SQLite is the default (a file under ``TAILOR_HOME``); PostgreSQL or another server is picked by URL. Only
portable SQL is used: JSON is kept as sorted-key text, timestamps as timezone-aware UTC.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, Table, Text, TypeDecorator, and_, create_engine, event, make_url, or_

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


class UtcDateTime(TypeDecorator):
    """Aware UTC datetimes in and out; SQLite keeps no zone, so one is attached on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class JsonText(TypeDecorator):
    """A dict stored as JSON text with sorted keys, the same on every database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict | None, dialect: Any) -> str | None:
        return json.dumps(value, sort_keys=True) if value is not None else None

    def process_result_value(self, value: str | None, dialect: Any) -> dict | None:
        return json.loads(value) if value is not None else None


def create_db_engine(url: str) -> Engine:
    """A new engine for the database at ``url``.

    For SQLite, the file's directory is created, foreign keys and WAL are switched on, and every
    transaction is real (DDL included) and takes the write lock when it starts.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": 30})
    event.listen(engine, "connect", _configure_sqlite_connection)
    # Take the write lock when a transaction starts: a transaction that reads and then writes would
    # otherwise fail at once with "database is locked" when another writer got in between (WAL mode).
    # Reads queue too, which costs little: every registry transaction lasts milliseconds.
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (above); the driver's own handling would leave DDL outside transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def open_engine(url: str) -> Engine:
    """The process's engine for ``url`` (created on first use), migrated to the current schema.

    Stores opened on the same URL share it and its connection pool.
    """
    from tailor.registry.migrations import migrate

    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_db_engine(url)
    migrate(engine)
    return engine


def now() -> datetime:
    """The current time, timezone-aware UTC (what every store writes)."""
    return datetime.now(timezone.utc)


def listed_after(table: Table, created_at: datetime, row_id: str):
    """The condition for rows that come after the row ``(created_at, row_id)`` in a newest-first listing
    (by creation time, then id, both descending): the ``after`` cursor of OpenAI's list endpoints."""
    return or_(table.c.created_at < created_at, and_(table.c.created_at == created_at, table.c.id < row_id))
