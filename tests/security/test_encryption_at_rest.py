"""Encryption at rest through the real API, store and CLI: with a master key, an uploaded file, its data report,
stored inputs, completions and corrections reach the disk and the database only as ciphertext, yet every reader
gets the plaintext; a wrong master key refuses to start and changes nothing; rotating the master key loses
nothing; deleting a tenant leaves nothing of it. Without a master key everything stays as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Column, MetaData, String, Table, Text, func, select

from tailor.cli import main
from tailor.db import open_engine
from tailor.monitor.feedback import Feedback, FeedbackStore
from tailor.monitor.records import PredictionRecord, PredictionStore, new_id
from tailor.security.crypto import MasterKeyError, stored_keys
from tailor.settings import Settings

from api_helpers import Tenant, csv_bytes, new_master_key, publish_copy, upload
from samples import sample_rows

MARKER = "QuokkaMarker7731"
ROWS = [(f"{text} {MARKER}", label) for text, label in sample_rows(per_label=6)]
CONTENT = csv_bytes(ROWS)
REQUEST_TEXT = f"wire the refund to ann@corp.com {MARKER} please"


@pytest.fixture
def settings(fresh_home, db_url, master_key, monkeypatch):
    # the CLI verbs read the same settings from the environment
    monkeypatch.setenv("TAILOR_DATABASE_URL", db_url)
    monkeypatch.setenv("TAILOR_MASTER_KEY", master_key)
    return Settings(home=fresh_home, database_url=db_url, master_key=SecretStr(master_key))


@pytest.fixture
def client(settings):
    from tailor.serve.app import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under ``root`` whose raw bytes contain one of ``needles`` (the database file included)."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {needle.decode()}" for needle in needles if needle in data]
    return found


def _plaintext_workspaces() -> list[Path]:
    """This process's private plaintext directories, but for the plaintext views of the sealed models it loaded
    (kept while the process runs: tailor.registry.artifacts)."""
    from tailor.registry.artifacts import view_dirs

    return sorted(set(Path("/dev/shm").glob(f"tailor-plain-{os.getpid()}-*")) - set(view_dirs()))


def _classify_and_store(client, settings, tenant: Tenant, head_artifact) -> str:
    """Publish ``sentiment:1`` for the tenant, classify REQUEST_TEXT with ``store``; the answer's id."""
    publish_copy(settings, head_artifact, tenant.name, "sentiment")
    body = client.post("/v1/classifications", headers=tenant.headers,
                       json={"model": "sentiment", "input": REQUEST_TEXT, "store": True}).json()
    client.app.state.services.recorder.flush()
    return body["data"][0]["id"]


def test_uploads_reports_and_stored_inputs_are_ciphertext_on_disk_and_plaintext_to_readers(
        settings, client, acme, tmp_path, head_artifact):
    uploaded = upload(client, acme, CONTENT, filename="loans.csv").json()
    assert (uploaded["bytes"], uploaded["summary"]["rows"]) == (len(CONTENT), len(ROWS))
    stored = settings.files_dir / "acme" / f"{uploaded['id']}.csv"
    assert stored.read_bytes()[:7] == b"TLRENC\x01"

    content = client.get(f"/v1/files/{uploaded['id']}/content", headers=acme.headers)
    assert content.status_code == 200 and content.content == CONTENT
    assert content.headers["content-disposition"] == 'attachment; filename="loans.csv"'
    report = client.get(f"/v1/files/{uploaded['id']}/report", headers=acme.headers).json()
    assert (report["rows"]["read"], report["pii"]["email"]) == (len(ROWS), 0)
    note = stored.with_name(stored.name + ".report.json")
    assert note.read_text().startswith("tenc1:")
    assert client.get(f"/v1/files/{uploaded['id']}/report", headers=acme.headers).json() == report  # from the note

    record_id = _classify_and_store(client, settings, acme, head_artifact)
    compared = client.post("/v1/models/compare", headers=acme.headers,
                           json={"a": "sentiment:1", "b": "sentiment:1", "file": uploaded["id"]})
    assert compared.status_code == 200 and compared.json()["file"]["rows"] == len(ROWS)
    assert client.app.state.services.predictions.get("acme", record_id).input == {"text": REQUEST_TEXT}

    predictions = _raw("predictions", "id", "input", "output")
    with open_engine(settings.registry_url).connect() as conn:
        raw_input, raw_output = conn.execute(select(predictions.c.input, predictions.c.output)
                                             .where(predictions.c.id == record_id)).one()
    assert json.loads(raw_input).startswith("tenc1:") and raw_output is None
    needles = [MARKER.encode(), b"ann@corp.com"]
    assert _files_holding(tmp_path, needles) == []  # storage root and database alike
    assert _plaintext_workspaces() == []  # the report's and compare's plaintext copies are gone


