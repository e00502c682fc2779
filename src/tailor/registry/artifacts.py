"""Artifact directories that appear whole or not at all.

A version's files are written into a staging directory, a ``TAILOR_COMPLETE.json`` marker listing every
file's SHA-256 is written last, and the directory is renamed into place in one step. Readers accept only
directories that carry the marker, so an interrupted write never looks like a finished artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
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


def _file_hashes(directory: Path) -> dict[str, str]:
    """Relative POSIX path -> SHA-256 of every file under ``directory``, the marker excepted."""
    return {
        path.relative_to(directory).as_posix(): _sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.relative_to(directory).as_posix() != MARKER
    }


def _newest_mtime(directory: Path) -> float:
    return max([directory.stat().st_mtime, *(path.stat().st_mtime for path in directory.rglob("*"))])


class ArtifactStore:
    """Published artifact directories under ``root``, addressed by paths relative to it.

    Args:
        root: the artifacts directory (``Settings.artifacts_dir``); created on first write.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.staging_dir = self.root / STAGING

    @contextmanager
    def stage(self) -> Iterator[Path]:
        """Yield a fresh, empty directory under ``root/.staging`` to write an artifact into.

        If the block raises, the directory is removed. Pass it to :meth:`publish` inside the block.
        """
        path = self.staging_dir / uuid.uuid4().hex
        path.mkdir(parents=True)
        try:
            yield path
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def publish(self, staged: Path, relpath: str) -> Path:
        """Seal ``staged`` with the marker (written last) and rename it to ``root/relpath``.

        ``staged`` should come from :meth:`stage`, so the rename stays on one filesystem and is atomic.

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
        marker = {"files": _file_hashes(staged), "created_at": datetime.now(timezone.utc).isoformat()}
        (staged / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, target)
        return target

    def path_for(self, relpath: str) -> Path:
        """Return the absolute directory of a published artifact.

        Raises:
            TailorError: the directory is missing or has no marker (never published, or cut short).
        """
        path = self._absolute(relpath)
        if not (path / MARKER).is_file():
            raise TailorError(f"artifact {relpath} is incomplete or missing: no {MARKER} (was its write interrupted?)")
        return path

    def verify(self, relpath: str) -> None:
        """Re-hash a published artifact's files against its marker.

        Raises:
            TailorError: the artifact is incomplete, or a file was modified, removed or added.
        """
        path = self.path_for(relpath)
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
        that still carries its marker; :meth:`sweep_staging` clears what such a crash leaves.
        """
        path = self._absolute(relpath)
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
