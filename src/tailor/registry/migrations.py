"""The database's schema (registry, tenants, files, jobs, prediction records) as ordered, named steps, each applied once in its own transaction.

A step is a frozen snapshot: never edit one that has shipped; add ``m002_...`` that alters the tables and
update the query-side tables (in :mod:`tailor.registry.sql`, :mod:`tailor.security.keys`,
:mod:`tailor.data.files` and :mod:`tailor.jobs.store`) to match. Applied steps are recorded in
``tailor_migrations(name, applied_at)``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    DateTime,
    Engine,
    Float,
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


def _m002_service(conn: Connection) -> None:
    """Tenants and their API keys, uploaded files, fine-tuning jobs with their events and checkpoints."""
    metadata = MetaData()
    Table(
        "tenants",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "api_keys",
        metadata,
        Column("id", String(40), primary_key=True),
        Column("tenant", String(64), ForeignKey("tenants.name"), nullable=False),
        Column("name", Text, nullable=False),
        # The key itself is never stored: only its SHA-256 and a short prefix to recognise it by.
        Column("secret_hash", String(64), nullable=False, unique=True),
        Column("prefix", String(16), nullable=False),
        Column("scopes", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("last_used_at", DateTime(timezone=True)),
        Column("revoked_at", DateTime(timezone=True)),
    )
    Table(
        "files",
        metadata,
        Column("id", String(40), primary_key=True),
        Column("tenant", String(64), nullable=False),
        Column("filename", Text, nullable=False),
        Column("purpose", String(32), nullable=False),
        Column("bytes", BigInteger, nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("summary", Text, nullable=False),
        Column("relpath", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Index("ix_files_tenant_created", "tenant", "created_at"),
    )
    Table(
        "jobs",
        metadata,
        Column("id", String(40), primary_key=True),
        Column("tenant", String(64), nullable=False),
        Column("model", Text, nullable=False),
        Column("task", String(32), nullable=False),
        Column("training_file", String(40), nullable=False),
        Column("validation_file", String(40)),
        Column("suffix", String(64)),
        Column("seed", Integer, nullable=False),
        Column("request", Text, nullable=False),
        Column("status", String(32), nullable=False),
        Column("fine_tuned_model", Text),
        Column("error", Text),
        Column("result", Text),
        Column("attempts", Integer, nullable=False),
        Column("worker_id", String(64)),
        Column("heartbeat_at", DateTime(timezone=True)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("started_at", DateTime(timezone=True)),
        Column("finished_at", DateTime(timezone=True)),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_tenant_created", "tenant", "created_at"),
    )
    Table(
        "job_events",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("job_id", String(40), ForeignKey("jobs.id"), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("level", String(16), nullable=False),
        Column("type", String(16), nullable=False),
        Column("message", Text, nullable=False),
        Column("data", Text),
        Index("ix_job_events_job", "job_id", "id"),
    )
    Table(
        "job_checkpoints",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("job_id", String(40), ForeignKey("jobs.id"), nullable=False),
        Column("step", Integer, nullable=False),
        Column("metrics", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Index("ix_job_checkpoints_job", "job_id", "id"),
    )
    metadata.create_all(conn)


def _m003_alias_events(conn: Connection) -> None:
    """The history of every model's aliases: one row per set, move or removal, in the order they happened."""
    metadata = MetaData()
    Table("models", metadata, Column("id", Integer, primary_key=True))
    Table(
        "alias_events",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
        Column("alias", String(32), nullable=False),
        # No foreign key: the history outlives a deleted version. NULL means the alias was removed.
        Column("version", Integer),
        # set, unset, version_deleted (removed with its version)
        Column("action", String(16), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Index("ix_alias_events_model", "model_id", "id"),
    )
    metadata.tables["alias_events"].create(conn)


def _m004_registry_changes(conn: Connection) -> None:
    """One row counting the registry's changes (versions created, changed or deleted, aliases moved): a server
    keeps the model refs it resolved until the count moves, so an inference request reads one small row."""
    metadata = MetaData()
    changes = Table("registry_changes", metadata, Column("id", Integer, primary_key=True),
                    Column("changes", BigInteger, nullable=False))
    changes.create(conn)
    conn.execute(insert(changes).values(id=1, changes=0))


def _m005_predictions(conn: Connection) -> None:
    """Every answer served models gave (see :mod:`tailor.monitor.records`), the feedback on them (a true label,
    a rating, a corrected answer; one per answer), and each tenant's limits on how long and how many answers
    are kept (NULL: the server's defaults)."""
    metadata = MetaData()
    Table(
        "predictions",
        metadata,
        Column("id", String(40), primary_key=True),
        Column("tenant", String(64), nullable=False),
        Column("kind", String(24), nullable=False),
        Column("request_id", String(40)),
        Column("model", Text, nullable=False),
        Column("model_name", String(200), nullable=False),
        Column("version", Integer),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("latency_ms", Float, nullable=False),
        Column("prompt_tokens", Integer, nullable=False),
        Column("completion_tokens", Integer, nullable=False),
        Column("label", Text),
        Column("score", Float),
        Column("scores", Text),
        Column("output", Text),
        Column("input", Text),
        Column("stored", Integer, nullable=False),
        Column("metadata", Text),
        Column("details", Text),
        Index("ix_predictions_tenant_model", "tenant", "model_name", "version", "created_at"),
        Index("ix_predictions_tenant_created", "tenant", "created_at", "id"),
    )
    Table(
        "feedback",
        metadata,
        Column("id", String(40), primary_key=True),
        Column("tenant", String(64), nullable=False),
        Column("record_id", String(40), nullable=False),
        Column("label", Text),
        Column("rating", String(8)),
        Column("correction", Text),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("tenant", "record_id"),
    )
    metadata.create_all(conn)
    conn.exec_driver_sql("ALTER TABLE tenants ADD COLUMN retention_days INTEGER")
    conn.exec_driver_sql("ALTER TABLE tenants ADD COLUMN retention_rows INTEGER")


def _m006_monitoring(conn: Connection) -> None:
    """Each answer's input features (length, script, unknown tokens: kept whether or not its text is), each
    model's monitoring settings (store inputs, alert rules, webhook), and the alerts the rules raised (see
    :mod:`tailor.monitor.alerts`)."""
    metadata = MetaData()
    Table(
        "monitoring_configs",
        metadata,
        Column("tenant", String(64), primary_key=True),
        Column("model_name", String(200), primary_key=True),
        Column("store_inputs", Integer, nullable=False),
        Column("window_hours", Float, nullable=False),
        Column("rules", Text, nullable=False),
        Column("webhook_url", Text),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "alerts",
        metadata,
        Column("id", String(40), primary_key=True),
        Column("tenant", String(64), nullable=False),
        Column("model_name", String(200), nullable=False),
        Column("version", Integer, nullable=False),
        Column("rule", Text, nullable=False),
        Column("value", Float),
        Column("state", String(16), nullable=False),
        Column("fired_at", DateTime(timezone=True), nullable=False),
        Column("resolved_at", DateTime(timezone=True)),
        Column("delivery", String(16), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("last_error", Text),
        Index("ix_alerts_tenant_model", "tenant", "model_name", "fired_at"),
    )
    metadata.create_all(conn)
    conn.exec_driver_sql("ALTER TABLE predictions ADD COLUMN features TEXT")


def _m007_release(conn: Connection) -> None:
    """Releases: an alias's candidate version beside its current one (mode ``canary`` with its share of the
    traffic, or ``shadow``), and in the alias history the candidate, who made each change and why."""
    for table in ("aliases", "alias_events"):
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN candidate INTEGER")
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN candidate_mode VARCHAR(8)")
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN candidate_share FLOAT")
    conn.exec_driver_sql("ALTER TABLE alias_events ADD COLUMN actor TEXT")
    conn.exec_driver_sql("ALTER TABLE alias_events ADD COLUMN reason TEXT")


def _m008_console_sessions(conn: Connection) -> None:
    """The web console's sign-in sessions (see :mod:`tailor.security.sessions`): a token's hash, the API key it
    stands for, the CSRF token of its forms, and when it ends; and API keys that expire."""
    metadata = MetaData()
    Table(
        "console_sessions",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("key_id", String(40), nullable=False),
        Column("csrf", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        Index("ix_console_sessions_expires", "expires_at"),
    )
    metadata.create_all(conn)
    conn.exec_driver_sql("ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMP WITH TIME ZONE")


def _m009_release_gates(conn: Connection) -> None:
    """Each tenant's release gate: the accuracy floor and bias thresholds a version must pass before an alias
    may point at it (see :mod:`tailor.registry.gate`); a null threshold is not checked."""
    metadata = MetaData()
    Table(
        "release_gates",
        metadata,
        Column("tenant", String(64), primary_key=True),
        Column("min_accuracy", Float),
        Column("min_macro_f1", Float),
        Column("max_slice_gap", Float),
        Column("max_flip_rate", Float),
        Column("require_fairness", Integer, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("updated_by", Text),
    )
    metadata.create_all(conn)


def _m010_audit_quotas(conn: Connection) -> None:
    """The append-only, hash-chained audit log of state-changing actions, and per-tenant quotas."""  # filled in by the audit work
    # The audit log (see tailor.security.audit): one chain over every tenant; its head (the last seq and hash) is
    # the one row every append locks, so appends from several processes stay one line, and a cut tail is seen.
    audit_metadata = MetaData()
    Table(
        "audit_log",
        audit_metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("tenant", String(64)),
        Column("actor", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("target", Text, nullable=False),
        Column("client", String(64)),
        Column("result", String(16), nullable=False),
        Column("error", Text),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        Index("ix_audit_log_tenant", "tenant", "seq"),
    )
    audit_head = Table(
        "audit_head",
        audit_metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", BigInteger, nullable=False),
        Column("hash", String(64), nullable=False),
    )
    audit_metadata.create_all(conn)
    conn.execute(insert(audit_head).values(id=1, seq=0, hash="0" * 64))
    # Per-tenant quotas (see tailor.security.quotas): NULL is the server's default, 0 unlimited.
    quota_metadata = MetaData()
    Table(
        "tenant_quotas",
        quota_metadata,
        Column("tenant", String(64), primary_key=True),
        Column("rpm", Integer),
        Column("key_rpm", Integer),
        Column("jobs", Integer),
        Column("storage_mb", Integer),
        Column("train_minutes", Integer),
        Column("redact_pii", Integer, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    quota_metadata.create_all(conn)


def _m011_tenant_keys(conn: Connection) -> None:
    """Each tenant's data key, wrapped by the master key (envelope encryption at rest; see
    :mod:`tailor.security.crypto`), with the fingerprint of the master key that wrapped it."""
    metadata = MetaData()
    Table(
        "tenant_keys",
        metadata,
        Column("id", String(40), primary_key=True),
        # one key per tenant: two processes creating it at once collide here, and the loser reads the winner's
        Column("tenant", String(64), nullable=False, unique=True),
        Column("wrapped", Text, nullable=False),
        Column("master_fingerprint", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    metadata.create_all(conn)


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_service", _m002_service),
    ("m003_alias_events", _m003_alias_events),
    ("m004_registry_changes", _m004_registry_changes),
    ("m005_predictions", _m005_predictions),
    ("m006_monitoring", _m006_monitoring),
    ("m007_release", _m007_release),
    ("m008_console_sessions", _m008_console_sessions),
    ("m009_release_gates", _m009_release_gates),
    ("m010_audit_quotas", _m010_audit_quotas),
    ("m011_tenant_keys", _m011_tenant_keys),
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
