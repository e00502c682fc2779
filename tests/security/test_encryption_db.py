"""The database's copies of client data sealed at rest, on every backend: a version's lineage and metrics, a job's
request, result, error and events, an audit row's error. With a master key the raw columns hold only ``tenc1:``
values without the client's words, while every store reads back exactly what was written; rows written before
encryption still read; a destroyed or missing key gives a clear error; the audit chain verifies over the sealed
text, catches a tampered one, and survives a master key rotation and a tenant's deletion (its errors then show as
erased)."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from tailor.cli import main
from tailor.jobs.store import FAILED, MAX_ATTEMPTS, JobStore
from tailor.registry.sql import SqlRegistryStore
from tailor.security.audit import AuditLog
from tailor.security.crypto import DecryptionError, open_keyring, stored_keys
from tailor.security.sealing import ALTERED, ERASED, LOCKED
from tailor.settings import Settings

MARKER = "WombatMarker4417"
LINEAGE = {"dataset": {"sha256": "ab" * 32, "rows": 40},
           "data_report": {"examples": [{"row": 3, "text": f"refund to ann@corp.com {MARKER}", "label": "neg"}],
                           "labels": {"neg": 20, "pos": 20}},
           "fingerprint": {"samples": [f"a sample {MARKER} text", "第二个样本"]}}
METRICS = {"accuracy": 0.875, "macro_f1": 0.8625,
           "explanations": {"mistakes": [{"text": f"not good at all {MARKER}", "label": "pos", "predicted": "neg",
                                          "explanation": [{"token": MARKER, "start": 16, "end": 32,
                                                           "weight": 0.41}]}]}}


@pytest.fixture
def settings(fresh_home, db_url, master_key) -> Settings:
    return Settings(home=fresh_home, database_url=db_url, master_key=SecretStr(master_key))


@pytest.fixture
def plain_settings(fresh_home, db_url, monkeypatch) -> Settings:
    monkeypatch.delenv("TAILOR_MASTER_KEY", raising=False)
    monkeypatch.delenv("TAILOR_MASTER_KEY_FILE", raising=False)
    return Settings(home=fresh_home, database_url=db_url, master_key=None)


def _raw(db_url: str, sql: str, **params) -> list[tuple]:
    """Rows of ``sql`` read with plain SQLAlchemy: the columns exactly as the database holds them."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def _execute(db_url: str, sql: str, **params) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


def _assert_sealed(values) -> None:
    for value in values:
        assert value.startswith("tenc1:") and MARKER not in value and "ann@corp.com" not in value


def _publish(store: SqlRegistryStore, tenant: str = "acme", name: str = "sentiment"):
    return store.create_version(tenant, name, task="classify", base_model="minilm-l6", method="head",
                                artifact_path=f"{tenant}/{name}/x", params={"epochs": 1}, metrics=METRICS,
                                lineage=LINEAGE)


# -- the registry ------------------------------------------------------------------------------------------------


def test_a_versions_lineage_and_metrics_are_sealed_and_read_back_exactly(settings, db_url):
    store = SqlRegistryStore(db_url, settings)
    created = _publish(store)
    assert (created.lineage, created.metrics) == (LINEAGE, METRICS)
    [(lineage, metrics, params)] = _raw(db_url, "SELECT lineage, metrics, params FROM model_versions")
    _assert_sealed([lineage, metrics])
    assert json.loads(params) == {"epochs": 1}  # the training configuration holds no client text
    store.set_alias("acme", "sentiment", "prod", 1)
    for found in (store.get_version("acme", "sentiment", 1), store.list_versions("acme", "sentiment")[0],
                  store.resolve("acme", "sentiment@prod"), store.route("acme", "sentiment@prod").version):
        assert (found.lineage, found.metrics, found.aliases) == (LINEAGE, METRICS, ("prod",))

    merged = store.update_metrics("acme", "sentiment", 1, {"fairness": {"slices": {MARKER: {"accuracy": 0.5}}}})
    assert merged.metrics == {**METRICS, "fairness": {"slices": {MARKER: {"accuracy": 0.5}}}}
    assert store.get_version("acme", "sentiment", 1).metrics == merged.metrics
    _assert_sealed([v for (v,) in _raw(db_url, "SELECT metrics FROM model_versions")])
    assert store.delete_version("acme", "sentiment", 1).lineage == LINEAGE


