"""Encryption at rest: envelope encryption with AES-256-GCM, one data key per tenant, wrapped by a master key.

The master key (32 random bytes, URL-safe base64) comes from ``TAILOR_MASTER_KEY`` or the file named by
``TAILOR_MASTER_KEY_FILE``; without one, nothing is encrypted and Tailor works as before. Each tenant's data
key (32 random bytes) is created on its first write and kept in the ``tenant_keys`` table only wrapped: sealed
under the master key with the tenant's name as associated data, beside the master key's fingerprint. Rotating
the master key (:func:`rotate_master`) re-wraps those few rows in one transaction and leaves the data alone;
destroying a tenant's row (:meth:`Keyring.shred`) makes everything sealed under its key unreadable for good.

Two formats:

- a **file** (uploads, any size) is a header, ``TLRENC`` + version + the data key's id, then chunks of at most
  1 MiB, each ``flag (1) | length (4) | nonce (12) | ciphertext``, sealed with the header, the chunk's index and
  its last-chunk flag as associated data: chunks cannot be reordered, dropped or cut off without the reader
  noticing, and neither writer nor reader holds more than one chunk in memory;
- a **value** (a database column) is one message, ``tenc1:<key id>:<base64url(nonce | ciphertext)>``. Text
  without the prefix is read as it is, so rows written before encryption was switched on stay readable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import secrets
import struct
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Callable

from sqlalchemy import Column, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tailor.db import UtcDateTime, now, open_engine
from tailor.errors import TailorError, UsageError

MAGIC = b"TLRENC"
FORMAT_VERSION = 1
CHUNK_SIZE = 1024 * 1024
VALUE_PREFIX = "tenc1:"
_NONCE = 12
_TAG = 16
_CHUNK_HEAD = struct.Struct(">BI")  # last-chunk flag, ciphertext length
_WRAP_CONTEXT = b"tailor-data-key|"
_VALUE_CONTEXT = b"tailor-value|"
_MASTER_HINT = ("give 32 random bytes as URL-safe base64, e.g. the output of: python -c \"import base64, secrets; "
                "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())\"")

_metadata = MetaData()
_tenant_keys = Table(
    "tenant_keys", _metadata,
    Column("id", String(40), primary_key=True), Column("tenant", String(64)), Column("wrapped", Text),
    Column("master_fingerprint", String(64)), Column("created_at", UtcDateTime),
)


class DecryptionError(TailorError):
    """Stored ciphertext that does not open: tampered, truncated, reordered, or sealed under another key."""


class MasterKeyError(TailorError):
    """The master key does not open the tenants' data keys (or is missing while some exist)."""


@dataclass(frozen=True)
class MasterKey:
    """The master key's bytes and its fingerprint (what ``tenant_keys`` records beside each wrapped key)."""

    key: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(b"tailor-master-key|" + self.key).hexdigest()[:32]

    def __repr__(self) -> str:  # never print the key itself
        return f"MasterKey(fingerprint={self.fingerprint!r})"


@dataclass(frozen=True)
class DataKey:
    """A tenant's unwrapped data key (in memory only)."""

    id: str
    tenant: str
    key: bytes

    def __repr__(self) -> str:
        return f"DataKey(id={self.id!r}, tenant={self.tenant!r})"


def parse_master_key(text: str, source: str) -> MasterKey:
    """The master key written as URL-safe base64 of 32 bytes (padding optional).

    Raises:
        UsageError: anything else, naming ``source`` (never the value).
    """
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        raise UsageError(f"{source} is not valid URL-safe base64: {_MASTER_HINT}") from None
    if len(raw) != 32:
        raise UsageError(f"{source} holds {len(raw)} bytes, not 32: {_MASTER_HINT}")
    return MasterKey(raw)


