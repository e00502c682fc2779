"""Artifact directories that appear whole or not at all.

A version's files are written into a staging directory, a ``TAILOR_COMPLETE.json`` marker listing every
file's SHA-256 is written last, and the directory is renamed into place in one step. Readers accept only
directories that carry the marker, so an interrupted write never looks like a finished artifact.

With a keyring (a master key is configured, :mod:`tailor.security.crypto`) an artifact is **sealed**: training
writes into a private memory-backed workspace (:meth:`ArtifactStore.stage`), :meth:`ArtifactStore.publish`
rewrites every file under the tenant's data key into the on-disk staging directory (same names, each starting
with the ``TLRENC`` header) and the marker, still plaintext JSON, lists the ciphertexts' SHA-256 and the key.
Readers get a plaintext *view* (:meth:`ArtifactStore.path_for`): the files decrypted once per process into a
private workspace under ``/dev/shm``, removed when the artifact is removed and when the process exits.
Artifacts published before encryption was switched on carry no ``sealed`` entry and are read in place.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Iterator

from tailor.errors import TailorError, UsageError

MARKER = "TAILOR_COMPLETE.json"
STAGING = ".staging"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_names(directory: Path) -> list[str]:
    """The relative POSIX paths of every file under ``directory``, the marker excepted, sorted."""
    names = (path.relative_to(directory).as_posix() for path in sorted(directory.rglob("*")) if path.is_file())
    return [name for name in names if name != MARKER]


def _file_hashes(directory: Path) -> dict[str, str]:
    """Relative POSIX path -> SHA-256 of every file under ``directory``, the marker excepted."""
    return {name: _sha256(directory / name) for name in _file_names(directory)}


def _newest_mtime(directory: Path) -> float:
    return max([directory.stat().st_mtime, *(path.stat().st_mtime for path in directory.rglob("*"))])


@dataclass(frozen=True)
class SealedView:
    """The plaintext view of a sealed artifact: ``view`` holds the decrypted files of ``origin`` (on disk)."""

    origin: Path
    view: Path
    tenant: str
    keyring: object  # tailor.security.crypto.Keyring


_views: dict[Path, SealedView] = {}  # on-disk artifact directory -> its view in this process
_views_lock = threading.Lock()
_views_pid = os.getpid()  # a forked child must not remove its parent's views at exit


def sealed_view_of(directory: Path) -> SealedView | None:
    """The :class:`SealedView` whose plaintext directory is ``directory`` (a path :meth:`ArtifactStore.path_for`
    returned for a sealed artifact), or None for any other directory."""
    directory = Path(directory).resolve()
    with _views_lock:
        return next((v for v in _views.values() if v.view == directory), None)


def view_dirs() -> list[Path]:
    """The plaintext views this process holds, sorted."""
    with _views_lock:
        return sorted(v.view for v in _views.values())


def drop_views(under: Path) -> int:
    """Remove this process's plaintext views of the artifacts under ``under`` (an artifact or a tenant's
    folder); returns how many there were."""
    under = Path(under)
    with _views_lock:
        doomed = [key for key in _views if key == under or under in key.parents]
        for key in doomed:
            shutil.rmtree(_views.pop(key).view, ignore_errors=True)
    return len(doomed)


@atexit.register
def _drop_all_views() -> None:
    if os.getpid() == _views_pid:
        with _views_lock:
            for view in _views.values():
                shutil.rmtree(view.view, ignore_errors=True)
            _views.clear()


def _sealed_entry(directory: Path) -> dict | None:
    """The marker's ``sealed`` entry (``{"tenant", "key"}``), or None for a plaintext artifact."""
    return json.loads((directory / MARKER).read_text(encoding="utf-8")).get("sealed")


