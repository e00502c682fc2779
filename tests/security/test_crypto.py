"""The envelope encryption core: master keys, per-tenant data keys, the chunked file format and sealed values;
tampering of every kind is caught with a message that says what happened; rotation re-wraps and loses nothing;
a wrong master key is refused naming the tenants and their files."""

from __future__ import annotations

import base64
import io
import os
import secrets
from pathlib import Path

import pytest

from tailor.errors import UsageError
from tailor.security.crypto import (
    DecryptionError,
    Keyring,
    MasterKey,
    MasterKeyError,
    check_master_key,
    parse_master_key,
    rotate_master,
    stored_keys,
)

HINT = ("give 32 random bytes as URL-safe base64, e.g. the output of: python -c \"import base64, secrets; "
        "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())\"")


class _Kept(io.BytesIO):
    """A sink that keeps its bytes readable after the writer closes it."""

    def close(self):
        pass


def _master() -> MasterKey:
    return MasterKey(secrets.token_bytes(32))


def _seal(keyring: Keyring, tenant: str, data: bytes, chunk_size: int) -> bytes:
    sink = _Kept()
    with keyring.writer(tenant, sink, chunk_size=chunk_size) as writer:
        for start in range(0, len(data), 7):  # written in small pieces, as an upload arrives
            writer.write(data[start:start + 7])
    return sink.getvalue()


def _open(keyring: Keyring, tenant: str, sealed: bytes) -> bytes:
    return keyring.reader(tenant, io.BytesIO(sealed)).read()


@pytest.fixture
def keyring(db_url) -> Keyring:
    return Keyring(db_url, _master())


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    """The header and the chunk records of a sealed file (parsed here independently of the reader)."""
    header_len = 6 + 2 + sealed[7]
    header, rest, records = sealed[:header_len], sealed[header_len:], []
    while rest:
        length = int.from_bytes(rest[1:5], "big")
        records.append(rest[:5 + 12 + length])
        rest = rest[5 + 12 + length:]
    return header, records


