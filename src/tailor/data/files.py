"""Uploaded data files: checked on arrival, kept under ``<TAILOR_HOME>/files/<tenant>/``, listed per tenant.

An upload is first written to a temporary file (the API streams it there under the size limit), then
inspected: a text/label file (CSV, TSV, JSONL) is parsed completely, as training will parse it, and a chat
file (JSONL of ``messages``, or ``instruction``/``output``) is validated line by line. Only a file that
passes is moved into place and recorded, so a bad upload leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, delete, func, insert, select

from tailor.db import JsonText, UtcDateTime, listed_after, now, open_engine
from tailor.errors import DataError, NotFoundError, UsageError

PURPOSES = ("fine-tune",)
TEXT_LABEL = "text-label"
CHAT = "chat"
_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")

_metadata = MetaData()
_files = Table(
    "files", _metadata,
    Column("id", String(40), primary_key=True), Column("tenant", String(64)), Column("filename", Text),
    Column("purpose", String(32)), Column("bytes", BigInteger), Column("sha256", String(64)),
    Column("kind", String(32)), Column("summary", JsonText), Column("relpath", Text), Column("created_at", UtcDateTime),
)


@dataclass(frozen=True)
class StoredFile:
    """An uploaded file.

    Attributes:
        kind: ``text-label`` (classification data) or ``chat`` (conversations or instructions).
        summary: what the check found: format, rows, columns and label counts (text-label files), or
            examples (chat files).
    """

    id: str
    tenant: str
    filename: str
    purpose: str
    bytes: int
    sha256: str
    kind: str
    summary: dict
    relpath: str
    created_at: datetime

    def to_openai(self) -> dict:
        """OpenAI's file object, with Tailor's ``kind`` and ``summary`` added."""
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": int(self.created_at.timestamp()),
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "status_details": None,
                "expires_at": None, "kind": self.kind, "summary": self.summary}


def inspect_upload(path: Path, filename: str, max_bytes: int) -> tuple[str, dict]:
    """Check an uploaded file the way training will read it; return ``(kind, summary)``.

    Raises:
        DataError: the file cannot be used (the message names the line and field), or a text/label file holds
            one label only (``a classifier needs at least 2 labels``).
    """
    suffix = Path(filename).suffix.lower()
    if suffix and suffix not in _SUFFIXES:
        raise DataError(f"unsupported file type {suffix!r}: upload CSV, TSV or JSONL", field="file")
    try:
        return _inspect(path, suffix, max_bytes)
    except DataError as exc:
        if str(path) not in str(exc):
            raise
        # The readers name the path they read; here that is a temporary storage path the user must not see.
        hidden = DataError(str(exc).replace(str(path), "the file"), field=exc.field)
        hidden.line = exc.line
        raise hidden from None


def _inspect(path: Path, suffix: str, max_bytes: int) -> tuple[str, dict]:
    from tailor.data.chat import sniff_chat_format, validate_chat_file

    if suffix in (".jsonl", ".json", "") and sniff_chat_format(path):
        return CHAT, validate_chat_file(path, max_bytes=max_bytes)
    from tailor.data.ingest import read_dataset
    from tailor.data.validate import check_label_count

    dataset = read_dataset(path, max_bytes=max_bytes)
    source = dataset.source
    check_label_count(dataset.label_counts(), what="the file", field=source.label_col)
    return TEXT_LABEL, {"format": source.format, "encoding": source.encoding, "rows": len(dataset),
                        "text_column": source.text_col, "label_column": source.label_col,
                        "labels": dataset.label_counts()}


def _to_file(row) -> StoredFile:
    return StoredFile(row.id, row.tenant, row.filename, row.purpose, row.bytes, row.sha256, row.kind, row.summary,
                      row.relpath, row.created_at)


def _safe_filename(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name.strip() or "upload"
    return name[:200]


class FileStore:
    """Files of every tenant: rows in the database at ``url``, bytes under ``root``."""

    def __init__(self, url: str, root: Path):
        self._engine = open_engine(url)
        self.root = Path(root)

    def incoming_path(self) -> Path:
        """A fresh path for an upload in progress (same file system as the store, so it can be renamed)."""
        incoming = self.root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        return incoming / secrets.token_hex(12)

    def add(self, tenant: str, upload: Path, *, filename: str, purpose: str, sha256: str,
            max_bytes: int) -> StoredFile:
        """Check ``upload`` (whose digest is ``sha256``) and keep it as a new file of ``tenant``.

        The upload path is consumed either way.

        Raises:
            UsageError: unknown purpose.
            DataError: the file is unusable.
        """
        try:
            if purpose not in PURPOSES:
                raise UsageError(f"unsupported purpose {purpose!r}; use: {', '.join(PURPOSES)}")
            filename = _safe_filename(filename)
            kind, summary = inspect_upload(upload, filename, max_bytes)
            file_id = "file-" + secrets.token_hex(12)
            relpath = f"{tenant}/{file_id}{Path(filename).suffix.lower()}"
            target = self.root / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            size = upload.stat().st_size
            os.replace(upload, target)
        finally:
            upload.unlink(missing_ok=True)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_files).values(id=file_id, tenant=tenant, filename=filename, purpose=purpose,
                                                   bytes=size, sha256=sha256, kind=kind, summary=summary,
                                                   relpath=relpath, created_at=now()))
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return self.get(tenant, file_id)

    def get(self, tenant: str, file_id: str) -> StoredFile:
        """The tenant's file ``file_id``. Raises NotFoundError (also for another tenant's file)."""
        with self._engine.begin() as conn:
            row = conn.execute(select(_files).where(_files.c.id == file_id, _files.c.tenant == tenant)).one_or_none()
        if row is None:
            raise NotFoundError(f"file {file_id!r} not found")
        return _to_file(row)

    def list(self, tenant: str, *, purpose: str | None = None, after: str | None = None,
             limit: int = 100) -> tuple[list[StoredFile], bool]:
        """The tenant's files, newest first, from after ``after``; returns ``(files, has_more)``."""
        query = select(_files).where(_files.c.tenant == tenant)
        if purpose:
            query = query.where(_files.c.purpose == purpose)
        if after:
            anchor = self.get(tenant, after)
            query = query.where(listed_after(_files, anchor.created_at, anchor.id))
        with self._engine.begin() as conn:
            rows = conn.execute(query.order_by(_files.c.created_at.desc(), _files.c.id.desc()).limit(limit + 1)).all()
        return [_to_file(r) for r in rows[:limit]], len(rows) > limit

    def totals(self, tenant: str) -> tuple[int, int]:
        """How many files the tenant keeps, and their bytes (one query)."""
        query = select(func.count(), func.coalesce(func.sum(_files.c.bytes), 0)).where(_files.c.tenant == tenant)
        with self._engine.connect() as conn:
            count, size = conn.execute(query).one()
        return int(count), int(size)

    def path(self, stored: StoredFile) -> Path:
        """Where the file's bytes are."""
        return self.root / stored.relpath

    def delete(self, tenant: str, file_id: str) -> StoredFile:
        """Remove the row, then the bytes. Raises NotFoundError."""
        stored = self.get(tenant, file_id)
        with self._engine.begin() as conn:
            conn.execute(delete(_files).where(_files.c.id == file_id, _files.c.tenant == tenant))
        self.path(stored).unlink(missing_ok=True)
        return stored

    def sweep_incoming(self) -> None:
        """Remove uploads left half-written by a crash."""
        shutil.rmtree(self.root / ".incoming", ignore_errors=True)