def test_registry_rows_written_before_encryption_read_and_are_sealed_on_their_next_merge(settings, plain_settings,
                                                                                         db_url):
    _publish(SqlRegistryStore(db_url, plain_settings))
    [(lineage,)] = _raw(db_url, "SELECT lineage FROM model_versions")
    assert json.loads(lineage) == LINEAGE  # no key: stored as before
    store = SqlRegistryStore(db_url, settings)
    assert store.get_version("acme", "sentiment", 1).lineage == LINEAGE
    assert store.update_metrics("acme", "sentiment", 1, {"calibration": {"ece": 0.03}}).metrics == {
        **METRICS, "calibration": {"ece": 0.03}}
    [(lineage, metrics)] = _raw(db_url, "SELECT lineage, metrics FROM model_versions")
    assert json.loads(lineage) == LINEAGE and metrics.startswith("tenc1:")


def test_a_destroyed_or_missing_key_is_a_clear_error(settings, plain_settings, db_url):
    store = SqlRegistryStore(db_url, settings)
    _publish(store)
    with pytest.raises(DecryptionError) as caught:
        SqlRegistryStore(db_url, plain_settings).get_version("acme", "sentiment", 1)
    assert str(caught.value) == ("this value is encrypted but no master key is configured (set TAILOR_MASTER_KEY or "
                                 "TAILOR_MASTER_KEY_FILE)")
    [key] = stored_keys(db_url)
    assert open_keyring(db_url, settings).shred("acme") == 1
    with pytest.raises(DecryptionError) as caught:
        store.list_versions("acme", "sentiment")
    assert str(caught.value) == (f"the data key {key.id} of tenant 'acme' does not exist (it was destroyed with its "
                                 "tenant, or the data belongs to another tenant)")


def test_a_sealed_value_moved_to_another_tenant_does_not_open(settings, db_url):
    store = SqlRegistryStore(db_url, settings)
    _publish(store, "acme")
    _publish(store, "globex")
    _execute(db_url, "UPDATE model_versions SET lineage = (SELECT v.lineage FROM model_versions v JOIN models m "
                     "ON m.id = v.model_id WHERE m.tenant = 'acme') WHERE model_id = (SELECT id FROM models WHERE "
                     "tenant = 'globex')")
    acme_key = next(k.id for k in stored_keys(db_url) if k.tenant == "acme")
    with pytest.raises(DecryptionError, match=f"^the data key {acme_key} of tenant 'globex' does not exist"):
        store.get_version("globex", "sentiment", 1)


def test_listing_200_sealed_versions_opens_every_one(settings, db_url):
    store = SqlRegistryStore(db_url, settings)
    for _ in range(200):
        _publish(store)
    listed = store.list_versions("acme", "sentiment")
    assert [v.version for v in listed] == list(range(200, 0, -1)) or [v.version for v in listed] == list(range(1, 201))
    assert all(v.lineage == LINEAGE and v.metrics == METRICS for v in listed)
    _assert_sealed(value for row in _raw(db_url, "SELECT lineage, metrics FROM model_versions") for value in row)


# -- files ---------------------------------------------------------------------------------------------------------


def test_a_files_name_and_summary_are_sealed_and_read_back(settings, db_url, tmp_path):
    from tailor.data.files import FileStore

    files = FileStore(db_url, settings.files_dir, settings)
    source = tmp_path / "upload.csv"
    source.write_text("text,label\n" + "".join(f"{MARKER} row {i},{MARKER}{i % 2}\n" for i in range(8)))
    stored = files.add("acme", source, filename=f"{MARKER}.csv", purpose="fine-tune", sha256="0" * 64,
                       max_bytes=settings.max_file_bytes)
    assert (stored.filename, stored.summary["labels"]) == (f"{MARKER}.csv", {f"{MARKER}0": 4, f"{MARKER}1": 4})
    assert files.list("acme")[0][0] == stored
    _assert_sealed(value for row in _raw(db_url, "SELECT filename, summary FROM files") for value in row)
    assert files.delete_tenant("acme") == [stored]


# -- jobs --------------------------------------------------------------------------------------------------------


def _new_job(store: JobStore, tenant: str = "acme"):
    return store.create(tenant, model="minilm-l6", task="classification", training_file="file-abc",
                        validation_file=None, suffix="s", seed=7,
                        request={"metadata": {"note": MARKER}, "overrides": {"labels": [MARKER, "pos"]}})