def _raw(table: str, *columns: str) -> Table:
    """Columns of ``table`` read as the raw text the database holds (no JSON decoding, no decryption)."""
    return Table(table, MetaData(), *(Column(name, Text) for name in columns))


def test_a_job_estimates_and_trains_from_a_sealed_file(settings, client, acme):
    from tailor.jobs.runner import StopSignal, run_job
    from tailor.jobs.store import JobStore

    file_id = upload(client, acme, CONTENT, filename="loans.csv").json()["id"]
    estimate = client.post("/v1/fine_tuning/jobs/estimate", headers=acme.headers,
                           json={"model": "minilm-l6", "training_file": file_id})
    assert estimate.status_code == 200 and estimate.json()["rows"] == {"train": 12, "validation": 3, "test": 3}
    response = client.post("/v1/fine_tuning/jobs", headers=acme.headers, json={
        "model": "minilm-l6", "training_file": file_id, "suffix": "loans", "seed": 0,
        "hyperparameters": {"n_epochs": 1}, "method": {"type": "supervised", "tailor": {"method": "head"}}})
    assert response.status_code == 200, response.text
    created = response.json()
    store = JobStore(settings.registry_url)
    claimed = store.claim("w1")
    run_job(claimed, store=store, settings=settings, worker_id="w1", signal=StopSignal())
    done = store.get("acme", created["id"])
    assert (done.status, done.error, done.result["method"]) == ("succeeded", None, "head")
    assert (settings.files_dir / "acme" / f"{file_id}.csv").read_bytes()[:6] == b"TLRENC"
    assert _plaintext_workspaces() == []  # the job's private copy went with the job


def test_completions_and_corrections_are_sealed_in_the_database(settings, db_url, tmp_path):
    records, feedback = PredictionStore(db_url, settings), FeedbackStore(db_url, settings)
    chat = PredictionRecord(id=new_id("chat.completion"), tenant="acme", kind="chat.completion", model="m",
                            model_name="m", version=1, output=f"the answer {MARKER}",
                            input={"messages": [{"role": "user", "content": REQUEST_TEXT}]})
    records.add([chat])
    feedback.put([Feedback("acme", chat.id, rating="down", correction=f"the right answer {MARKER}")])
    assert records.get("acme", chat.id).output == f"the answer {MARKER}"
    assert feedback.corrections("acme", "m") == [{"messages": [{"role": "user", "content": REQUEST_TEXT},
                                                               {"role": "assistant",
                                                                "content": f"the right answer {MARKER}"}]}]
    assert feedback.for_records("acme", [chat.id])[chat.id].correction == f"the right answer {MARKER}"
    with open_engine(db_url).connect() as conn:
        output = conn.scalar(select(_raw("predictions", "output").c.output))
        correction = conn.scalar(select(_raw("feedback", "correction").c.correction))
    assert output.startswith("tenc1:") and correction.startswith("tenc1:")
    assert _files_holding(tmp_path, [MARKER.encode(), b"ann@corp.com"]) == []


def test_rows_written_before_encryption_still_read(db_url, fresh_home, tmp_path):
    plain = PredictionStore(db_url, Settings(home=fresh_home, database_url=db_url, master_key=None))
    record = PredictionRecord(id=new_id("classification"), tenant="acme", kind="classification", model="m",
                              model_name="m", version=1, label="pos", input={"text": "written in the clear"})
    plain.add([record])
    encrypted = PredictionStore(db_url, Settings(home=fresh_home, database_url=db_url,
                                                 master_key=SecretStr(new_master_key())))
    assert encrypted.get("acme", record.id).input == {"text": "written in the clear"}


