"""run_job in-process on real jobs made through the API: a head job trained, registered and served; a job
stopped before it starts; a job whose file vanished; checkpoints of a full fine-tune."""

from __future__ import annotations

import pytest

from tailor.jobs.runner import StopSignal, run_job
from tailor.jobs.store import JobStore
from tailor.registry.service import open_registry

from samples import sample_rows, write_csv

JOBS = "/v1/fine_tuning/jobs"


@pytest.fixture
def tenants(settings) -> dict[str, dict]:
    from tailor.security.keys import TenantStore

    store = TenantStore(settings.registry_url)
    return {name: {"Authorization": f"Bearer {store.create_tenant(name)[1]}"} for name in ("acme", "globex")}


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> bytes:
    """36 real finance tweets, 12 per label (bearish, bullish, neutral)."""
    return write_csv(tmp_path_factory.mktemp("data") / "tweets.csv", sample_rows(per_label=12)).read_bytes()


def create_job(api, headers, data: bytes, **body) -> dict:
    uploaded = api.post("/v1/files", headers=headers, files={"file": ("tweets.csv", data)},
                        data={"purpose": "fine-tune"})
    assert uploaded.status_code == 200, uploaded.text
    request = {"model": "minilm-l6", "training_file": uploaded.json()["id"], "suffix": "tweets", "seed": 0,
               "method": {"type": "supervised", "tailor": {"method": "head"}}, **body}
    response = api.post(JOBS, headers=headers, json=request)
    assert response.status_code == 200, response.text
    return response.json()


def run_claimed(settings, job_id: str, signal: StopSignal | None = None):
    store = JobStore(settings.registry_url)
    claimed = store.claim("w1")
    assert claimed.id == job_id
    run_job(claimed, store=store, settings=settings, worker_id="w1", signal=signal or StopSignal())
    return store


