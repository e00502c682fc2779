"""Converted base models in the cache: built in a temporary directory, sealed with a marker written last,
renamed into place, and checked against that marker before each use.

``TAILOR_CONVERTED.json`` records the converter's version and the size and sha256 of the source and of every
file written, so a half-written, stale or tampered conversion is found and redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

MARKER = "TAILOR_CONVERTED.json"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_marker(directory: Path, src: Path, converter: str, files: Iterable[str]) -> None:
    """Write the marker (last) for ``files`` in ``directory``, converted from ``src`` by ``converter``."""
    recorded = {name: {"sha256": sha256_file(directory / name), "size": (directory / name).stat().st_size}
                for name in files}
    marker = {"converter": converter, "files": recorded,
              "source": {"path": str(src), "sha256": sha256_file(src), "size": src.stat().st_size}}
    (directory / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def check_marker(directory: Path, src: Path, converter: str, *, expected_files: Iterable[str] | None = None,
                 full: bool = False) -> str | None:
    """Why ``directory`` is not a complete conversion of ``src`` by ``converter``, or None when it is.

    The cheap check compares the converter version, the source's size and every file's size; ``full``
    re-hashes the source and every file.
    """
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
        files, source = marker["files"], marker["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MARKER} is missing or unreadable"
    if marker.get("converter") != converter:
        return f"converted by {marker.get('converter')}, not {converter}"
    if expected_files is not None and set(files) != set(expected_files):
        return f"the marker lists {sorted(files)}, expected {list(expected_files)}"
    if source.get("size") != src.stat().st_size or (full and source.get("sha256") != sha256_file(src)):
        return f"converted from a different {src.name}"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != expected.get("size"):
            return f"{name} is missing or has the wrong size"
        if full and sha256_file(path) != expected.get("sha256"):
            return f"{name} does not match its checksum"
    return None


def reuse_conversion(out_dir: Path, problem_of: Callable[[Path], str | None], progress, model_id: str) -> bool:
    """True when ``out_dir`` holds a complete conversion (``problem_of(out_dir)`` is None).

    Otherwise says why through ``progress``, removes what is there and the builds that crashed conversions
    left beside it, and returns False: the caller converts again.
    """
    if out_dir.exists():
        problem = problem_of(out_dir)
        if problem is None:
            return True
        progress.message(f"redoing the {model_id} conversion in {out_dir}: {problem}")
        if out_dir.is_dir():
            shutil.rmtree(out_dir)
        else:
            out_dir.unlink()
    remove_stale_builds(out_dir)
    return False


def remove_stale_builds(out_dir: Path, max_age_s: float = 3600.0) -> None:
    """Delete temporary build directories that crashed conversions left beside ``out_dir`` (each ~0.5 GB).

    Only those untouched for ``max_age_s`` go, so a conversion running in another process is left alone.
    """
    if not out_dir.parent.is_dir():
        return
    for path in out_dir.parent.glob(f".{out_dir.name}.*"):
        if path.is_dir() and time.time() - path.stat().st_mtime > max_age_s:
            shutil.rmtree(path, ignore_errors=True)


def publish_dir(out_dir: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build`` in a temporary sibling of ``out_dir`` and rename it into place (replacing any old one)."""
    out_dir = Path(out_dir).expanduser().resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    trash = None
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp's 0700 would make the cache private to whoever converted first
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, trash / out_dir.name)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return out_dir
