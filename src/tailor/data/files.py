"""Uploaded data files: checked on arrival, kept under ``<TAILOR_HOME>/files/<tenant>/``, listed per tenant.

An upload is first written to a temporary file (the API streams it there under the size limit), then
inspected: a text/label file (CSV, TSV, JSONL) is parsed completely, as training will parse it, and a chat
file (JSONL of ``messages``, or ``instruction``/``output``) is validated line by line. Only a file that
passes is moved into place and recorded, so a bad upload leaves nothing behind.

With a master key configured (:mod:`tailor.security.crypto`), a file's bytes are sealed under its tenant's data
key from the first byte the upload writes (:meth:`FileStore.incoming_writer`); readers get the plaintext as a
stream (:meth:`FileStore.open`) or, where a reader needs a path, in a private temporary directory removed when
it is done (:meth:`FileStore.plaintext`). The data report cached beside a file is sealed the same way.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, delete, func, insert, select

from tailor.db import UtcDateTime, listed_after, now, open_engine
from tailor.errors import DataError, NotFoundError, UsageError
from tailor.security.crypto import DecryptionError, is_sealed_file, open_keyring, open_value, private_workspace_path
from tailor.security.sealing import SealableJson, open_json, open_str, open_str_or_placeholder, seal_json, seal_str

PURPOSES = ("fine-tune",)
TEXT_LABEL = "text-label"
CHAT = "chat"
TEXTS = "texts"  # unlabelled texts: a fine-tuning job's unlabeled_file
_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")

_metadata = MetaData()
_files = Table(
    "files", _metadata,
    Column("id", String(40), primary_key=True), Column("tenant", String(64)), Column("filename", Text),
    Column("purpose", String(32)), Column("bytes", BigInteger), Column("sha256", String(64)),
    Column("kind", String(32)), Column("summary", SealableJson), Column("relpath", Text), Column("created_at", UtcDateTime),
)


@dataclass(frozen=True)
class StoredFile:
    """An uploaded file.

    Attributes:
        kind: ``text-label`` (classification data), ``chat`` (conversations or instructions) or ``texts``
            (unlabelled texts, for a job's ``unlabeled_file``: a ``.txt`` file, or a table with a text column
            and no label column).
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
    from tailor.data.ingest import TEXT_NAMES, read_dataset, read_texts
    from tailor.data.validate import check_label_count

    if suffix == ".txt":
        return TEXTS, _texts_summary(read_texts(path, max_bytes=max_bytes, fmt="txt"), "txt")
    try:
        dataset = read_dataset(path, max_bytes=max_bytes)
    except DataError as exc:
        if exc.line is not None or exc.field is not None:
            raise
        try:  # no label column to be found: a file of unlabelled texts, if it has a text column
            texts = read_texts(path, max_bytes=max_bytes)
        except DataError:
            raise exc from None
        if texts.text_col is None or texts.text_col.lower() not in TEXT_NAMES:
            raise
        return TEXTS, _texts_summary(texts, suffix.lstrip(".") or "csv")
    source = dataset.source
    check_label_count(dataset.label_counts(), what="the file", field=source.label_col)
    return TEXT_LABEL, {"format": source.format, "encoding": source.encoding, "rows": len(dataset),
                        "text_column": source.text_col, "label_column": source.label_col,
                        "labels": dataset.label_counts()}


def _texts_summary(texts, fmt: str) -> dict:
    """A ``texts`` file's summary: how many texts, from which column."""
    return {"format": fmt, "rows": len(texts.texts),
            "text_column": texts.text_col, "empty_rows": texts.empty}