def test_head_job_trains_registers_and_serves(api, tenants, settings, small_csv):
    acme, globex = tenants["acme"], tenants["globex"]
    job = create_job(api, acme, small_csv)
    store = run_claimed(settings, job["id"])

    done = store.get("acme", job["id"])
    model_id = f"ft:minilm-l6:acme:tweets:{job['id']}"
    assert (done.status, done.fine_tuned_model, done.worker_id, done.error) == ("succeeded", model_id, None, None)
    assert (done.result["name"], done.result["version"], done.result["method"]) == (model_id, 1, "head")
    registry = open_registry(settings)
    version = registry.store.resolve("acme", model_id)
    assert (version.tenant, version.name, version.version, version.method) == ("acme", model_id, 1, "head")
    assert registry.store.list_models("globex") == []

    events, _ = store.events("acme", job["id"], limit=100)
    assert events[0].message == f"The job has successfully completed; fine-tuned model: {model_id}"
    assert events[-1].message == f"Validated training file: {job['training_file']}"
    assert "Fine-tuning job started" in [e.message for e in events]
    epoch_metrics = [e.data for e in events if e.type == "metrics" and "valid_loss" in e.data]
    assert epoch_metrics, [e.message for e in events]
    assert {"step", "train_loss", "valid_loss"} <= set(epoch_metrics[0])
    assert all(m["valid_loss"] > 0 for m in epoch_metrics)

    listed = api.get(f"{JOBS}/{job['id']}", headers=acme).json()
    assert (listed["status"], listed["fine_tuned_model"]) == ("succeeded", model_id)
    texts = ["Stocks rally as earnings beat forecasts", "Shares plunge after the profit warning", "Board meets"]
    response = api.post("/v1/classifications", headers=acme, json={"model": model_id, "input": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == model_id and [d["index"] for d in body["data"]] == [0, 1, 2]
    for row in body["data"]:
        assert set(row["scores"]) == {"bearish", "bullish", "neutral"}
        assert row["label"] in {"bearish", "bullish", "neutral"}
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert row["score"] == pytest.approx(max(row["scores"].values()), abs=1e-6)
        assert row["scores"][row["label"]] == row["score"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > len(texts) and usage["total_tokens"] == usage["prompt_tokens"]

    hidden = api.post("/v1/classifications", headers=globex, json={"model": model_id, "input": texts})
    assert hidden.status_code == 404
    assert hidden.json()["error"]["message"] == f"model {model_id!r} not found"


def test_a_stopped_job_is_released_and_stays_paused(api, tenants, settings, small_csv):
    job = create_job(api, tenants["acme"], small_csv)
    store = JobStore(settings.registry_url)
    claimed = store.claim("w1")
    paused = api.post(f"{JOBS}/{job['id']}/pause", headers=tenants["acme"])
    assert paused.json()["status"] == "paused"
    signal = StopSignal()
    signal.stopped.set()  # what the heartbeat thread does when it sees the pause

    run_job(claimed, store=store, settings=settings, worker_id="w1", signal=signal)

    after = store.get("acme", job["id"])
    assert (after.status, after.worker_id, after.fine_tuned_model, after.error) == ("paused", None, None, None)
    assert open_registry(settings).store.list_models("acme") == []
    assert store.claim("w2") is None  # paused jobs are not claimed
    api.post(f"{JOBS}/{job['id']}/resume", headers=tenants["acme"])
    assert store.claim("w2").id == job["id"]


def test_a_missing_training_file_fails_the_job(api, tenants, settings, small_csv):
    from tailor.data.files import FileStore

    job = create_job(api, tenants["acme"], small_csv)
    files = FileStore(settings.registry_url, settings.files_dir)
    files.path(files.get("acme", job["training_file"])).unlink()

    store = run_claimed(settings, job["id"])  # records the failure, raises nothing

    failed = store.get("acme", job["id"])
    assert (failed.status, failed.worker_id, failed.fine_tuned_model) == ("failed", None, None)
    assert failed.error["code"] == "invalid_training_file"
    assert failed.error["message"] == (f"training_file {job['training_file']} is missing from the file store; "
                                       "upload it again and create a new job")
    assert str(settings.home) not in failed.error["message"]
    latest = store.events("acme", job["id"], limit=1)[0][0]
    assert (latest.level, latest.message) == ("error", f"Fine-tuning failed: {failed.error['message']}")
    served = api.get(f"{JOBS}/{job['id']}", headers=tenants["acme"]).json()
    assert served["error"] == failed.error and served["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_full_job_records_a_checkpoint_per_epoch(db_url, api, tenants, settings, small_csv):
    # SQLite only: checkpoint rows are tested on every backend in test_jobs_store; one full run is enough here.
    job = create_job(api, tenants["acme"], small_csv, suffix="full",
                     method={"type": "supervised", "tailor": {"method": "full"},
                             "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 8}}})
    store = run_claimed(settings, job["id"])
    assert store.get("acme", job["id"]).status == "succeeded"

    listed = api.get(f"{JOBS}/{job['id']}/checkpoints", headers=tenants["acme"]).json()
    steps = [c["step_number"] for c in listed["data"]]
    assert len(steps) == 2 and steps[0] > steps[1] > 0  # newest first
    assert listed["has_more"] is False
    assert (listed["first_id"], listed["last_id"]) == (listed["data"][0]["id"], listed["data"][1]["id"])
    model_id = f"ft:minilm-l6:acme:full:{job['id']}"
    for checkpoint in listed["data"]:
        assert checkpoint["fine_tuning_job_id"] == job["id"]
        assert checkpoint["fine_tuned_model_checkpoint"] == f"{model_id}:ckpt-step-{checkpoint['step_number']}"
        assert 0.0 <= checkpoint["metrics"]["valid_macro_f1"] <= 1.0


def test_step_events_follow_the_loops_own_count_so_a_resumed_runs_curve_goes_on(fresh_home, monkeypatch):
    import tailor.jobs.runner as runner

    monkeypatch.setattr(runner, "_STEP_EVENT_INTERVAL_S", 0.0)
    store = JobStore(f"sqlite:///{fresh_home / 'tailor.db'}")
    job = store.create("acme", model="minilm-l6", task="classification", training_file="file-1", validation_file=None,
                       suffix=None, seed=0, request={})
    reporter = runner.JobReporter(store, job.id, StopSignal())
    reporter.advance(1, loss=1.0)  # a reporter of its own: counts from 0
    reporter.advance(1, step=41, loss=0.5)  # a resumed loop: its checkpoint's count goes on
    reporter.advance(1, step=42, loss=0.25)
    events, _ = store.events("acme", job.id, limit=10)
    assert [e.data for e in reversed(events) if e.type == "metrics"] == [
        {"step": 1, "train_loss": 1.0}, {"step": 41, "train_loss": 0.5}, {"step": 42, "train_loss": 0.25}]


def test_head_job_self_trains_on_an_unlabelled_file(api, tenants, settings, small_csv):
    acme = tenants["acme"]
    pool_texts = [text for text, _ in sample_rows()[200:320]]
    pool = api.post("/v1/files", headers=acme, files={"file": ("pool.txt", "\n".join(
        " ".join(t.split()) for t in pool_texts).encode())}, data={"purpose": "fine-tune"}).json()
    assert (pool["kind"], pool["summary"]) == ("texts", {"format": "txt", "rows": 120, "text_column": None,
                                                         "empty_rows": 0})
    job = create_job(api, acme, small_csv,
                     method={"type": "supervised", "tailor": {"method": "head", "unlabeled_file": pool["id"]}})
    assert job["method"]["tailor"] == {"method": "head", "preset": "default", "unlabeled_file": pool["id"]}
    store = run_claimed(settings, job["id"])

    done = store.get("acme", job["id"])
    assert done.status == "succeeded", done.error
    assert done.result["self_training"]["pool_used"] == 120
    record = open_registry(settings).store.resolve("acme", done.fine_tuned_model).lineage["self_training"]
    assert (record["pool"]["rows"], record["pool"]["used"], record["pool"]["sha256"]) == (120, 120, pool_sha(api, acme,
                                                                                                             pool))
    messages = [e.message for e in store.events("acme", job["id"], limit=200)[0]]
    assert any(m.startswith("unlabelled file ") and m.endswith(": 120 texts to pseudo-label") for m in messages)
    assert any(m.startswith("self-training: ") for m in messages)


def pool_sha(api, headers, uploaded: dict) -> str:
    import hashlib

    return hashlib.sha256(api.get(f"/v1/files/{uploaded['id']}/content", headers=headers).content).hexdigest()
