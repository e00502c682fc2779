"""Plain, immutable objects the registry hands out; no database row ever leaves the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


@dataclass(frozen=True)
class RegisteredModel:
    """A named model of one tenant; its versions are :class:`ModelVersion` objects.

    Attributes:
        latest_version: the highest existing version number, ``None`` while the model has none.
        aliases: alias -> version number (``latest`` is implied and never listed).
    """

    id: int
    tenant: str
    name: str
    description: str
    created_at: datetime
    latest_version: int | None
    aliases: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``created_at`` in ISO 8601 UTC."""
        return {**asdict(self), "created_at": _iso_utc(self.created_at)}


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a registered model.

    Attributes:
        version: 1, 2, 3 ... per model; a number is never reused, even after its version is deleted.
        artifact_path: the version's directory relative to the artifacts root.
        params: the training configuration that produced it.
        metrics: evaluation results; later evaluations are merged in.
        lineage: where it came from (dataset hashes, parent model, job id).
        aliases: the aliases pointing at this version, sorted.
    """

    id: int
    tenant: str
    name: str
    version: int
    task: str
    base_model: str
    method: str
    artifact_path: str
    params: dict
    metrics: dict
    lineage: dict
    created_at: datetime
    aliases: tuple[str, ...]

    @property
    def ref(self) -> str:
        """The reference that always names this version: ``name:version``."""
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with ``ref`` added; ``created_at`` in ISO 8601 UTC."""
        return {
            **asdict(self),
            "ref": self.ref,
            "aliases": list(self.aliases),
            "created_at": _iso_utc(self.created_at),
        }


@dataclass(frozen=True)
class Candidate:
    """A version an alias is trying out beside its current one.

    Attributes:
        mode: ``canary`` (answers ``share`` of the alias's requests) or ``shadow`` (predicts on a copy of every
            request; its answers are recorded, never returned).
        share: the canary's share of requests, strictly between 0 and 1; ``None`` for a shadow.
    """

    version: int
    mode: str
    share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Alias:
    """An alias of a model now: the version it points at and the candidate it tries out, if any."""

    tenant: str
    name: str
    alias: str
    version: int
    candidate: Candidate | None = None


@dataclass(frozen=True)
class Route:
    """Which versions answer a reference: ``version`` always, ``candidate`` too when the reference is an alias
    with a canary or a shadow (see :class:`Candidate`)."""

    version: ModelVersion
    alias: str | None = None
    candidate: ModelVersion | None = None
    mode: str | None = None
    share: float | None = None


@dataclass(frozen=True)
class AliasEvent:
    """One change of a model's alias, as the alias history lists it.

    Attributes:
        version: the version the alias pointed at from then on; ``None`` once it was removed.
        action: ``set`` (set or moved), ``unset`` (removed on request), ``version_deleted`` (removed with
            the version it pointed at), ``canary`` / ``shadow`` (a candidate set beside the current version),
            ``abort`` (the candidate stopped, the alias kept its version), ``promote`` (moved to its candidate
            or a given version) or ``rollback`` (moved back to the version before its last move).
        candidate: the candidate from then on (``canary`` and ``shadow`` events), else ``None``.
        actor: who made the change: ``<tenant>/<key name> (<key id>)`` through the API, ``cli:<os user>`` from
            the CLI; ``None`` for changes the registry made itself or recorded before actors were.
        reason: the free text the change was made with, if any.
    """

    tenant: str
    name: str
    alias: str
    version: int | None
    action: str
    created_at: datetime
    candidate: Candidate | None = None
    actor: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``created_at`` in ISO 8601 UTC."""
        return {**asdict(self), "created_at": _iso_utc(self.created_at)}