@pytest.mark.parametrize("size", [0, 1, 16, 17, 48, 100])
def test_files_round_trip_at_every_size_around_the_chunk_size(keyring, size):
    data = secrets.token_bytes(size)
    sealed = _seal(keyring, "acme", data, chunk_size=16)
    header, records = _chunks(sealed)
    assert header.startswith(b"TLRENC\x01")
    assert len(records) == max(1, -(-size // 16))  # one empty last chunk for an empty file
    assert [r[0] for r in records] == [0] * (len(records) - 1) + [1]  # only the last is flagged last
    assert _open(keyring, "acme", sealed) == data


def test_a_multi_chunk_file_at_the_real_chunk_size_round_trips(keyring):
    data = secrets.token_bytes(2 * 1024 * 1024 + 12345)
    sink = _Kept()
    with keyring.writer("acme", sink) as writer:
        writer.write(data)
    _, records = _chunks(sink.getvalue())
    assert len(records) == 3 and len(sink.getvalue()) == len(data) + 6 + 2 + 27 + 3 * (5 + 12 + 16)
    assert _open(keyring, "acme", sink.getvalue()) == data


def test_tampering_is_caught_with_what_happened(keyring):
    data = bytes(range(256)) * 3
    sealed = _seal(keyring, "acme", data, chunk_size=100)
    header, records = _chunks(sealed)
    assert len(records) == 8

    flipped = bytearray(sealed)
    flipped[len(header) + len(records[0]) + 40] ^= 1  # a byte inside chunk 1's ciphertext
    with pytest.raises(DecryptionError, match=r"^an encrypted file of tenant 'acme' was altered: chunk 1 does not "
                                              r"decrypt \(changed, moved or swapped\)$"):
        _open(keyring, "acme", bytes(flipped))

    swapped = header + records[1] + records[0] + b"".join(records[2:])
    with pytest.raises(DecryptionError, match="^an encrypted file of tenant 'acme' was altered: chunk 0 "):
        _open(keyring, "acme", swapped)

    without_last = header + b"".join(records[:-1])
    with pytest.raises(DecryptionError, match=r"^an encrypted file of tenant 'acme' is truncated: it ends before its "
                                              r"last chunk \(after 7 chunks\)$"):
        _open(keyring, "acme", without_last)

    cut = sealed[:len(header) + len(records[0]) + 30]
    with pytest.raises(DecryptionError, match="^an encrypted file of tenant 'acme' is truncated or damaged at "
                                              "chunk 1$"):
        _open(keyring, "acme", cut)

    # the last chunk moved to the middle: its index no longer matches
    moved_last = header + records[0] + records[-1] + b"".join(records[1:-1])
    with pytest.raises(DecryptionError, match="^an encrypted file of tenant 'acme' was altered: chunk 1 "):
        _open(keyring, "acme", moved_last)

    with pytest.raises(DecryptionError, match="^an encrypted file of tenant 'acme' has data after its last chunk$"):
        _open(keyring, "acme", sealed + b"x")

    with pytest.raises(DecryptionError, match=r"^not an encrypted Tailor file \(no TLRENC header\)$"):
        _open(keyring, "acme", b"text,label\nhello,pos\n")


def test_a_tenant_cannot_open_another_tenants_file_or_value(keyring):
    sealed = _seal(keyring, "acme", b"acme's rows", chunk_size=16)
    value = keyring.seal_text("acme", "acme's text")
    acme_key = keyring.data_key("acme").id
    assert keyring.data_key("globex").id != acme_key
    message = (f"^the data key {acme_key} of tenant 'globex' does not exist \\(it was destroyed with its tenant, or "
               "the data belongs to another tenant\\)$")
    with pytest.raises(DecryptionError, match=message):
        _open(keyring, "globex", sealed)
    with pytest.raises(DecryptionError, match=message):
        keyring.open_text("globex", value)


def test_values_round_trip_and_plaintext_from_before_encryption_reads_as_it_is(keyring):
    value = keyring.seal_text("acme", "Überweisung an ann@corp.com, 2 400 €")
    key_id = keyring.data_key("acme").id
    assert value.startswith(f"tenc1:{key_id}:") and "corp" not in value
    assert keyring.open_text("acme", value) == "Überweisung an ann@corp.com, 2 400 €"
    assert keyring.seal_text("acme", "same") != keyring.seal_text("acme", "same")  # a fresh nonce each time
    assert keyring.open_text("acme", "written before encryption") == "written before encryption"

    body = bytearray(base64.urlsafe_b64decode(value.rsplit(":", 1)[1]))
    body[-1] ^= 1
    altered = value.rsplit(":", 1)[0] + ":" + base64.urlsafe_b64encode(bytes(body)).decode()
    with pytest.raises(DecryptionError, match="^an encrypted value of tenant 'acme' does not decrypt: it was altered$"):
        keyring.open_text("acme", altered)


def test_one_data_key_per_tenant_shared_by_every_process(db_url):
    master = _master()
    first, second = Keyring(db_url, master), Keyring(db_url, master)
    value = first.seal_text("acme", "hello")
    assert second.data_key("acme").id == first.data_key("acme").id
    assert second.open_text("acme", value) == "hello"
    assert [(k.tenant, k.master_fingerprint) for k in stored_keys(db_url)] == [("acme", master.fingerprint)]


@pytest.mark.parametrize("text, message", [
    ("not base64!", "TAILOR_MASTER_KEY is not valid URL-safe base64: " + HINT),
    (base64.urlsafe_b64encode(b"x" * 16).decode(), "TAILOR_MASTER_KEY holds 16 bytes, not 32: " + HINT),
])
def test_a_malformed_master_key_is_refused_without_echoing_it(text, message):
    with pytest.raises(UsageError) as caught:
        parse_master_key(text, "TAILOR_MASTER_KEY")
    assert str(caught.value) == message


def test_a_master_key_parses_with_or_without_padding():
    raw = secrets.token_bytes(32)
    padded = base64.urlsafe_b64encode(raw).decode()
    assert parse_master_key(padded, "k").key == raw == parse_master_key(padded.rstrip("=") + "\n", "k").key
    assert "key=" not in repr(MasterKey(raw)) and raw.hex() not in repr(MasterKey(raw))


def test_a_wrong_or_missing_master_key_is_refused_naming_tenants_and_files(db_url):
    master = _master()
    keyring = Keyring(db_url, master)
    for tenant in ("globex", "acme"):
        keyring.data_key(tenant)
    files = {"acme": 3, "globex": 1}
    check_master_key(db_url, master, files.get)  # the right key passes
    before = stored_keys(db_url)
    wrong = _master()
    with pytest.raises(MasterKeyError) as caught:
        check_master_key(db_url, wrong, files.get)
    assert str(caught.value) == (
        f"the master key (fingerprint {wrong.fingerprint}) does not open the data keys of 2 tenants, whose data "
        "cannot be decrypted: acme (3 files), globex (1 file). Start with the master key they were wrapped with "
        "(tailor keys rotate-master changes it); nothing was changed")
    with pytest.raises(MasterKeyError) as caught:
        check_master_key(db_url, None, files.get)
    assert str(caught.value) == (
        "no master key is configured, but the data of 2 tenants is encrypted and cannot be read: acme (3 files), "
        "globex (1 file). Set TAILOR_MASTER_KEY or TAILOR_MASTER_KEY_FILE to the master key it was written with; "
        "nothing was changed")
    assert stored_keys(db_url) == before
    with pytest.raises(MasterKeyError, match="^the master key does not open the data key of tenant 'acme'"):
        Keyring(db_url, wrong).data_key("acme")  # no second key is created for it either
    assert stored_keys(db_url) == before


def test_without_data_keys_any_master_key_or_none_starts(db_url):
    check_master_key(db_url, None, lambda tenant: 0)
    check_master_key(db_url, _master(), lambda tenant: 0)


def test_rotating_the_master_key_rewraps_every_key_and_reads_everything_back(db_url):
    old, new = _master(), _master()
    keyring = Keyring(db_url, old)
    sealed = {t: (_seal(keyring, t, f"{t} rows".encode() * 50, chunk_size=64), keyring.seal_text(t, f"{t} text"))
              for t in ("acme", "globex", "initech")}
    ids = {k.tenant: k.id for k in stored_keys(db_url)}
    assert rotate_master(db_url, old, new) == ["acme", "globex", "initech"]
    assert {k.tenant: (k.id, k.master_fingerprint) for k in stored_keys(db_url)} == {
        t: (ids[t], new.fingerprint) for t in ids}
    reopened = Keyring(db_url, new)
    for tenant, (file_bytes, value) in sealed.items():
        assert _open(reopened, tenant, file_bytes) == f"{tenant} rows".encode() * 50
        assert reopened.open_text(tenant, value) == f"{tenant} text"
    with pytest.raises(MasterKeyError, match=r"^the master key \(fingerprint "):
        check_master_key(db_url, old, lambda tenant: 0)
    with pytest.raises(MasterKeyError) as caught:  # rotating from a key that opens nothing changes nothing
        rotate_master(db_url, old, _master())
    assert str(caught.value) == (f"the current master key (fingerprint {old.fingerprint}) does not open the data keys "
                                 "of: acme, globex, initech; nothing was changed")
    assert {k.master_fingerprint for k in stored_keys(db_url)} == {new.fingerprint}


def test_shredding_a_tenants_key_makes_its_data_unreadable_for_good(db_url):
    keyring = Keyring(db_url, _master())
    sealed, value = _seal(keyring, "acme", b"secret rows", chunk_size=16), keyring.seal_text("acme", "secret")
    key_id = keyring.data_key("acme").id
    keyring.data_key("globex")
    assert keyring.shred("acme") == 1
    assert [k.tenant for k in stored_keys(db_url)] == ["globex"]
    gone = f"^the data key {key_id} of tenant 'acme' does not exist"
    with pytest.raises(DecryptionError, match=gone):
        _open(keyring, "acme", sealed)
    with pytest.raises(DecryptionError, match=gone):
        keyring.open_text("acme", value)


def test_plaintext_workspaces_go_where_tailor_plaintext_dir_says(tmp_path, monkeypatch):
    from tailor.security.crypto import private_workspace_path

    monkeypatch.setenv("TAILOR_PLAINTEXT_DIR", str(tmp_path / "plain"))
    workspace = private_workspace_path()
    assert workspace.parent == tmp_path / "plain" and workspace.name.startswith(f"tailor-plain-{os.getpid()}-")
    assert (workspace.stat().st_mode & 0o777, (tmp_path / "plain").stat().st_mode & 0o777) == (0o700, 0o700)
    monkeypatch.delenv("TAILOR_PLAINTEXT_DIR")
    default = private_workspace_path()
    default.rmdir()
    assert default.parent == Path("/dev/shm")  # the default: memory
