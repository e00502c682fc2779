"""The audit log on every backend: the hash chain, verify naming the first edited, deleted or cut-off row, listing
filters, and appends from several threads and processes staying one chain."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from tailor.db import open_engine
from tailor.security.audit import GENESIS, AuditLog, canonical_json, entry_hash


@pytest.fixture
def log(db_url):
    return AuditLog(db_url)


def append(log: AuditLog, n: int, tenant: str = "acme", actor: str = "key_a") -> list:
    return [log.record(tenant=tenant, actor=actor, action="POST /v1/files", target={"n": str(i)}, client="10.0.0.1",
                       result="200") for i in range(n)]


def execute(db_url: str, sql: str, **params) -> None:
    with open_engine(db_url).begin() as conn:
        conn.execute(text(sql), params)


def test_each_row_hashes_the_previous_hash_and_its_canonical_fields(log):
    first, second = (log.record(tenant="acme", actor="key_a", action="DELETE /v1/files/{file_id}",
                                target={"file_id": "file-1"}, client="10.0.0.1", result="404",
                                error="file 'file-1' not found"),
                     log.record(tenant=None, actor="anonymous", action="POST /v1/keys", result="401", error="é"))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS == "0" * 64 and second.prev_hash == first.hash
    fields = {"seq": 1, "tenant": "acme", "actor": "key_a", "action": "DELETE /v1/files/{file_id}",
              "target": {"file_id": "file-1"}, "client": "10.0.0.1", "result": "404",
              "error": "file 'file-1' not found", "at": first.at.isoformat(timespec="microseconds")}
    assert first.fields() == fields
    assert canonical_json(fields).startswith('{"action":"DELETE /v1/files/{file_id}","actor":"key_a","at":"')
    assert first.hash == hashlib.sha256((GENESIS + canonical_json(fields)).encode()).hexdigest()
    assert second.hash == entry_hash(first.hash, second.fields())
    report = log.verify()
    assert report.intact and (report.rows, report.head) == (2, second.hash)
    assert report.describe() == f"chain intact: 2 rows, head {second.hash}"


def test_an_empty_log_is_intact(log):
    assert log.verify().describe() == f"chain intact: 0 rows, head {GENESIS}"


def test_an_edited_field_is_named_by_its_seq(log, db_url):
    rows = append(log, 5)
    execute(db_url, "UPDATE audit_log SET result = '200', actor = 'key_b' WHERE seq = 3")
    report = log.verify()
    assert (report.intact, report.bad_seq, report.rows, report.head) == (False, 3, 2, rows[1].hash)
    assert report.describe() == "audit chain broken at seq 3: hash mismatch (a field was changed after the row " \
                                "was written)"


def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(log, db_url):
    rows = append(log, 4)
    forged = {**rows[1].fields(), "actor": "key_innocent"}
    execute(db_url, "UPDATE audit_log SET actor = 'key_innocent', hash = :h WHERE seq = 2",
            h=entry_hash(rows[1].prev_hash, forged))
    assert log.verify().describe() == "audit chain broken at seq 3: prev_hash does not match the hash of seq 2 " \
                                      "(a row was replaced)"


def test_a_deleted_row_is_a_gap(log, db_url):
    append(log, 5)
    execute(db_url, "DELETE FROM audit_log WHERE seq = 4")
    assert log.verify().describe() == "audit chain broken at seq 4: missing: the chain jumps from seq 3 to seq 5 " \
                                      "(a row was deleted)"


def test_deleted_first_rows_are_caught(log, db_url):
    append(log, 3)
    execute(db_url, "DELETE FROM audit_log WHERE seq <= 2")
    assert log.verify().describe() == "audit chain broken at seq 1: missing: the chain starts at seq 3 (rows " \
                                      "were deleted from its start)"


def test_a_cut_tail_is_caught_by_the_head(log, db_url):
    append(log, 5)
    execute(db_url, "DELETE FROM audit_log WHERE seq >= 4")
    report = log.verify()
    assert report.describe() == "audit chain broken at seq 4: missing: the head records 5 rows, the chain ends " \
                                "at seq 3 (rows were deleted from its end)"
    assert report.rows == 3


def test_a_row_slipped_in_after_the_head_is_caught(log, db_url):
    rows = append(log, 2)
    extra = {**rows[1].fields(), "seq": 3}
    execute(db_url, "INSERT INTO audit_log (seq, tenant, actor, action, target, client, result, error, at, "
                    "prev_hash, hash) SELECT 3, tenant, actor, action, target, client, result, error, at, hash, :h "
                    "FROM audit_log WHERE seq = 2", h=entry_hash(rows[1].hash, extra))
    assert log.verify().describe() == (
        f"audit chain broken at seq 3: the head records seq 2 with hash {rows[1].hash}, not this row (rows were "
        "added outside the log, or the head was changed)")


def test_verify_walks_a_chain_longer_than_one_batch(log, db_url):
    append(log, 7)
    assert log.verify(batch=3).describe().startswith("chain intact: 7 rows")
    execute(db_url, "UPDATE audit_log SET client = '10.6.6.6' WHERE seq = 7")
    assert log.verify(batch=3).bad_seq == 7


def test_list_is_newest_first_per_tenant_with_filters_and_a_cursor(log):
    append(log, 3, tenant="acme")
    append(log, 2, tenant="globex")
    log.record(tenant="acme", actor="cli:ops", action="models alias", target={"ref": "m:1"}, result="ok")
    rows, more = log.list("acme", limit=2)
    assert [r.seq for r in rows] == [6, 3] and more
    rows, more = log.list("acme", after=3, limit=2)
    assert [r.seq for r in rows] == [2, 1] and not more
    assert [r.seq for r in log.list(None)[0]] == [6, 5, 4, 3, 2, 1]
    assert [r.seq for r in log.list("acme", action="models alias")[0]] == [6]
    assert [r.seq for r in log.list("globex", since=rows[0].at)[0]] == [5, 4]
    assert log.list("acme", since=log.list(None)[0][0].at + timedelta(seconds=1)) == ([], False)


def test_error_text_is_cut_to_500_characters(log):
    row = log.record(tenant="acme", actor="key_a", action="POST /v1/files", result="400", error="x" * 900)
    assert len(row.error) == 500 and row.error.endswith("…")
    assert log.verify().intact


def test_threads_appending_at_once_keep_one_chain(log):
    threads = [threading.Thread(target=append, args=(log, 10, f"t{i}")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows, _ = log.list(None, limit=1000)
    assert sorted(r.seq for r in rows) == list(range(1, 61))
    assert log.verify().describe() == f"chain intact: 60 rows, head {rows[0].hash}"


def _append_in_process(url: str, tenant: str, n: int) -> None:
    from tailor.db import _engines

    _engines.clear()  # a forked child must not share its parent's connections
    append(AuditLog(url), n, tenant)


def test_two_processes_appending_at_once_keep_one_chain(log, db_url):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_in_process, args=(db_url, f"p{i}", 25)) for i in range(2)]
    for w in workers:
        w.start()
    append(log, 25, "parent")
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    rows, _ = log.list(None, limit=1000)
    assert sorted(r.seq for r in rows) == list(range(1, 76))
    assert sorted({r.tenant for r in rows}) == ["p0", "p1", "parent"]
    assert log.verify().describe() == f"chain intact: 75 rows, head {rows[0].hash}"
    # the chain interleaves the writers: each row links to the one before it, whoever wrote that
    by_seq = {r.seq: r for r in rows}
    assert all(by_seq[s].prev_hash == by_seq[s - 1].hash for s in range(2, 76))


def test_targets_round_trip_as_json(log, db_url):
    log.record(tenant="acme", actor="key_a", action="PUT /v1/models/{model_id}/aliases/{alias}",
               target={"model_id": "ft:minilm-l6:acme:x:ftjob-1", "alias": "prod"}, result="200")
    with open_engine(db_url).connect() as conn:
        stored = conn.execute(text("SELECT target FROM audit_log")).scalar_one()
    assert json.loads(stored) == {"alias": "prod", "model_id": "ft:minilm-l6:acme:x:ftjob-1"}
