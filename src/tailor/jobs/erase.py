"""Deleting a tenant for good (``tailor tenants delete``): its data key first (crypto-shredding), then every
object it owns.

Order matters: the data key goes first, so whatever a crash or a backup leaves behind of the tenant's sealed
bytes can never be read again. Then its files (bytes, cached reports), model artifacts and the caches built
from them (export archives, generation engines, and this process's plaintext views of them in memory), its
jobs' run folders and its command-line runs' (found by their ``tenant`` file), and its rows in every table
that has a ``tenant`` column (found by reflecting the database, so a table added later is covered), with the rows that
hang off them (model versions, aliases and their history, job events and checkpoints, console sessions).
The audit log is kept: it is append-only and hash-chained, and who did what stays answerable after the
tenant is gone. On SQLite the database file is then compacted (``VACUUM``) so deleted rows do not linger in
free pages.

This lives with the jobs because it reaches every stage below them (files, registry, models' caches,
monitoring); the CLI only wires it.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import MetaData, delete, select, update
from sqlalchemy.engine import make_url

from tailor.db import open_engine
from tailor.errors import ConflictError
from tailor.jobs.store import JobStore
from tailor.registry.artifacts import drop_views
from tailor.security.keys import TenantStore
from tailor.train.checkpoint import runs_of_tenant

# tables whose rows belong to a tenant through another table: (table, column, parent table, parent column)
_CHILDREN = (
    ("console_sessions", "key_id", "api_keys", "id"),
    ("job_events", "job_id", "jobs", "id"),
    ("job_checkpoints", "job_id", "jobs", "id"),
    ("aliases", "model_id", "models", "id"),
    ("alias_events", "model_id", "models", "id"),
    ("model_versions", "model_id", "models", "id"),
)
# deleted after every other table with a tenant column (foreign keys point at them)
_PARENTS_LAST = ("api_keys", "models")
_KEPT = ("audit_log",)  # append-only and chained: the record of what was done outlives the tenant


@dataclass
class TenantErasure:
    """What deleting a tenant removed."""

    tenant: str
    data_keys: int = 0
    files: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"tenant": self.tenant, "data_keys": self.data_keys, "files": self.files, "models": self.models,
                "jobs": self.jobs, "rows": self.rows, "paths": self.paths}


def delete_tenant(settings, tenant: str) -> TenantErasure:
    """Destroy ``tenant``'s data key and remove everything it owns (see the module's docstring).

    Works with or without encryption (without a master key there is no data key to destroy).

    Raises:
        NotFoundError: no such tenant.
        ConflictError: the tenant has queued or running jobs (cancel them first: a worker would write again).
    """
    from tailor.data.files import FileStore
    from tailor.security.crypto import open_keyring

    url = settings.registry_url
    TenantStore(url).require_tenant(tenant)
    active = JobStore(url).active_count(tenant)
    if active:
        raise ConflictError(f"tenant {tenant!r} has {active} queued or running job(s); cancel them first "
                            "(tailor jobs cancel ID)")
    erasure = TenantErasure(tenant)
    keyring = open_keyring(url, settings)
    engine = open_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    if keyring is not None:
        erasure.data_keys = keyring.shred(tenant)
    else:
        with engine.begin() as conn:
            keys = metadata.tables["tenant_keys"]
            erasure.data_keys = conn.execute(delete(keys).where(keys.c.tenant == tenant)).rowcount or 0
    erasure.files = [f.id for f in FileStore(url, settings.files_dir, settings).delete_tenant(tenant)]
    for table, count in (("tenant_keys", erasure.data_keys), ("files", len(erasure.files))):
        if count:
            erasure.rows[table] = count
    _remove_model_files(settings, metadata, engine, tenant, erasure)
    _delete_rows(metadata, engine, tenant, erasure)
    _compact(url)
    return erasure


def _remove_model_files(settings, metadata: MetaData, engine, tenant: str, erasure: TenantErasure) -> None:
    from tailor.models.genai import drop_engine_views  # lazy: it imports the model stack

    models, versions, jobs = (metadata.tables[name] for name in ("models", "model_versions", "jobs"))
    with engine.connect() as conn:
        rows = conn.execute(select(models.c.name, versions.c.version, versions.c.artifact_path)
                            .join(versions, versions.c.model_id == models.c.id)
                            .where(models.c.tenant == tenant).order_by(models.c.name, versions.c.version)).all()
        erasure.jobs = list(conn.scalars(select(jobs.c.id).where(jobs.c.tenant == tenant).order_by(jobs.c.id)))
    erasure.models = [f"{row.name}:{row.version}" for row in rows]
    home = Path(settings.home)
    doomed = [settings.artifacts_dir / tenant, home / "cache" / "exports" / tenant, home / "bases" / tenant]
    doomed += [home / "runs" / job_id for job_id in erasure.jobs]
    doomed += [run for run in runs_of_tenant(home / "runs", tenant) if run not in doomed]  # CLI runs
    engines = [engine_dir for row in rows for engine_dir in _engine_dirs(home, row.artifact_path)]
    doomed += engines
    drop_views(settings.artifacts_dir / tenant)  # this process's plaintext copies in memory
    drop_views(home / "bases" / tenant)  # and of the tenant's adapted bases (tailor adapt)
    drop_engine_views(engines)
    for path in doomed:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            erasure.paths.append(str(path))


def _engine_dirs(home: Path, artifact_path: str) -> list[Path]:
    """The generation engines built from a version's artifact (named as :func:`tailor.models.genai.engine_dir_for`
    names them: after the model's folder and the artifact's first 8 characters)."""
    artifact = Path(artifact_path)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{artifact.parent.name}-{artifact.name[:8]}").strip(".-")
    root = home / "cache" / "genai"
    return sorted(root.glob(f"{slug}-*")) if slug and root.is_dir() else []


def _delete_rows(metadata: MetaData, engine, tenant: str, erasure: TenantErasure) -> None:
    tables = metadata.tables
    owned = [t for t in metadata.sorted_tables if "tenant" in t.c and t.name not in _KEPT + _PARENTS_LAST]
    with engine.begin() as conn:
        for name, column, parent, parent_column in _CHILDREN:
            if name in tables:
                ids = select(tables[parent].c[parent_column]).where(tables[parent].c.tenant == tenant)
                _count(erasure, name, conn.execute(delete(tables[name]).where(tables[name].c[column].in_(ids))))
        for table in owned:
            _count(erasure, table.name, conn.execute(delete(table).where(table.c.tenant == tenant)))
        for name in _PARENTS_LAST:
            _count(erasure, name, conn.execute(delete(tables[name]).where(tables[name].c.tenant == tenant)))
        _count(erasure, "tenants", conn.execute(delete(tables["tenants"]).where(tables["tenants"].c.name == tenant)))
        if erasure.models:  # a running server drops the model refs it resolved
            changes = tables["registry_changes"]
            conn.execute(update(changes).values(changes=changes.c.changes + 1))


def _count(erasure: TenantErasure, table: str, result) -> None:
    if result.rowcount:
        erasure.rows[table] = erasure.rows.get(table, 0) + result.rowcount


def _compact(url: str) -> None:
    """On SQLite, rewrite the database file so the deleted rows are not left in its free pages or its WAL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    conn = sqlite3.connect(parsed.database, isolation_level=None, timeout=30)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