def master_key_from_file(path: Path, source: str = "the master key file") -> MasterKey:
    """Read a master key file. Raises UsageError for a missing or malformed one."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {source} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_master_key(text, f"{source} {path}")


def load_master_key(settings) -> MasterKey | None:
    """The configured master key (``TAILOR_MASTER_KEY``, else ``TAILOR_MASTER_KEY_FILE``), or None.

    Raises:
        UsageError: a malformed key or an unreadable key file.
    """
    if settings.master_key is not None:
        return parse_master_key(settings.master_key.get_secret_value(), "TAILOR_MASTER_KEY")
    if settings.master_key_file is not None:
        return master_key_from_file(settings.master_key_file, "TAILOR_MASTER_KEY_FILE")
    return None


def _aesgcm(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # lazy: `import tailor` stays fast

    return AESGCM(key)


def _wrap(master: MasterKey, tenant: str, key: bytes) -> str:
    nonce = os.urandom(_NONCE)
    sealed = _aesgcm(master.key).encrypt(nonce, key, _WRAP_CONTEXT + tenant.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def _unwrap(master: MasterKey, tenant: str, wrapped: str) -> bytes | None:
    """The data key, or None when ``master`` does not open it."""
    from cryptography.exceptions import InvalidTag

    raw = base64.urlsafe_b64decode(wrapped)
    try:
        return _aesgcm(master.key).decrypt(raw[:_NONCE], raw[_NONCE:], _WRAP_CONTEXT + tenant.encode())
    except InvalidTag:
        return None


class Keyring:
    """The tenants' data keys in the database at ``url``, opened with ``master``; unwrapped keys are cached
    for the life of the process."""

    def __init__(self, url: str, master: MasterKey):
        self._engine = open_engine(url)
        self.master = master
        self._by_id: dict[str, DataKey] = {}
        self._by_tenant: dict[str, DataKey] = {}
        self._lock = threading.Lock()

    # -- keys ------------------------------------------------------------------------------------------------

    def data_key(self, tenant: str) -> DataKey:
        """The tenant's data key, created (and stored wrapped) on first use."""
        cached = self._by_tenant.get(tenant)
        if cached is not None:
            return cached
        with self._lock:
            found = self._load(select(_tenant_keys).where(_tenant_keys.c.tenant == tenant))
            if found is None:
                found = self._create(tenant)
            return self._remember(found)

    def key_by_id(self, key_id: str, tenant: str) -> DataKey:
        """The data key ``key_id`` of ``tenant``.

        Raises:
            DecryptionError: no such key (destroyed with its tenant) or another tenant's key.
        """
        cached = self._by_id.get(key_id)
        if cached is None:
            with self._lock:
                cached = self._load(select(_tenant_keys).where(_tenant_keys.c.id == key_id))
                if cached is not None:
                    self._remember(cached)
        if cached is None or cached.tenant != tenant:
            raise DecryptionError(f"the data key {key_id} of tenant {tenant!r} does not exist (it was destroyed "
                                  "with its tenant, or the data belongs to another tenant)")
        return cached

    def _load(self, query) -> DataKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        key = _unwrap(self.master, row.tenant, row.wrapped)
        if key is None:
            raise MasterKeyError(f"the master key does not open the data key of tenant {row.tenant!r} (it was "
                                 f"wrapped by the master key {row.master_fingerprint}, this one is "
                                 f"{self.master.fingerprint})")
        return DataKey(row.id, row.tenant, key)

    def _create(self, tenant: str) -> DataKey:
        key = DataKey("tk-" + secrets.token_hex(12), tenant, secrets.token_bytes(32))
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_tenant_keys).values(
                    id=key.id, tenant=tenant, wrapped=_wrap(self.master, tenant, key.key),
                    master_fingerprint=self.master.fingerprint, created_at=now()))
        except IntegrityError:  # another process created it first: use theirs
            found = self._load(select(_tenant_keys).where(_tenant_keys.c.tenant == tenant))
            if found is None:
                raise
            return found
        return key

    def _remember(self, key: DataKey) -> DataKey:
        self._by_id[key.id] = key
        self._by_tenant[key.tenant] = key
        return key

    def shred(self, tenant: str) -> int:
        """Destroy the tenant's data keys (crypto-shredding); returns how many there were."""
        with self._lock, self._engine.begin() as conn:
            gone = conn.execute(delete(_tenant_keys).where(_tenant_keys.c.tenant == tenant)).rowcount or 0
            for key in [k for k in self._by_id.values() if k.tenant == tenant]:
                self._by_id.pop(key.id, None)
            self._by_tenant.pop(tenant, None)
        return gone

    # -- values ----------------------------------------------------------------------------------------------

    def seal_text(self, tenant: str, text: str) -> str:
        """``text`` sealed under the tenant's data key, as ``tenc1:<key id>:<base64url>``."""
        key = self.data_key(tenant)
        nonce = os.urandom(_NONCE)
        sealed = _aesgcm(key.key).encrypt(nonce, text.encode("utf-8"), _value_context(tenant, key.id))
        return f"{VALUE_PREFIX}{key.id}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open_text(self, tenant: str, value: str) -> str:
        """The text of a sealed value; a value without the prefix is returned as it is.

        Raises:
            DecryptionError: the value was altered, or sealed for another tenant or under a destroyed key.
        """
        return open_value(self, tenant, value)

    # -- files -----------------------------------------------------------------------------------------------

    def writer(self, tenant: str, raw: BinaryIO, chunk_size: int = CHUNK_SIZE) -> "EncryptingWriter":
        """A writable stream that seals what is written to it into ``raw`` (close it to write the last chunk)."""
        return EncryptingWriter(self.data_key(tenant), raw, chunk_size)

    def reader(self, tenant: str, raw: BinaryIO) -> io.BufferedReader:
        """A readable stream of the plaintext of the sealed file ``raw``.

        Raises:
            DecryptionError: (while reading) a bad header, a tampered, reordered or missing chunk, another
                tenant's file, or a destroyed key.
        """
        return io.BufferedReader(DecryptingReader(self, tenant, raw), buffer_size=CHUNK_SIZE)