def test_a_jobs_request_result_error_and_events_are_sealed(settings, db_url):
    store = JobStore(db_url, settings)
    job = _new_job(store)
    store.add_event(job.id, f"Data report: row 12 {MARKER}", data={"row": {"text": MARKER}})
    assert store.claim("w1").request == {"metadata": {"note": MARKER}, "overrides": {"labels": [MARKER, "pos"]}}
    error = {"code": "invalid_training_file", "message": f"row 12: label missing in '{MARKER}'", "param": None}
    assert store.finish(job.id, "w1", FAILED, error=error, message=f"Fine-tuning failed: row 12 {MARKER}")

    got = store.get("acme", job.id)
    assert (got.status, got.error, got.request["metadata"]) == (FAILED, error, {"note": MARKER})
    assert store.list("acme")[0][0] == got
    events = store.events("acme", job.id, limit=10)[0]
    assert [(e.level, e.message, e.data) for e in events] == [
        ("error", f"Fine-tuning failed: row 12 {MARKER}", None),
        ("info", f"Data report: row 12 {MARKER}", {"row": {"text": MARKER}}),
        ("info", "Job queued", None), ("info", "Validated training file: file-abc", None)]

    [(request, stored_error, result, status, training_file)] = _raw(
        db_url, "SELECT request, error, result, status, training_file FROM jobs")
    _assert_sealed([request, stored_error])
    assert (result, status, training_file) == (None, FAILED, "file-abc")  # what the queue queries stays plain
    messages = _raw(db_url, "SELECT message, data FROM job_events ORDER BY id")
    _assert_sealed([m for m, _ in messages] + [d for _, d in messages if d is not None])


def test_a_succeeded_job_and_a_recovered_one_are_sealed_too(settings, db_url):
    store = JobStore(db_url, settings)
    done, lost = _new_job(store), _new_job(store, "globex")
    store.claim("w1")
    store.claim("w2")
    result = {"metrics": {"accuracy": 0.9}, "labels": [MARKER, "pos"]}
    assert store.finish(done.id, "w1", "succeeded", fine_tuned_model="ft:x", result=result, message="done")
    for attempt in range(MAX_ATTEMPTS):
        assert store.recover_lost(stale_after_s=60, worker_ids=("w2",)) == [lost.id]
        if attempt < MAX_ATTEMPTS - 1:
            assert store.claim("w2").id == lost.id
    assert store.get("acme", done.id).result == result
    failed = store.get("globex", lost.id)
    assert (failed.status, failed.error["message"]) == (FAILED, "the job's worker stopped 3 times; giving up")
    [(stored_result,)] = _raw(db_url, "SELECT result FROM jobs WHERE id = :id", id=done.id)
    _assert_sealed([stored_result])
    assert all(m.startswith("tenc1:") for (m,) in _raw(db_url, "SELECT message FROM job_events"))


def test_jobs_written_before_encryption_still_read(settings, plain_settings, db_url):
    job = _new_job(JobStore(db_url, plain_settings))
    store = JobStore(db_url, settings)
    assert store.get("acme", job.id).request["metadata"] == {"note": MARKER}
    store.add_event(job.id, f"later {MARKER}")
    assert [e.message for e in store.events("acme", job.id)[0]] == [
        f"later {MARKER}", "Job queued", "Validated training file: file-abc"]
    [(plain_request,)] = _raw(db_url, "SELECT request FROM jobs")
    assert json.loads(plain_request)["metadata"] == {"note": MARKER}
    with pytest.raises(DecryptionError, match="^this value is encrypted but no master key is configured"):
        JobStore(db_url, plain_settings).events("acme", job.id)


# -- prediction records ----------------------------------------------------------------------------------------


def test_a_records_metadata_and_error_details_are_sealed(settings, plain_settings, db_url):
    from tailor.monitor.records import PredictionRecord, PredictionStore, new_id

    store = PredictionStore(db_url, settings)
    answer = PredictionRecord(id=new_id("classification"), tenant="acme", kind="classification", model="m",
                              model_name="m", version=1, label="pos", score=0.9, input={"text": "fine"},
                              metadata={"patient": MARKER})
    failed = PredictionRecord(id=new_id("error"), tenant="acme", kind="error", model="m", model_name="m", version=1,
                              details={"status": 400, "message": f"input 0: too long: '{MARKER}...'"})
    older = PredictionRecord(id=new_id("classification"), tenant="acme", kind="classification", model="m",
                             model_name="m", version=1, label="neg", input={"text": "old"}, metadata={"patient": "x"})
    PredictionStore(db_url, plain_settings).add([older])
    store.add([answer, failed])
    assert store.get("acme", failed.id).details == {"status": 400, "message": f"input 0: too long: '{MARKER}...'"}
    assert [r.id for r in store.list_stored("acme", "classification", metadata={"patient": MARKER})[0]] == [answer.id]
    assert [r.id for r in store.list_stored("acme", "classification", metadata={"patient": "x"})[0]] == [older.id]
    updated = store.update_metadata("acme", answer.id, "classification", {"patient": f"{MARKER}-2"})
    assert store.get("acme", answer.id).metadata == updated.metadata == {"patient": f"{MARKER}-2"}
    raw = dict(((i, (m, d)) for i, m, d in _raw(db_url, "SELECT id, metadata, details FROM predictions")))
    _assert_sealed([raw[answer.id][0], raw[failed.id][1]])
    assert json.loads(raw[older.id][0]) == {"patient": "x"}  # written before encryption: as it was


