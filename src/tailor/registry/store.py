"""The registry store interface. Implementations hand out entities and raise the errors documented here.

Every method takes the tenant first and sees only that tenant's objects; ``list_models(None)`` is the one
operator-wide view.
"""

from __future__ import annotations

import abc

from tailor.errors import NotFoundError
from tailor.registry.entities import Alias, AliasEvent, ModelVersion, RegisteredModel, Route
from tailor.registry.refs import parse_ref

DEFAULT_TENANT = "default"


class RegistryStore(abc.ABC):
    """Registered models, their numbered versions and aliases.

    Missing objects raise :class:`~tailor.errors.NotFoundError` with messages such as
    ``model 'credit-risk' not found``, ``version credit-risk:7 not found`` and
    ``alias credit-risk@prod not found``; bad names or aliases raise :class:`~tailor.errors.UsageError`.

    Every method that changes an alias takes ``actor`` (who: ``<tenant>/<key name> (<key id>)`` or
    ``cli:<os user>``) and ``reason`` (free text, at most 1,000 characters) and records both in its history event.
    """

    @abc.abstractmethod
    def get_model(self, tenant: str, name: str) -> RegisteredModel:
        """Return the model ``name``. Raises NotFoundError."""

    @abc.abstractmethod
    def list_models(self, tenant: str | None = None) -> list[RegisteredModel]:
        """Return the tenant's models by name; ``None`` lists every tenant's (for the operator)."""

    @abc.abstractmethod
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
        """Add the next version of ``name``, creating the model (with ``description``) if absent.

        The version number is allocated atomically: concurrent writers get distinct, consecutive numbers.

        Raises:
            UsageError: ``name`` breaks the naming rule.
        """

    @abc.abstractmethod
    def get_version(self, tenant: str, name: str, version: int) -> ModelVersion:
        """Return version ``version`` of ``name``. Raises NotFoundError."""

    @abc.abstractmethod
    def list_versions(self, tenant: str, name: str) -> list[ModelVersion]:
        """Return the model's versions in ascending order. Raises NotFoundError for a missing model."""

    @abc.abstractmethod
    def set_alias(self, tenant: str, name: str, alias: str, version: int, *, actor: str | None = None,
                  reason: str | None = None) -> None:
        """Point ``alias`` at ``version``, moving it if it pointed elsewhere, and record a ``set`` event in
        the alias history (none when it already pointed there without a candidate). A move ends a canary or
        shadow: the candidate is cleared.

        Raises:
            UsageError: the alias is ``latest`` or malformed.
            NotFoundError: the model or version does not exist.
        """

    @abc.abstractmethod
    def delete_alias(self, tenant: str, name: str, alias: str, *, actor: str | None = None,
                     reason: str | None = None) -> None:
        """Remove ``alias`` and record an ``unset`` event. Raises UsageError for ``latest``, NotFoundError for
        a missing alias."""

    @abc.abstractmethod
    def get_alias(self, tenant: str, name: str, alias: str) -> Alias:
        """The alias now, with its candidate. Raises NotFoundError for a missing model or alias."""

    @abc.abstractmethod
    def set_candidate(self, tenant: str, name: str, alias: str, version: int, mode: str, share: float | None = None,
                      *, actor: str | None = None, reason: str | None = None) -> Alias:
        """Try ``version`` out beside the alias's current version, as a ``canary`` answering ``share`` (0 < share
        < 1) of its requests or as a ``shadow``, replacing any candidate it had; record a ``canary`` or
        ``shadow`` event (none when the same candidate is set again). Returns the alias.

        Raises:
            UsageError: a bad mode or share, a candidate of another task, a shadow that is not a classifier.
            NotFoundError: the model, alias or version does not exist.
            ConflictError: the version is the alias's current one.
        """

    @abc.abstractmethod
    def clear_candidate(self, tenant: str, name: str, alias: str, *, actor: str | None = None,
                        reason: str | None = None) -> Alias:
        """Stop the alias's canary or shadow (an ``abort`` event); it keeps its version. Raises NotFoundError,
        or ConflictError when it has no candidate."""

    @abc.abstractmethod
    def promote(self, tenant: str, name: str, alias: str, version: int | None = None, *, actor: str | None = None,
                reason: str | None = None) -> Alias:
        """Move the alias to its candidate, or to ``version`` when given, clear the candidate and record a
        ``promote`` event. Returns the alias.

        Raises:
            NotFoundError: the model, alias or version does not exist.
            ConflictError: no version given and no candidate, or the alias already points there.
        """

    @abc.abstractmethod
    def rollback(self, tenant: str, name: str, alias: str, *, actor: str | None = None,
                 reason: str | None = None) -> Alias:
        """Move the alias back to the version it pointed at before its last move (from its history), clear any
        candidate and record a ``rollback`` event. A second rollback undoes the first. Returns the alias.

        Raises:
            NotFoundError: the model or alias does not exist.
            ConflictError: the alias never moved, did not exist before its last move, or that version was deleted.
        """

    @abc.abstractmethod
    def alias_history(self, tenant: str, name: str) -> list[AliasEvent]:
        """Every change of the model's aliases, oldest first: ``set`` events (set or moved), ``unset``
        events, ``version_deleted`` ones (the alias went with its version), and the release events
        ``canary``, ``shadow``, ``abort``, ``promote`` and ``rollback``, each with its actor and reason.
        Deleting the model deletes its history. Raises NotFoundError for a missing model."""

    @abc.abstractmethod
    def update_metrics(self, tenant: str, name: str, version: int, metrics: dict) -> ModelVersion:
        """Merge ``metrics`` into the version's metrics (new keys win) and return the updated version."""

    @abc.abstractmethod
    def delete_version(self, tenant: str, name: str, version: int) -> ModelVersion:
        """Delete a version and the aliases pointing at it (recording ``version_deleted`` events); return it
        as it was. Raises NotFoundError."""

    @abc.abstractmethod
    def delete_model(self, tenant: str, name: str) -> list[ModelVersion]:
        """Delete a model with its versions and aliases; return the deleted versions. Raises NotFoundError."""

    def resolve(self, tenant: str, ref: str) -> ModelVersion:
        """Return the version ``ref`` names: ``name`` or ``name@latest`` (highest), ``name:3``, ``name@alias``.

        Raises:
            UsageError: ``ref`` is malformed.
            NotFoundError: the model, version or alias does not exist, or the model has no versions.
        """
        parsed = parse_ref(ref)
        if parsed.version is not None:
            return self.get_version(tenant, parsed.name, parsed.version)
        model = self.get_model(tenant, parsed.name)
        if parsed.alias is None:
            if model.latest_version is None:
                raise NotFoundError(f"model {parsed.name!r} has no versions")
            return self.get_version(tenant, parsed.name, model.latest_version)
        if parsed.alias not in model.aliases:
            raise NotFoundError(f"alias {parsed.name}@{parsed.alias} not found")
        return self.get_version(tenant, parsed.name, model.aliases[parsed.alias])

    @abc.abstractmethod
    def route(self, tenant: str, ref: str) -> Route:
        """The versions that answer ``ref``: the one :meth:`resolve` gives, plus, for an alias with a canary or
        a shadow, its candidate with the mode and share. Raises as :meth:`resolve`."""