def _value_context(tenant: str, key_id: str) -> bytes:
    return _VALUE_CONTEXT + tenant.encode() + b"|" + key_id.encode()


def is_sealed_value(value: str | None) -> bool:
    """Whether a stored text is a sealed value."""
    return isinstance(value, str) and value.startswith(VALUE_PREFIX)


def open_value(keyring: Keyring | None, tenant: str, value: str) -> str:
    """The text of a stored value: opened when sealed, as it is otherwise.

    Raises:
        DecryptionError: sealed but unreadable (altered, another tenant's, destroyed key), or sealed while no
            master key is configured.
    """
    if not is_sealed_value(value):
        return value
    if keyring is None:
        raise DecryptionError("this value is encrypted but no master key is configured (set TAILOR_MASTER_KEY or "
                              "TAILOR_MASTER_KEY_FILE)")
    from cryptography.exceptions import InvalidTag

    key_id, _, body = value[len(VALUE_PREFIX):].partition(":")
    key = keyring.key_by_id(key_id, tenant)
    try:
        raw = base64.urlsafe_b64decode(body)
        return _aesgcm(key.key).decrypt(raw[:_NONCE], raw[_NONCE:], _value_context(tenant, key.id)).decode("utf-8")
    except (InvalidTag, binascii.Error, ValueError):
        raise DecryptionError(f"an encrypted value of tenant {tenant!r} does not decrypt: it was altered") from None


def _header(key_id: str) -> bytes:
    encoded = key_id.encode("ascii")
    return MAGIC + bytes([FORMAT_VERSION, len(encoded)]) + encoded


def _chunk_context(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">QB", index, int(last))


class EncryptingWriter(io.RawIOBase):
    """Seals written bytes chunk by chunk into ``raw``; at most one chunk is held. ``close()`` writes the final
    chunk (flagged last; an empty file gets one empty chunk) and closes ``raw``."""

    def __init__(self, key: DataKey, raw: BinaryIO, chunk_size: int = CHUNK_SIZE):
        super().__init__()
        self._aead = _aesgcm(key.key)
        self._raw = raw
        self._chunk_size = chunk_size
        self._header = _header(key.id)
        self._buffer = bytearray()
        self._index = 0
        raw.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer.extend(data)
        # a chunk goes out only once more data follows it, so the last one can always be flagged at close
        while len(self._buffer) > self._chunk_size:
            self._emit(bytes(self._buffer[:self._chunk_size]), last=False)
            del self._buffer[:self._chunk_size]
        return len(data)

    def _emit(self, plain: bytes, last: bool) -> None:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plain, _chunk_context(self._header, self._index, last))
        self._raw.write(_CHUNK_HEAD.pack(int(last), len(sealed)) + nonce + sealed)
        self._index += 1

    def close(self) -> None:
        if not self.closed:
            try:
                self._emit(bytes(self._buffer), last=True)
                self._buffer.clear()
            finally:
                self._raw.close()
        super().close()

    def discard(self) -> None:
        """Close without sealing a last chunk (an upload that failed; its file is removed by the caller)."""
        if not self.closed:
            self._raw.close()
            self._buffer.clear()
        super().close()