def test_a_wrong_or_missing_master_key_refuses_to_start_and_changes_nothing(settings, client, acme, globex, db_url,
                                                                           fresh_home):
    from tailor.serve.app import create_app

    for tenant, count in ((acme, 2), (globex, 1)):
        for _ in range(count):
            assert upload(client, tenant, CONTENT).status_code == 200
    before = stored_keys(db_url)
    wrong = Settings(home=fresh_home, database_url=db_url, master_key=SecretStr(new_master_key()))
    fingerprint = _fingerprint(wrong.master_key.get_secret_value())
    with pytest.raises(MasterKeyError) as caught:
        create_app(wrong)
    assert str(caught.value) == (
        f"the master key (fingerprint {fingerprint}) does not open the data keys of 2 tenants, whose data cannot be "
        "decrypted: acme (2 files), globex (1 file). Start with the master key they were wrapped with (tailor keys "
        "rotate-master changes it); nothing was changed")
    with pytest.raises(MasterKeyError, match=r"^no master key is configured, but the data of 2 tenants is encrypted"):
        create_app(Settings(home=fresh_home, database_url=db_url, master_key=None))
    assert stored_keys(db_url) == before


def test_serve_with_a_wrong_master_key_prints_the_refusal(settings, client, acme, monkeypatch, capsys):
    assert upload(client, acme, CONTENT).status_code == 200
    monkeypatch.setenv("TAILOR_MASTER_KEY", new_master_key())
    assert main(["serve", "--no-workers", "--port", "1"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: the master key (fingerprint ") and "acme (1 file)." in last


def _fingerprint(key: str) -> str:
    from tailor.security.crypto import parse_master_key

    return parse_master_key(key, "k").fingerprint


def test_rotate_master_then_every_object_reads_back(settings, client, acme, globex, db_url, fresh_home, tmp_path,
                                                    master_key, capsys, head_artifact):
    from tailor.serve.app import create_app

    files = {t.name: [upload(client, t, CONTENT).json()["id"] for _ in range(2)] for t in (acme, globex)}
    record_id = _classify_and_store(client, settings, acme, head_artifact)
    client.get(f"/v1/files/{files['acme'][0]}/report", headers=acme.headers)
    new_file = tmp_path / "new.key"
    assert main(["keys", "new-master", "--out", str(new_file)]) == 0
    assert oct(new_file.stat().st_mode & 0o777) == "0o600"
    capsys.readouterr()
    assert main(["keys", "rotate-master", "--new-key-file", str(new_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    new_key = new_file.read_text().strip()
    assert out == {"tenants": ["acme", "globex"], "old_fingerprint": _fingerprint(master_key),
                   "new_fingerprint": _fingerprint(new_key)}

    with pytest.raises(MasterKeyError):  # the old key opens nothing any more
        create_app(Settings(home=fresh_home, database_url=db_url, master_key=SecretStr(master_key)))
    rotated = Settings(home=fresh_home, database_url=db_url, master_key=None, master_key_file=new_file)
    with TestClient(create_app(rotated), raise_server_exceptions=False) as after:
        for tenant in (acme, globex):
            for file_id in files[tenant.name]:
                got = after.get(f"/v1/files/{file_id}/content", headers=tenant.headers)
                assert got.status_code == 200 and got.content == CONTENT
        report = after.get(f"/v1/files/{files['acme'][0]}/report", headers=acme.headers).json()
        assert report["rows"]["read"] == len(ROWS)
        assert after.app.state.services.predictions.get("acme", record_id).input == {"text": REQUEST_TEXT}


def _tenant_rows(db_url: str, tenant: str) -> dict[str, int]:
    """Rows naming ``tenant`` in every table with a tenant (or, for tenants, name) column."""
    engine = open_engine(db_url)
    metadata = MetaData()
    metadata.reflect(engine)
    counts = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            column = "name" if table.name == "tenants" else "tenant"
            if column in table.c:
                counts[table.name] = conn.scalar(select(func.count()).select_from(table)
                                                 .where(table.c[column] == tenant))
    return counts


def _rows_mentioning(db_url: str, needles: list[str], skip: tuple[str, ...]) -> list[str]:
    """``table.column: needle`` for every text column of every table (but ``skip``) holding one of ``needles``."""
    engine = open_engine(db_url)
    metadata = MetaData()
    metadata.reflect(engine)
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in skip:
                continue
            for column in table.c:
                if isinstance(column.type, (Text, String)):
                    found += [f"{table.name}.{column.name}: {needle}" for needle in needles
                              if conn.scalar(select(func.count()).select_from(table)
                                             .where(column.contains(needle, autoescape=True)))]
    return found


def test_deleting_a_tenant_shreds_its_key_and_leaves_nothing_of_it(settings, client, acme, globex, db_url, tmp_path,
                                                                  capsys, head_artifact):
    acme_files = [upload(client, acme, CONTENT).json()["id"] for _ in range(2)]
    client.get(f"/v1/files/{acme_files[0]}/report", headers=acme.headers)
    record_id = _classify_and_store(client, settings, acme, head_artifact)
    globex_file = upload(client, globex, csv_bytes(sample_rows(per_label=6))).json()["id"]
    acme_keys = [k.id for k in stored_keys(db_url) if k.tenant == "acme"]
    capsys.readouterr()

    assert main(["tenants", "delete", "acme", "--yes", "--json"]) == 0
    erased = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (erased["tenant"], erased["data_keys"], sorted(erased["files"]), erased["models"]) == (
        "acme", 1, sorted(acme_files), ["sentiment:1"])
    assert erased["rows"]["files"] == 2 and erased["rows"]["predictions"] == 1 and erased["rows"]["tenants"] == 1

    counts = _tenant_rows(db_url, "acme")
    assert {table: n for table, n in counts.items() if n and table != "audit_log"} == {}
    assert [k.tenant for k in stored_keys(db_url)] == ["globex"]
    ids = [record_id, *acme_files, *acme_keys]
    assert _files_holding(tmp_path, [MARKER.encode(), b"ann@corp.com"]) == []  # database file included
    assert _files_holding(settings.home, [i.encode() for i in ids]) == []
    # the audit log keeps what was done (its rows name the ids): every other table is searched for them
    assert _rows_mentioning(db_url, ids, skip=("audit_log",)) == []
    assert not (settings.files_dir / "acme").exists() and not (settings.artifacts_dir / "acme").exists()
    got = client.get(f"/v1/files/{globex_file}/content", headers=globex.headers)
    assert got.status_code == 200 and got.content == csv_bytes(sample_rows(per_label=6))  # the others are untouched
    assert client.get("/v1/files", headers=acme.headers).status_code == 401  # its keys went with it


def test_deleting_a_tenant_works_without_encryption(fresh_home, db_url, monkeypatch, capsys, tmp_path):
    from tailor.security.keys import TenantStore

    monkeypatch.setenv("TAILOR_DATABASE_URL", db_url)
    monkeypatch.delenv("TAILOR_MASTER_KEY", raising=False)
    from tailor.data.files import FileStore

    settings = Settings(home=fresh_home, database_url=db_url, master_key=None)
    TenantStore(db_url).create_tenant("acme")
    files = FileStore(db_url, settings.files_dir, settings)
    source = tmp_path / "upload.csv"
    source.write_bytes(CONTENT)
    stored = files.add("acme", source, filename="loans.csv", purpose="fine-tune", sha256="0" * 64,
                       max_bytes=settings.max_file_bytes)
    assert files.path(stored).read_bytes() == CONTENT  # plaintext without a master key, as before
    assert main(["tenants", "delete", "acme", "--yes"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:4] == ["tenant acme deleted", "data key destroyed: none (not encrypted)",
                                    f"files: 1 ({stored.id})", "model versions: 0"]
    assert {t: n for t, n in _tenant_rows(db_url, "acme").items() if n and t != "audit_log"} == {}
    assert not (settings.files_dir / "acme").exists()
    assert main(["tenants", "delete", "acme", "--yes"]) == 2
    assert capsys.readouterr().err == "error: tenant 'acme' not found; create it with: tailor tenants create acme\n"
