"""The registry store on SQLAlchemy Core: SQLite by default, PostgreSQL (or another server) by URL.

Only portable SQL is used: JSON is kept as sorted-key text, timestamps as timezone-aware UTC, and no
``RETURNING``. Rows are turned into entities before they leave this module.

With a master key configured, a version's ``metrics`` and ``lineage`` (its data report with example rows, the
fingerprint's sample texts, explanation examples, misclassified rows) are sealed under the tenant's data key
(:mod:`tailor.security.sealing`); callers see dicts either way, and rows written before encryption read as they
are. Values are sealed before a write transaction begins and opened after the connection is closed (a data key
is loaded on a connection of its own); nothing queries inside those columns in SQL.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import replace
from typing import Any, Callable, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from tailor.db import JsonText, UtcDateTime, now, open_engine
from tailor.errors import ConflictError, NotFoundError
from tailor.registry.entities import Alias, AliasEvent, Candidate, ModelVersion, RegisteredModel, Route
from tailor.registry.refs import parse_ref, validate_alias, validate_name
from tailor.registry.release import (check_candidate, check_candidate_version, check_reason, same_candidate,
                                     version_before_last_move)
from tailor.registry.store import RegistryStore
from tailor.security.crypto import open_keyring
from tailor.security.sealing import SealableJson, open_json, preload, seal_json

T = TypeVar("T")
_CONFLICT_ATTEMPTS = 5
_RESOLVED_CACHE_SIZE = 10_000  # resolved refs a store keeps between registry changes


# The current shape of the tables for queries; migrations.py creates them (the constraints live there).
_metadata = MetaData()
_models = Table(
    "models",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64)),
    Column("name", String(200)),
    Column("description", Text),
    Column("last_version", Integer),
    Column("created_at", UtcDateTime),
)
_versions = Table(
    "model_versions",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer),
    Column("version", Integer),
    Column("task", String(50)),
    Column("base_model", Text),
    Column("method", String(50)),
    Column("artifact_path", Text),
    Column("params", JsonText),
    Column("metrics", SealableJson),
    Column("lineage", SealableJson),
    Column("created_at", UtcDateTime),
)
_aliases = Table(
    "aliases",
    _metadata,
    Column("model_id", Integer, primary_key=True),
    Column("alias", String(32), primary_key=True),
    Column("version", Integer),
    Column("candidate", Integer),
    Column("candidate_mode", String(8)),
    Column("candidate_share", Float),
)
_alias_events = Table(
    "alias_events",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer),
    Column("alias", String(32)),
    Column("version", Integer),
    Column("action", String(16)),
    Column("created_at", UtcDateTime),
    Column("candidate", Integer),
    Column("candidate_mode", String(8)),
    Column("candidate_share", Float),
    Column("actor", Text),
    Column("reason", Text),
)


_changes = Table("registry_changes", _metadata, Column("id", Integer, primary_key=True), Column("changes", BigInteger))


def _count_change(conn: Connection) -> None:
    """Move the registry's change count in the writer's transaction (see :meth:`SqlRegistryStore.resolve`)."""
    conn.execute(update(_changes).where(_changes.c.id == 1).values(changes=_changes.c.changes + 1))


def _record_alias_event(conn: Connection, model_id: int, alias: str, version: int | None, action: str, *,
                        candidate: Candidate | None = None, actor: str | None = None,
                        reason: str | None = None) -> None:
    conn.execute(insert(_alias_events).values(
        model_id=model_id, alias=alias, version=version, action=action, created_at=now(),
        candidate=candidate and candidate.version, candidate_mode=candidate and candidate.mode,
        candidate_share=candidate and candidate.share, actor=actor, reason=reason))


def _candidate_of(row) -> Candidate | None:
    """The candidate a row of ``aliases`` or ``alias_events`` holds, if any."""
    return None if row.candidate is None else Candidate(row.candidate, row.candidate_mode, row.candidate_share)


def _find_alias(conn: Connection, tenant: str, model_id: int, name: str, alias: str) -> Alias:
    row = conn.execute(select(_aliases).where(_aliases.c.model_id == model_id, _aliases.c.alias == alias)).one_or_none()
    if row is None:
        raise NotFoundError(f"alias {name}@{alias} not found")
    return Alias(tenant=tenant, name=name, alias=alias, version=row.version, candidate=_candidate_of(row))


def _move_alias(conn: Connection, model_id: int, alias: str, version: int, candidate: Candidate | None = None) -> None:
    """Point the existing ``alias`` at ``version`` with ``candidate`` (none by default: a move ends a release)."""
    conn.execute(update(_aliases).where(_aliases.c.model_id == model_id, _aliases.c.alias == alias).values(
        version=version, candidate=candidate and candidate.version, candidate_mode=candidate and candidate.mode,
        candidate_share=candidate and candidate.share))


def _change_alias(conn: Connection, tenant: str, model_id: int, name: str, alias: str, version: int, action: str, *,
                  candidate: Candidate | None = None, actor: str | None, reason: str | None) -> Alias:
    """Point ``alias`` at ``version`` (with ``candidate``, or none), record the change in its history and in
    the change counter; returns the alias as it now is."""
    _move_alias(conn, model_id, alias, version, candidate)
    _record_alias_event(conn, model_id, alias, version, action, candidate=candidate, actor=actor, reason=reason)
    _count_change(conn)
    return _find_alias(conn, tenant, model_id, name, alias)


def _stop_candidates_of(conn: Connection, model_id: int, version: int) -> None:
    """Stop the canaries and shadows of the version being deleted (an ``abort`` event each): the aliases keep
    their current versions."""
    for row in conn.execute(select(_aliases).where(_aliases.c.model_id == model_id, _aliases.c.candidate == version,
                                                   _aliases.c.version != version)).all():
        _move_alias(conn, model_id, row.alias, row.version)
        _record_alias_event(conn, model_id, row.alias, row.version, "abort",
                            reason=f"its candidate (version {version}) was deleted")


def _version_not_found(name: str, version: int) -> NotFoundError:
    return NotFoundError(f"version {name}:{version} not found")


def _find_model_id(conn: Connection, tenant: str, name: str) -> int:
    model_id = conn.scalar(select(_models.c.id).where(_models.c.tenant == tenant, _models.c.name == name))
    if model_id is None:
        raise NotFoundError(f"model {name!r} not found")
    return model_id


def _select_models(conn: Connection, *where: Any) -> list[RegisteredModel]:
    latest = (
        select(_versions.c.model_id, func.max(_versions.c.version).label("latest"))
        .group_by(_versions.c.model_id)
        .subquery()
    )
    rows = conn.execute(
        select(_models, latest.c.latest)
        .outerjoin(latest, latest.c.model_id == _models.c.id)
        .where(*where)
        .order_by(_models.c.tenant, _models.c.name)
    ).all()
    aliases: dict[int, dict[str, int]] = defaultdict(dict)
    for model_id, alias, version in conn.execute(
        select(_aliases.c.model_id, _aliases.c.alias, _aliases.c.version)
        .join(_models, _models.c.id == _aliases.c.model_id)
        .where(*where)
        .order_by(_aliases.c.alias)
    ):
        aliases[model_id][alias] = version
    return [
        RegisteredModel(
            id=row.id,
            tenant=row.tenant,
            name=row.name,
            description=row.description,
            created_at=row.created_at,
            latest_version=row.latest,
            aliases=aliases.get(row.id, {}),
        )
        for row in rows
    ]


def _select_versions(conn: Connection, *where: Any) -> list[ModelVersion]:
    """The versions ``where`` selects, their ``metrics`` and ``lineage`` as stored (open them with
    :meth:`SqlRegistryStore._opened` once the connection is closed)."""
    rows = conn.execute(
        select(_versions, _models.c.tenant, _models.c.name)
        .join(_models, _models.c.id == _versions.c.model_id)
        .where(*where)
        .order_by(_models.c.tenant, _models.c.name, _versions.c.version)
    ).all()
    aliases: dict[tuple[int, int], list[str]] = defaultdict(list)
    for model_id, alias, version in conn.execute(
        select(_aliases.c.model_id, _aliases.c.alias, _aliases.c.version)
        .join(_versions, and_(_versions.c.model_id == _aliases.c.model_id, _versions.c.version == _aliases.c.version))
        .join(_models, _models.c.id == _versions.c.model_id)
        .where(*where)
        .order_by(_aliases.c.alias)
    ):
        aliases[(model_id, version)].append(alias)
    return [
        ModelVersion(
            id=row.id,
            tenant=row.tenant,
            name=row.name,
            version=row.version,
            task=row.task,
            base_model=row.base_model,
            method=row.method,
            artifact_path=row.artifact_path,
            params=row.params,
            metrics=row.metrics,
            lineage=row.lineage,
            created_at=row.created_at,
            aliases=tuple(aliases.get((row.model_id, row.version), ())),
        )
        for row in rows
    ]


def _require_version(conn: Connection, model_id: int, name: str, version: int) -> ModelVersion:
    found = _select_versions(conn, _versions.c.model_id == model_id, _versions.c.version == version)
    if not found:
        raise _version_not_found(name, version)
    return found[0]


class SqlRegistryStore(RegistryStore):
    """A :class:`RegistryStore` in the database at ``url``, migrated to the current schema on open.

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:////home/me/.tailor/tailor.db`` (the parent directory is
            created) or ``postgresql+psycopg://user@host/tailor`` (needs that driver installed).
        settings: where the master key comes from (default: the environment's); without one nothing is sealed.
    """

    def __init__(self, url: str, settings=None):
        self._engine = open_engine(url)
        self.keys = open_keyring(url, settings)
        self._resolved: dict[tuple, ModelVersion | Route] = {}
        self._resolved_at: int | None = None  # the change count the cached refs were resolved at
        self._resolved_lock = threading.Lock()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def _opened(self, version: ModelVersion) -> ModelVersion:
        """``version`` with its sealed ``metrics`` and ``lineage`` opened (call it outside any transaction).

        Raises:
            DecryptionError: a sealed value that does not open (altered, or its tenant's key destroyed).
        """
        if self.keys is None and isinstance(version.metrics, dict) and isinstance(version.lineage, dict):
            return version
        return replace(version, metrics=open_json(self.keys, version.tenant, version.metrics),
                       lineage=open_json(self.keys, version.tenant, version.lineage))

    def _opened_route(self, route: Route) -> Route:
        candidate = route.candidate and self._opened(route.candidate)
        return replace(route, version=self._opened(route.version), candidate=candidate)

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction, again if a concurrent writer took a unique key first."""
        for _ in range(_CONFLICT_ATTEMPTS - 1):
            try:
                with self._engine.begin() as conn:
                    return work(conn)
            except IntegrityError:
                pass
        with self._engine.begin() as conn:
            return work(conn)

    def get_model(self, tenant: str, name: str) -> RegisteredModel:
        with self._engine.connect() as conn:
            return _select_models(conn, _models.c.id == _find_model_id(conn, tenant, name))[0]

    def list_models(self, tenant: str | None = None) -> list[RegisteredModel]:
        with self._engine.connect() as conn:
            return _select_models(conn, *([] if tenant is None else [_models.c.tenant == tenant]))

    def create_version(
        self,
        tenant: str,
        name: str,
        *,
        task: str,
        base_model: str,
        method: str,
        artifact_path: str,
        params: dict,
        metrics: dict,
        lineage: dict,
        description: str = "",
    ) -> ModelVersion:
        validate_name(name)
        sealed_metrics, sealed_lineage = seal_json(self.keys, tenant, metrics), seal_json(self.keys, tenant, lineage)

        def work(conn: Connection) -> ModelVersion:
            model_id = conn.scalar(select(_models.c.id).where(_models.c.tenant == tenant, _models.c.name == name))
            if model_id is None:  # a concurrent creator makes this insert fail; the retry then finds its row
                model_id = conn.execute(
                    insert(_models).values(
                        tenant=tenant, name=name, description=description, last_version=0, created_at=now()
                    )
                ).inserted_primary_key[0]
            # The update locks the model's row, so concurrent writers take their numbers in turn.
            conn.execute(
                update(_models).where(_models.c.id == model_id).values(last_version=_models.c.last_version + 1)
            )
            number = conn.scalar(select(_models.c.last_version).where(_models.c.id == model_id))
            conn.execute(
                insert(_versions).values(
                    model_id=model_id,
                    version=number,
                    task=task,
                    base_model=base_model,
                    method=method,
                    artifact_path=artifact_path,
                    params=params,
                    metrics=sealed_metrics,
                    lineage=sealed_lineage,
                    created_at=now(),
                )
            )
            _count_change(conn)
            return _require_version(conn, model_id, name, number)

        return self._opened(self._transaction(work))

    def resolve(self, tenant: str, ref: str) -> ModelVersion:
        """As :meth:`RegistryStore.resolve`. The API resolves a model on every inference request, so a ref
        resolved once is kept in this process until the registry's change count moves (any process's
        write moves it in its own transaction): one small query when nothing changed, instead of four."""
        return self._cached(("version", tenant, ref), lambda conn: self._resolve(conn, tenant, ref), self._opened)

    def route(self, tenant: str, ref: str) -> Route:
        """As :meth:`RegistryStore.route`, kept like :meth:`resolve` until the change count moves (every alias
        change moves it), so each replica sees a canary, a promotion or a rollback on its next request."""
        return self._cached(("route", tenant, ref), lambda conn: self._route(conn, tenant, ref), self._opened_route)

    def _cached(self, key: tuple, find: Callable[[Connection], T], opened: Callable[[T], T]) -> T:
        """``opened(find(conn))``, kept under ``key`` until the registry's change count moves. The count is
        read before the answer, so a cached answer is never older than the count it is kept under; sealed
        values are opened once per answer, after the connection is closed."""
        with self._engine.connect() as conn:
            changes = conn.scalar(select(_changes.c.changes).where(_changes.c.id == 1))
            with self._resolved_lock:
                if changes != self._resolved_at:
                    self._resolved, self._resolved_at = {}, changes
                found = self._resolved.get(key)
            if found is not None:
                return found
            found = find(conn)
        found = opened(found)
        with self._resolved_lock:
            if self._resolved_at == changes and len(self._resolved) < _RESOLVED_CACHE_SIZE:
                self._resolved[key] = found
        return found

    @classmethod
    def _route(cls, conn: Connection, tenant: str, ref: str) -> Route:
        parsed = parse_ref(ref)
        if parsed.alias is None:
            return Route(cls._resolve(conn, tenant, ref))
        model_id = _find_model_id(conn, tenant, parsed.name)
        alias = _find_alias(conn, tenant, model_id, parsed.name, parsed.alias)
        version = _require_version(conn, model_id, parsed.name, alias.version)
        if alias.candidate is None:
            return Route(version, alias=parsed.alias)
        return Route(version, alias=parsed.alias, candidate=_require_version(conn, model_id, parsed.name,
                                                                             alias.candidate.version),
                     mode=alias.candidate.mode, share=alias.candidate.share)

    @staticmethod
    def _resolve(conn: Connection, tenant: str, ref: str) -> ModelVersion:
        parsed = parse_ref(ref)
        model_id = _find_model_id(conn, tenant, parsed.name)
        version = parsed.version
        if parsed.alias is not None:
            version = conn.scalar(select(_aliases.c.version).where(_aliases.c.model_id == model_id,
                                                                   _aliases.c.alias == parsed.alias))
            if version is None:
                raise NotFoundError(f"alias {parsed.name}@{parsed.alias} not found")
        elif version is None:
            version = conn.scalar(select(func.max(_versions.c.version)).where(_versions.c.model_id == model_id))
            if version is None:
                raise NotFoundError(f"model {parsed.name!r} has no versions")
        return _require_version(conn, model_id, parsed.name, version)

    def get_version(self, tenant: str, name: str, version: int) -> ModelVersion:
        with self._engine.connect() as conn:
            found = _require_version(conn, _find_model_id(conn, tenant, name), name, version)
        return self._opened(found)

    def list_versions(self, tenant: str, name: str) -> list[ModelVersion]:
        with self._engine.connect() as conn:
            found = _select_versions(conn, _versions.c.model_id == _find_model_id(conn, tenant, name))
        return [self._opened(version) for version in found]

    def set_alias(self, tenant: str, name: str, alias: str, version: int, *, actor: str | None = None,
                  reason: str | None = None) -> None:
        validate_alias(alias)
        reason = check_reason(reason)

        def work(conn: Connection) -> None:
            model_id = _find_model_id(conn, tenant, name)
            _require_version(conn, model_id, name, version)
            where = (_aliases.c.model_id == model_id, _aliases.c.alias == alias)
            current = conn.execute(select(_aliases.c.version, _aliases.c.candidate).where(*where)).one_or_none()
            if current is not None and (current.version, current.candidate) == (version, None):
                return
            if current is None:  # a concurrent setter makes this insert fail; the retry then moves its row
                conn.execute(insert(_aliases).values(model_id=model_id, alias=alias, version=version))
            else:
                _move_alias(conn, model_id, alias, version)
            _record_alias_event(conn, model_id, alias, version, "set", actor=actor, reason=reason)
            _count_change(conn)

        self._transaction(work)

    def delete_alias(self, tenant: str, name: str, alias: str, *, actor: str | None = None,
                     reason: str | None = None) -> None:
        validate_alias(alias)
        reason = check_reason(reason)
        with self._engine.begin() as conn:
            model_id = _find_model_id(conn, tenant, name)
            where = (_aliases.c.model_id == model_id, _aliases.c.alias == alias)
            if not conn.execute(delete(_aliases).where(*where)).rowcount:
                raise NotFoundError(f"alias {name}@{alias} not found")
            _record_alias_event(conn, model_id, alias, None, "unset", actor=actor, reason=reason)
            _count_change(conn)

    def get_alias(self, tenant: str, name: str, alias: str) -> Alias:
        validate_alias(alias)
        with self._engine.connect() as conn:
            return _find_alias(conn, tenant, _find_model_id(conn, tenant, name), name, alias)

    def set_candidate(self, tenant: str, name: str, alias: str, version: int, mode: str, share: float | None = None,
                      *, actor: str | None = None, reason: str | None = None) -> Alias:
        validate_alias(alias)
        check_candidate(mode, share)
        reason = check_reason(reason)

        def work(conn: Connection) -> Alias:
            model_id = _find_model_id(conn, tenant, name)
            found = _find_alias(conn, tenant, model_id, name, alias)
            current = _require_version(conn, model_id, name, found.version)
            check_candidate_version(f"{name}@{alias}", current, _require_version(conn, model_id, name, version), mode)
            if same_candidate(found.candidate, version, mode, share):
                return found
            candidate = Candidate(version, mode, share)
            return _change_alias(conn, tenant, model_id, name, alias, found.version, mode, candidate=candidate,
                                 actor=actor, reason=reason)

        return self._transaction(work)

    def clear_candidate(self, tenant: str, name: str, alias: str, *, actor: str | None = None,
                        reason: str | None = None) -> Alias:
        validate_alias(alias)
        reason = check_reason(reason)

        def work(conn: Connection) -> Alias:
            model_id = _find_model_id(conn, tenant, name)
            found = _find_alias(conn, tenant, model_id, name, alias)
            if found.candidate is None:
                raise ConflictError(f"{name}@{alias} has no canary or shadow to stop")
            return _change_alias(conn, tenant, model_id, name, alias, found.version, "abort", actor=actor,
                                 reason=reason)

        return self._transaction(work)

    def promote(self, tenant: str, name: str, alias: str, version: int | None = None, *, actor: str | None = None,
                reason: str | None = None) -> Alias:
        validate_alias(alias)
        reason = check_reason(reason)

        def work(conn: Connection) -> Alias:
            model_id = _find_model_id(conn, tenant, name)
            found = _find_alias(conn, tenant, model_id, name, alias)
            target = version if version is not None else found.candidate and found.candidate.version
            if target is None:
                raise ConflictError(f"{name}@{alias} has no candidate to promote: start a canary or a shadow "
                                    "first, or give the version to promote")
            _require_version(conn, model_id, name, target)
            if target == found.version:
                raise ConflictError(f"{name}@{alias} already points at {name}:{target}")
            return _change_alias(conn, tenant, model_id, name, alias, target, "promote", actor=actor, reason=reason)

        return self._transaction(work)

    def rollback(self, tenant: str, name: str, alias: str, *, actor: str | None = None,
                 reason: str | None = None) -> Alias:
        validate_alias(alias)
        reason = check_reason(reason)

        def work(conn: Connection) -> Alias:
            model_id = _find_model_id(conn, tenant, name)
            _find_alias(conn, tenant, model_id, name, alias)  # it must exist now
            versions = conn.scalars(select(_alias_events.c.version).where(
                _alias_events.c.model_id == model_id, _alias_events.c.alias == alias).order_by(_alias_events.c.id))
            target = version_before_last_move(versions)
            if target is None:
                raise ConflictError(f"{name}@{alias} has no earlier version to roll back to")
            try:
                _require_version(conn, model_id, name, target)
            except NotFoundError:
                raise ConflictError(f"{name}@{alias} pointed at {name}:{target} before its last move, and that "
                                    "version was deleted; point the alias at a version instead") from None
            return _change_alias(conn, tenant, model_id, name, alias, target, "rollback", actor=actor, reason=reason)

        return self._transaction(work)

    def alias_history(self, tenant: str, name: str) -> list[AliasEvent]:
        with self._engine.connect() as conn:
            model_id = _find_model_id(conn, tenant, name)
            rows = conn.execute(select(_alias_events).where(_alias_events.c.model_id == model_id)
                                .order_by(_alias_events.c.id)).all()
        return [AliasEvent(tenant=tenant, name=name, alias=row.alias, version=row.version, action=row.action,
                           created_at=row.created_at, candidate=_candidate_of(row), actor=row.actor,
                           reason=row.reason) for row in rows]

    def update_metrics(self, tenant: str, name: str, version: int, metrics: dict) -> ModelVersion:
        # Read once first: that loads the key its row was sealed with; and the tenant's current key, which seals
        # the merge. Both are then in memory, so the transaction never waits on a connection of its own.
        self.get_version(tenant, name, version)
        preload(self.keys, tenant)
        with self._engine.begin() as conn:
            model_id = _find_model_id(conn, tenant, name)
            where = (_versions.c.model_id == model_id, _versions.c.version == version)
            # FOR UPDATE (a no-op on SQLite, whose transactions hold the write lock) keeps a concurrent
            # merge from being lost on PostgreSQL.
            current = conn.scalar(select(_versions.c.metrics).where(*where).with_for_update())
            if current is None:
                raise _version_not_found(name, version)
            merged = {**open_json(self.keys, tenant, current), **metrics}
            conn.execute(update(_versions).where(*where).values(metrics=seal_json(self.keys, tenant, merged)))
            _count_change(conn)
            updated = _require_version(conn, model_id, name, version)
        return self._opened(updated)

    def delete_version(self, tenant: str, name: str, version: int) -> ModelVersion:
        with self._engine.begin() as conn:
            model_id = _find_model_id(conn, tenant, name)
            deleted = _require_version(conn, model_id, name, version)
            for alias in deleted.aliases:
                _record_alias_event(conn, model_id, alias, None, "version_deleted")
            _stop_candidates_of(conn, model_id, version)
            conn.execute(delete(_aliases).where(_aliases.c.model_id == model_id, _aliases.c.version == version))
            conn.execute(delete(_versions).where(_versions.c.model_id == model_id, _versions.c.version == version))
            _count_change(conn)
        return self._opened(deleted)

    def delete_model(self, tenant: str, name: str) -> list[ModelVersion]:
        with self._engine.begin() as conn:
            model_id = _find_model_id(conn, tenant, name)
            deleted = _select_versions(conn, _versions.c.model_id == model_id)
            conn.execute(delete(_aliases).where(_aliases.c.model_id == model_id))
            conn.execute(delete(_alias_events).where(_alias_events.c.model_id == model_id))
            conn.execute(delete(_versions).where(_versions.c.model_id == model_id))
            conn.execute(delete(_models).where(_models.c.id == model_id))
            _count_change(conn)
        return [self._opened(version) for version in deleted]