class ArtifactStore:
    """Published artifact directories under ``root``, addressed by paths relative to it.

    Args:
        root: the artifacts directory (``Settings.artifacts_dir``); created on first write.
        keyring: a :class:`tailor.security.crypto.Keyring` to seal new artifacts with and open sealed ones,
            or None (no master key): new artifacts are written as plaintext.
    """

    def __init__(self, root: Path, keyring=None):
        self.root = Path(root)
        self.staging_dir = self.root / STAGING
        self.keyring = keyring

    @contextmanager
    def stage(self) -> Iterator[Path]:
        """Yield a fresh, empty directory to write an artifact into: under ``root/.staging``, or with a keyring a
        private memory-backed workspace (the plaintext weights never reach the disk).

        If the block raises, the directory is removed (a workspace always is, once the block ends). Pass it to
        :meth:`publish` inside the block.
        """
        if self.keyring is not None:
            from tailor.security.crypto import private_workspace_path

            workspace = private_workspace_path()
            try:
                yield workspace
            finally:
                shutil.rmtree(workspace, ignore_errors=True)
            return
        path = self.staging_dir / uuid.uuid4().hex
        path.mkdir(parents=True)
        try:
            yield path
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def publish(self, staged: Path, relpath: str) -> Path:
        """Seal ``staged`` with the marker (written last) and rename it to ``root/relpath``.

        ``staged`` should come from :meth:`stage`, so the rename stays on one filesystem and is atomic. With a
        keyring, every file is first encrypted under the data key of the tenant ``relpath`` starts with into a
        new directory under ``root/.staging`` (removed again if that fails), which is renamed instead; the
        plaintext ``staged`` is then removed.

        Returns:
            The published directory.

        Raises:
            TailorError: ``staged`` is not a directory, or ``relpath`` is already taken.
            UsageError: ``relpath`` is absolute, empty, climbs out of ``root`` or points into staging.
        """
        target = self._absolute(relpath)
        if not staged.is_dir():
            raise TailorError(f"cannot publish {staged}: not a directory")
        if target.exists():
            raise TailorError(f"artifact {relpath} already exists")
        if self.keyring is not None:
            return self._publish_sealed(staged, relpath, target)
        self._finish(staged, target, {})
        return target

    def _finish(self, directory: Path, target: Path, extra: dict) -> None:
        marker = {"files": _file_hashes(directory), "created_at": datetime.now(timezone.utc).isoformat(), **extra}
        (directory / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(directory, target)

    def _publish_sealed(self, staged: Path, relpath: str, target: Path) -> Path:
        from tailor.security.crypto import seal_tree

        tenant = PurePosixPath(relpath).parts[0]
        key = self.keyring.data_key(tenant)
        sealed = self.staging_dir / uuid.uuid4().hex
        sealed.mkdir(parents=True)
        try:
            seal_tree(self.keyring, tenant, staged, sealed, _file_names(staged))
            self._finish(sealed, target, {"sealed": {"tenant": tenant, "key": key.id}})
        except BaseException:
            shutil.rmtree(sealed, ignore_errors=True)
            raise
        shutil.rmtree(staged, ignore_errors=True)
        return target

    def location(self, relpath: str) -> Path:
        """Return the absolute on-disk directory of a published artifact (its ciphertext when it is sealed).

        Raises:
            TailorError: the directory is missing or has no marker (never published, or cut short).
        """
        path = self._absolute(relpath)
        if not (path / MARKER).is_file():
            raise TailorError(f"artifact {relpath} is incomplete or missing: no {MARKER} (was its write interrupted?)")
        return path

    def path_for(self, relpath: str) -> Path:
        """Return a directory holding a published artifact's plaintext files: the artifact itself, or for a
        sealed one its plaintext view (decrypted on first use in this process; see the module's docstring).

        Raises:
            TailorError: the directory is missing or has no marker (never published, or cut short); a sealed
                artifact while no master key is configured.
            DecryptionError: a sealed file does not decrypt (altered, or its tenant's key destroyed); the
                message names the artifact and the file.
        """
        path = self.location(relpath)
        with _views_lock:
            known = _views.get(path)
            if known is not None and self.keyring is not None and (known.view / MARKER).is_file():
                return known.view
            sealed = _sealed_entry(path)
            if sealed is None:
                return path
            if self.keyring is None:
                raise TailorError(f"artifact {relpath} is encrypted but no master key is configured (set "
                                  "TAILOR_MASTER_KEY or TAILOR_MASTER_KEY_FILE)")
            view = _views[path] = SealedView(path, self._decrypt(path, relpath, sealed["tenant"]), sealed["tenant"],
                                             self.keyring)
            return view.view

    def _decrypt(self, path: Path, relpath: str, tenant: str) -> Path:
        """The files of the sealed artifact at ``path`` decrypted into a new private workspace (the marker last)."""
        from tailor.security.crypto import open_tree, private_workspace_path

        workspace = private_workspace_path().resolve()
        try:
            open_tree(self.keyring, tenant, path, workspace, json.loads((path / MARKER).read_text(encoding="utf-8"))
                      ["files"], f"artifact {relpath}")
            shutil.copyfile(path / MARKER, workspace / MARKER)
        except BaseException:
            shutil.rmtree(workspace, ignore_errors=True)
            raise
        return workspace

    def verify(self, relpath: str) -> None:
        """Re-hash a published artifact's files against its marker.

        Raises:
            TailorError: the artifact is incomplete, or a file was modified, removed or added.
        """
        path = self.location(relpath)
        expected = json.loads((path / MARKER).read_text())["files"]
        actual = _file_hashes(path)
        problems = {
            "modified": sorted(name for name in expected.keys() & actual.keys() if expected[name] != actual[name]),
            "missing": sorted(expected.keys() - actual.keys()),
            "unexpected": sorted(actual.keys() - expected.keys()),
        }
        if any(problems.values()):
            found = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in problems.items() if names)
            raise TailorError(f"artifact {relpath} failed verification ({found})")

    def remove(self, relpath: str) -> None:
        """Delete an artifact directory if it exists.

        It is first renamed into staging, so a crash part-way through never leaves a partial directory
        that still carries its marker; :meth:`sweep_staging` clears what such a crash leaves. This process's
        plaintext view of it goes too.
        """
        path = self._absolute(relpath)
        drop_views(path)
        if not path.exists():
            return
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        doomed = self.staging_dir / uuid.uuid4().hex
        os.rename(path, doomed)
        shutil.rmtree(doomed)

    def sweep_staging(self, older_than_s: float = 3600) -> int:
        """Remove staging directories in which nothing changed for ``older_than_s`` seconds.

        Choose ``older_than_s`` longer than any job may stay silent, or a running job loses its staging
        directory.

        Returns:
            How many directories were removed.
        """
        if not self.staging_dir.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        abandoned = [path for path in self.staging_dir.iterdir() if path.is_dir() and _newest_mtime(path) < cutoff]
        for path in abandoned:
            shutil.rmtree(path, ignore_errors=True)
        return len(abandoned)

    def _absolute(self, relpath: str) -> Path:
        parts = PurePosixPath(relpath).parts
        if not parts or PurePosixPath(relpath).is_absolute() or ".." in parts or parts[0] == STAGING:
            raise UsageError(f"invalid artifact path {relpath!r}: expected a relative path inside the artifacts root")
        return self.root.joinpath(*parts)