class DecryptingReader(io.RawIOBase):
    """The plaintext of a sealed file, one chunk at a time (wrap it in ``io.BufferedReader``)."""

    def __init__(self, keyring: Keyring, tenant: str, raw: BinaryIO):
        super().__init__()
        self._raw = raw
        self._header = _read_header(raw)
        self._aead = _aesgcm(keyring.key_by_id(self._header[len(MAGIC) + 2:].decode("ascii"), tenant).key)
        self._tenant = tenant
        self._index = 0
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending and not self._done:
            self._pending = self._next_chunk()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _next_chunk(self) -> bytes:
        from cryptography.exceptions import InvalidTag

        head = self._raw.read(_CHUNK_HEAD.size + _NONCE)
        if len(head) < _CHUNK_HEAD.size + _NONCE:
            raise DecryptionError(f"an encrypted file of tenant {self._tenant!r} is truncated: it ends before its "
                                  f"last chunk (after {self._index} chunks)")
        last, length = _CHUNK_HEAD.unpack(head[:_CHUNK_HEAD.size])
        sealed = self._raw.read(length)
        if last > 1 or len(sealed) != length:
            raise DecryptionError(f"an encrypted file of tenant {self._tenant!r} is truncated or damaged at chunk "
                                  f"{self._index}")
        try:
            plain = self._aead.decrypt(head[_CHUNK_HEAD.size:], sealed,
                                       _chunk_context(self._header, self._index, bool(last)))
        except InvalidTag:
            raise DecryptionError(f"an encrypted file of tenant {self._tenant!r} was altered: chunk {self._index} "
                                  "does not decrypt (changed, moved or swapped)") from None
        self._index += 1
        if last:
            if self._raw.read(1):
                raise DecryptionError(f"an encrypted file of tenant {self._tenant!r} has data after its last chunk")
            self._done = True
        return plain

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _read_header(raw: BinaryIO) -> bytes:
    start = raw.read(len(MAGIC) + 2)
    if len(start) < len(MAGIC) + 2 or start[:len(MAGIC)] != MAGIC:
        raise DecryptionError("not an encrypted Tailor file (no TLRENC header)")
    if start[len(MAGIC)] != FORMAT_VERSION:
        raise DecryptionError(f"encrypted file format version {start[len(MAGIC)]} is not supported (this Tailor "
                              f"reads version {FORMAT_VERSION})")
    key_id = raw.read(start[len(MAGIC) + 1])
    return start + key_id


def is_sealed_file(path: Path) -> bool:
    """Whether the file at ``path`` starts with the encrypted-file header."""
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


# -- the process's keyring, start-up check, rotation -------------------------------------------------------------

_keyrings: dict[tuple[str, str], Keyring] = {}
_keyrings_lock = threading.Lock()


def open_keyring(url: str, settings=None) -> Keyring | None:
    """The keyring for the database at ``url`` under the configured master key (one per URL and key in a
    process), or None when no master key is configured: then nothing is encrypted.

    Raises:
        UsageError: a malformed master key.
    """
    if settings is None:
        from tailor.settings import get_settings

        settings = get_settings()
    master = load_master_key(settings)
    if master is None:
        return None
    with _keyrings_lock:
        keyring = _keyrings.get((url, master.fingerprint))
        if keyring is None:
            keyring = _keyrings[(url, master.fingerprint)] = Keyring(url, master)
        return keyring


@dataclass(frozen=True)
class StoredKey:
    """A row of ``tenant_keys`` as the operator sees it (never the key)."""

    id: str
    tenant: str
    master_fingerprint: str
    created_at: datetime


def stored_keys(url: str) -> list[StoredKey]:
    """Every tenant's data key row, by tenant."""
    with open_engine(url).connect() as conn:
        rows = conn.execute(select(_tenant_keys).order_by(_tenant_keys.c.tenant, _tenant_keys.c.id)).all()
    return [StoredKey(r.id, r.tenant, r.master_fingerprint, r.created_at) for r in rows]


def unreadable_tenants(url: str, master: MasterKey | None) -> list[str]:
    """Tenants whose data keys ``master`` does not open (all of them when ``master`` is None), sorted."""
    with open_engine(url).connect() as conn:
        rows = conn.execute(select(_tenant_keys)).all()
    return sorted({r.tenant for r in rows if master is None or _unwrap(master, r.tenant, r.wrapped) is None})