# -- the audit log -----------------------------------------------------------------------------------------------


def _record(log: AuditLog, tenant: str | None, error: str | None):
    return log.record(tenant=tenant, actor="key_a", action="POST /v1/files", result="400" if error else "200",
                      target={"file_id": "file-1"}, client="10.0.0.1", error=error)


def test_audit_errors_are_sealed_and_the_chain_verifies_over_them(settings, plain_settings, db_url):
    from tailor.security.keys import TenantStore

    TenantStore(db_url).create_tenant("acme")
    log = AuditLog(db_url, settings)
    _record(log, "acme", None)
    _record(log, "acme", f"row 3: text is empty near '{MARKER}'")
    _record(log, None, "invalid API key")  # no tenant, no tenant key: kept as it is
    _record(log, "ghost", "tenant 'ghost' not found")  # no such tenant: no key is made for the name
    [(none,), (sealed,), (anonymous,), (ghost,)] = _raw(db_url, "SELECT error FROM audit_log ORDER BY seq")
    assert none is None and anonymous == "invalid API key" and ghost == "tenant 'ghost' not found"
    assert [k.tenant for k in stored_keys(db_url)] == ["acme"]
    _assert_sealed([sealed])
    assert [r.error for r in log.list(None)[0]] == ["tenant 'ghost' not found", "invalid API key",
                                                   f"row 3: text is empty near '{MARKER}'", None]
    assert [r.error for r in log.list("acme")[0]] == [f"row 3: text is empty near '{MARKER}'", None]
    assert log.verify().to_dict() == {"intact": True, "rows": 4, "head": log.verify().head, "bad_seq": None,
                                      "problem": None}
    assert AuditLog(db_url, plain_settings).list("acme")[0][0].error == LOCKED

    # a sealed error swapped for another sealed value of the same tenant still opens, but breaks the chain
    other = open_keyring(db_url, settings).seal_text("acme", "nothing to see")
    _execute(db_url, "UPDATE audit_log SET error = :e WHERE seq = 2", e=other)
    report = log.verify()
    assert (report.intact, report.bad_seq, report.problem) == (
        False, 2, "hash mismatch (a field was changed after the row was written)")
    cut = sealed[:-8] + ("A" if sealed[-8] != "A" else "B") + sealed[-7:]  # one ciphertext character changed
    _execute(db_url, "UPDATE audit_log SET error = :e WHERE seq = 2", e=cut)
    assert log.list("acme")[0][0].error == ALTERED and log.verify().bad_seq == 2
    _execute(db_url, "UPDATE audit_log SET error = :e WHERE seq = 2", e=sealed)
    assert log.verify().intact


def test_audit_verify_after_rotate_master_and_a_tenants_deletion(settings, db_url, master_key, monkeypatch, capsys,
                                                                 tmp_path):
    monkeypatch.setenv("TAILOR_DATABASE_URL", db_url)
    monkeypatch.setenv("TAILOR_MASTER_KEY", master_key)
    assert main(["tenants", "create", "acme"]) == 0
    assert main(["tenants", "create", "globex"]) == 0
    log = AuditLog(db_url, settings)
    _record(log, "acme", f"acme's row quoted: {MARKER}")
    _record(log, "globex", f"globex's row quoted: {MARKER}")

    new_file = tmp_path / "new.key"
    assert main(["keys", "new-master", "--out", str(new_file)]) == 0
    assert main(["keys", "rotate-master", "--new-key-file", str(new_file)]) == 0
    monkeypatch.delenv("TAILOR_MASTER_KEY")
    monkeypatch.setenv("TAILOR_MASTER_KEY_FILE", str(new_file))
    capsys.readouterr()
    assert main(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["intact"] is True
    assert main(["audit", "list", "--tenant", "globex", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["data"]
    assert [r["error"] for r in listed if r["error"]] == [f"globex's row quoted: {MARKER}"]

    assert main(["tenants", "delete", "acme", "--yes"]) == 0
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("chain intact: ")
    assert main(["audit", "list", "--json"]) == 0
    errors = {(r["tenant"], r["error"]) for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["data"]
              if r["error"]}
    assert errors == {("acme", ERASED), ("globex", f"globex's row quoted: {MARKER}")}
    sealed = [e for (e,) in _raw(db_url, "SELECT error FROM audit_log WHERE error IS NOT NULL")]
    assert len(sealed) == 2
    _assert_sealed(sealed)
