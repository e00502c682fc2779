"""The registry as callers use it: a store of versions plus the artifact directories they point at."""

from __future__ import annotations

import uuid
from pathlib import Path

from tailor.errors import NotFoundError, UsageError
from tailor.registry.artifacts import ArtifactStore
from tailor.registry.entities import ModelVersion
from tailor.registry.refs import validate_name, validate_tenant
from tailor.registry.sql import SqlRegistryStore
from tailor.registry.store import DEFAULT_TENANT, RegistryStore
from tailor.settings import Settings, get_settings


class Registry:
    """Keeps rows and artifacts consistent: a version row exists only for a complete artifact.

    Queries that touch no files go straight to :attr:`store`.
    """

    def __init__(self, store: RegistryStore, artifacts: ArtifactStore):
        self.store = store
        self.artifacts = artifacts

    def publish_version(
        self,
        tenant: str,
        name: str,
        staged_dir: Path,
        *,
        task: str,
        base_model: str,
        method: str,
        params: dict,
        metrics: dict,
        lineage: dict,
        description: str = "",
    ) -> ModelVersion:
        """Publish ``staged_dir`` (from ``artifacts.stage()``) and register it as the next version of ``name``.

        The directory is sealed and moved into place first; if the row cannot be written the directory
        is removed again. A crash in between leaves only an orphan directory, never a row without files.

        Raises:
            UsageError: ``tenant`` or ``name`` breaks the naming rules.
        """
        validate_tenant(tenant)
        validate_name(name)
        relpath = f"{tenant}/{name.replace(':', '_')}/{uuid.uuid4().hex}"
        self.artifacts.publish(staged_dir, relpath)
        try:
            return self.store.create_version(
                tenant,
                name,
                task=task,
                base_model=base_model,
                method=method,
                artifact_path=relpath,
                params=params,
                metrics=metrics,
                lineage=lineage,
                description=description,
            )
        except BaseException:
            self.artifacts.remove(relpath)
            raise

    def artifact_dir(self, version: ModelVersion) -> Path:
        """A directory of a version's plaintext files (a sealed artifact's private view, see
        :meth:`ArtifactStore.path_for`). Raises TailorError if it is incomplete or does not decrypt."""
        return self.artifacts.path_for(version.artifact_path)

    def artifact_location(self, version: ModelVersion) -> Path:
        """The absolute on-disk directory of a version's files (ciphertext when sealed); nothing is decrypted.
        Raises TailorError if it is incomplete."""
        return self.artifacts.location(version.artifact_path)

    def delete_version(self, tenant: str, name: str, version: int) -> ModelVersion:
        """Delete a version's row (and aliases), then its files; return the deleted version."""
        deleted = self.store.delete_version(tenant, name, version)
        self.artifacts.remove(deleted.artifact_path)
        return deleted

    def delete_model(self, tenant: str, name: str) -> list[ModelVersion]:
        """Delete a model's rows, then every version's files; return the deleted versions."""
        deleted = self.store.delete_model(tenant, name)
        for version in deleted:
            self.artifacts.remove(version.artifact_path)
        return deleted


def version_labels(version: ModelVersion) -> list[str] | None:
    """The sorted labels a classification version was trained on (from its lineage's label counts); ``None``
    for a chat version or one that recorded none."""
    counts = version.lineage.get("label_counts") if version.task == "classify" else None
    return sorted(counts) if counts else None


def _label_list(labels: list[str], shown: int = 10) -> str:
    if len(labels) <= shown:
        return f"[{', '.join(labels)}]"
    return f"[{', '.join(labels[:shown])}, ... ({len(labels)} labels)]"


def check_same_labels(store: RegistryStore, tenant: str, name: str, labels: list[str]) -> None:
    """Refuse to add a classification version whose label set differs from the model's latest version.

    A model name stands for one task with one set of classes: a new version with other labels would
    silently answer with classes its clients do not expect (``train@latest`` turning from spam into banking).
    Nothing is checked when the model does not exist yet, has no versions, or its latest version recorded
    no labels.

    Args:
        labels: the labels of the data the new version is trained on.

    Raises:
        UsageError: the label sets differ; the message names both and the ways out.
    """
    try:
        model = store.get_model(tenant, name)
    except NotFoundError:
        return
    if model.latest_version is None:
        return
    previous = version_labels(store.get_version(tenant, name, model.latest_version))
    new = sorted(set(labels))
    if previous is None or previous == new:
        return
    raise UsageError(
        f"model {name!r} (tenant {tenant}) has labels {_label_list(previous)}; this data has {_label_list(new)}: "
        f"pass --new-labels to register it as a new version of {name!r} anyway, or --name to start a new model")


def open_registry(settings: Settings | None = None) -> Registry:
    """Open the registry at ``settings.registry_url`` with artifacts under ``settings.artifacts_dir`` (sealed per
    tenant when a master key is configured)."""
    from tailor.security.crypto import open_keyring

    settings = settings or get_settings()
    return Registry(SqlRegistryStore(settings.registry_url, settings),
                    ArtifactStore(settings.artifacts_dir, keyring=open_keyring(settings.registry_url, settings)))


def load_classifier(ref: str, tenant: str = DEFAULT_TENANT, settings: Settings | None = None,
                    runtime: str | None = "served"):
    """Resolve ``ref`` (``name``, ``name:3``, ``name@alias``) and load that version ready to predict.

    Args:
        runtime: ``served`` (default): the runtime the version's accuracy gate chose, as the API serves it;
            None or ``torch-fp32``: the PyTorch reference; or ``onnx-fp32`` / ``onnx-int8``.

    Returns:
        A :class:`tailor.models.classifier.TextClassifier` whose ``version`` attribute is the
        :class:`ModelVersion` it came from.
    """
    from tailor.models.classifier import TextClassifier
    from tailor.models.runtimes import default_bases

    settings = settings or get_settings()
    registry = open_registry(settings)
    version = registry.store.resolve(tenant, ref)
    if version.task != "classify":
        raise UsageError(f"{version.ref} is a {version.task} model, not a classifier")
    classifier = TextClassifier.from_dir(registry.artifact_dir(version), runtime=runtime,
                                         bases=default_bases(settings.home))
    classifier.version = version
    return classifier