def check_master_key(url: str, master: MasterKey | None, files_of: Callable[[str], int]) -> None:
    """Refuse to go on when tenants' data keys exist that ``master`` does not open; reads only, changes nothing.

    Args:
        files_of: how many stored files a tenant has (named in the message: the files that cannot be read).

    Raises:
        MasterKeyError: naming each such tenant and its file count.
    """
    tenants = unreadable_tenants(url, master)
    if not tenants:
        return
    listed = ", ".join(f"{t} ({_count(files_of(t), 'file')})" for t in tenants)
    if master is None:
        raise MasterKeyError(f"no master key is configured, but the data of {_count(len(tenants), 'tenant')} is "
                             f"encrypted and cannot be read: {listed}. Set TAILOR_MASTER_KEY or "
                             "TAILOR_MASTER_KEY_FILE to the master key it was written with; nothing was changed")
    raise MasterKeyError(f"the master key (fingerprint {master.fingerprint}) does not open the data keys of "
                         f"{_count(len(tenants), 'tenant')}, whose data cannot be decrypted: {listed}. Start with "
                         "the master key they were wrapped with (tailor keys rotate-master changes it); nothing "
                         "was changed")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def rotate_master(url: str, old: MasterKey, new: MasterKey) -> list[str]:
    """Re-wrap every tenant's data key from ``old`` to ``new`` in one transaction; the data is not touched.

    Returns:
        The tenants whose keys were re-wrapped.

    Raises:
        MasterKeyError: ``old`` does not open some tenant's key (nothing is changed).
    """
    engine = open_engine(url)
    with engine.begin() as conn:
        rows = conn.execute(select(_tenant_keys).order_by(_tenant_keys.c.tenant).with_for_update()).all()
        unopened = sorted({r.tenant for r in rows if _unwrap(old, r.tenant, r.wrapped) is None})
        if unopened:
            raise MasterKeyError(f"the current master key (fingerprint {old.fingerprint}) does not open the data "
                                 f"keys of: {', '.join(unopened)}; nothing was changed")
        for row in rows:
            key = _unwrap(old, row.tenant, row.wrapped)
            conn.execute(update(_tenant_keys).where(_tenant_keys.c.id == row.id).values(
                wrapped=_wrap(new, row.tenant, key), master_fingerprint=new.fingerprint))
    with _keyrings_lock:
        _keyrings.clear()
    return [r.tenant for r in rows]


# -- directories of sealed files (model artifacts, generation engines) ---------------------------------------------


def seal_tree(keyring: Keyring, tenant: str, source: Path, target: Path, names) -> None:
    """Encrypt the files ``names`` (POSIX paths relative to ``source``) under the tenant's key into ``target``,
    under the same names."""
    import shutil

    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        with (source / name).open("rb") as plain, keyring.writer(tenant, (target / name).open("wb")) as out:
            shutil.copyfileobj(plain, out, CHUNK_SIZE)


def open_tree(keyring: Keyring, tenant: str, source: Path, target: Path, names, what: str) -> None:
    """Decrypt the sealed files ``names`` of ``source`` into ``target``, under the same names.

    Raises:
        DecryptionError: a file does not decrypt; the message names ``what`` (e.g. ``artifact acme/x/1``) and the file.
    """
    import shutil

    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            with (source / name).open("rb") as raw, keyring.reader(tenant, raw) as plain, \
                    (target / name).open("wb") as out:
                shutil.copyfileobj(plain, out, CHUNK_SIZE)
        except DecryptionError as exc:
            raise DecryptionError(f"{what}: {name} cannot be decrypted: {exc}") from None


# -- plaintext for readers that need a path ------------------------------------------------------------------------

_WORKSPACE_PREFIX = "tailor-plain-"


def _workspace_base() -> Path:
    """``TAILOR_PLAINTEXT_DIR`` when set, else memory-backed ``/dev/shm`` where there is one (plaintext then never
    reaches a disk), else the temp dir."""
    import tempfile

    from tailor.settings import get_settings

    chosen = get_settings().plaintext_dir
    if chosen is not None:
        chosen.mkdir(mode=0o700, parents=True, exist_ok=True)
        return chosen
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def private_workspace_path() -> Path:
    """A new directory only this user can enter (0700), named after this process so a crashed one's can be
    swept (:func:`sweep_private_workspaces`). The caller removes it."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"{_WORKSPACE_PREFIX}{os.getpid()}-", dir=_workspace_base()))


def sweep_private_workspaces() -> list[Path]:
    """Remove the plaintext workspaces of processes that no longer run (a worker killed mid-job)."""
    import shutil

    removed = []
    for path in _workspace_base().glob(f"{_WORKSPACE_PREFIX}*-*"):
        pid = path.name[len(_WORKSPACE_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and path.stat().st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