def _to_file(row, keys, *, erased_ok: bool = False) -> StoredFile:
    """A ``files`` row as a :class:`StoredFile`, its sealed name and summary opened (call it outside transactions).

    With ``erased_ok`` (the tenant's data key may already be destroyed) unreadable values become placeholders.
    """
    try:
        filename, summary = open_str(keys, row.tenant, row.filename), open_json(keys, row.tenant, row.summary)
    except DecryptionError:
        if not erased_ok:
            raise
        filename, summary = open_str_or_placeholder(keys, row.tenant, row.filename), {}
    return StoredFile(row.id, row.tenant, filename, row.purpose, row.bytes, row.sha256, row.kind, summary,
                      row.relpath, row.created_at)


def _safe_filename(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name.strip() or "upload"
    return name[:200]


class FileStore:
    """Files of every tenant: rows in the database at ``url``, bytes under ``root``, sealed when a master key is
    configured in ``settings`` (read from the environment by default). ``keys`` is the keyring, None without a
    master key (files are then kept as they arrive)."""

    def __init__(self, url: str, root: Path, settings=None):
        self._engine = open_engine(url)
        self._url = url
        self.root = Path(root)
        self.keys = open_keyring(url, settings)

    def check_keys(self) -> None:
        """Refuse a master key that does not open every tenant's data key (or a missing one while data keys
        exist); reads only.

        Raises:
            MasterKeyError: naming the tenants whose data cannot be decrypted and their file counts.
        """
        from tailor.security.crypto import check_master_key

        check_master_key(self._url, None if self.keys is None else self.keys.master, lambda t: self.totals(t)[0])

    def incoming_path(self) -> Path:
        """A fresh path for an upload in progress (same file system as the store, so it can be renamed)."""
        incoming = self.root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        return incoming / secrets.token_hex(12)

    def incoming_writer(self, tenant: str, path: Path) -> BinaryIO:
        """A new file at ``path`` for an upload of ``tenant`` in progress: sealed as it is written when
        encryption is on. Close it to finish the file."""
        raw = open(path, "wb")
        return raw if self.keys is None else self.keys.writer(tenant, raw)

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
            with self._plaintext_of(tenant, upload, filename) as plain:
                kind, summary = inspect_upload(plain, filename, max_bytes)
                size = plain.stat().st_size
            file_id = "file-" + secrets.token_hex(12)
            relpath = f"{tenant}/{file_id}{Path(filename).suffix.lower()}"
            target = self.root / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.keys is not None and not is_sealed_file(upload):
                self._seal_into(tenant, upload, target)
            else:
                os.replace(upload, target)
        finally:
            upload.unlink(missing_ok=True)
        try:
            # the file's name and summary (column names, label counts) are client data: sealed like its bytes
            sealed_name, sealed_summary = seal_str(self.keys, tenant, filename), seal_json(self.keys, tenant, summary)
            with self._engine.begin() as conn:
                conn.execute(insert(_files).values(id=file_id, tenant=tenant, filename=sealed_name, purpose=purpose,
                                                   bytes=size, sha256=sha256, kind=kind, summary=sealed_summary,
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
        return _to_file(row, self.keys)

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
        return [_to_file(r, self.keys) for r in rows[:limit]], len(rows) > limit

    def totals(self, tenant: str) -> tuple[int, int]:
        """How many files the tenant keeps, and their bytes (one query)."""
        query = select(func.count(), func.coalesce(func.sum(_files.c.bytes), 0)).where(_files.c.tenant == tenant)
        with self._engine.connect() as conn:
            count, size = conn.execute(query).one()
        return int(count), int(size)

    def path(self, stored: StoredFile) -> Path:
        """Where the file's bytes are (sealed when encryption is on: read them with :meth:`open` or
        :meth:`plaintext`)."""
        return self.root / stored.relpath

    def open(self, stored: StoredFile) -> BinaryIO:
        """The file's plaintext as a binary stream, decrypted chunk by chunk when it is sealed.

        Raises:
            DecryptionError: a sealed file that was altered or whose key is gone (or no master key is set).
        """
        return self._open_path(stored.tenant, self.path(stored))

    def _open_path(self, tenant: str, path: Path) -> BinaryIO:
        raw = open(path, "rb")
        if not is_sealed_file(path):
            return raw
        if self.keys is None:
            raw.close()
            raise DataError("this file is encrypted but no master key is configured (set TAILOR_MASTER_KEY or "
                            "TAILOR_MASTER_KEY_FILE)")
        return self.keys.reader(tenant, raw)

    @contextmanager
    def plaintext(self, stored: StoredFile) -> Iterator[Path]:
        """A path to the file's plaintext for readers that need one: the stored file itself when it is not
        sealed, else a copy named like the upload in a private temporary directory (memory-backed where the
        system has ``/dev/shm``) that is removed when the block ends."""
        with self._plaintext_of(stored.tenant, self.path(stored), stored.filename) as plain:
            yield plain

    @contextmanager
    def _plaintext_of(self, tenant: str, path: Path, filename: str) -> Iterator[Path]:
        if not is_sealed_file(path):
            yield path
            return
        workspace = private_workspace_path()
        try:
            plain = workspace / _safe_filename(filename)
            with self._open_path(tenant, path) as source, open(plain, "wb") as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)
            yield plain
        finally:
            shutil.rmtree(workspace, ignore_errors=True)

    def _seal_into(self, tenant: str, source: Path, target: Path) -> None:
        tmp = target.with_name(target.name + ".tmp")
        try:
            with open(source, "rb") as plain, self.keys.writer(tenant, open(tmp, "wb")) as sealed:
                shutil.copyfileobj(plain, sealed, 1024 * 1024)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def read_note(self, stored: StoredFile, name: str) -> str | None:
        """A text kept beside the file (e.g. its data report, ``name`` ``report.json``), opened; None if absent."""
        note = self._note_path(stored, name)
        if not note.is_file():
            return None
        return open_value(self.keys, stored.tenant, note.read_text(encoding="utf-8"))

    def write_note(self, stored: StoredFile, name: str, text: str) -> None:
        """Keep ``text`` beside the file (sealed when encryption is on), replacing it atomically."""
        note = self._note_path(stored, name)
        tmp = note.with_name(note.name + ".tmp")
        tmp.write_text(text if self.keys is None else self.keys.seal_text(stored.tenant, text), encoding="utf-8")
        tmp.replace(note)

    def _note_path(self, stored: StoredFile, name: str) -> Path:
        path = self.path(stored)
        return path.with_name(f"{path.name}.{name}")

    def delete(self, tenant: str, file_id: str) -> StoredFile:
        """Remove the row, then the bytes and what was kept beside them. Raises NotFoundError."""
        stored = self.get(tenant, file_id)
        with self._engine.begin() as conn:
            conn.execute(delete(_files).where(_files.c.id == file_id, _files.c.tenant == tenant))
        self._remove_bytes(stored)
        return stored

    def _remove_bytes(self, stored: StoredFile) -> None:
        path = self.path(stored)
        for leftover in [path, *path.parent.glob(f"{path.name}.*")]:
            leftover.unlink(missing_ok=True)

    def delete_tenant(self, tenant: str) -> list[StoredFile]:
        """Remove every file of ``tenant`` (rows, bytes, notes and its folder); returns the removed files."""
        with self._engine.begin() as conn:
            rows = conn.execute(select(_files).where(_files.c.tenant == tenant)).all()
            conn.execute(delete(_files).where(_files.c.tenant == tenant))
        removed = [_to_file(row, self.keys, erased_ok=True) for row in rows]
        for stored in removed:
            self._remove_bytes(stored)
        shutil.rmtree(self.root / tenant, ignore_errors=True)
        return removed

    def sweep_incoming(self) -> None:
        """Remove uploads left half-written by a crash, and plaintext copies a killed process left behind."""
        from tailor.security.crypto import sweep_private_workspaces

        shutil.rmtree(self.root / ".incoming", ignore_errors=True)
        sweep_private_workspaces()

