"""A zero_shot fine-tuning job run in-process on the real embedded encoder (minilm-l6): made through the API,
run by the worker's run_job, registered under its tenant as ``ft:...`` and served."""

from __future__ import annotations

import pytest

from tailor.jobs.runner import StopSignal, run_job
from tailor.jobs.store import JobStore
from tailor.registry.service import open_registry

from api_helpers import csv_bytes

JOBS = "/v1/fine_tuning/jobs"
LABELS = ["sports", {"name": "weather", "description": "rain, sun, wind and temperatures"}, "cooking"]
EVAL_ROWS = [("The striker scored twice in the cup final", "sports"),
             ("The team won the championship after extra time", "sports"),
             ("Heavy rain and strong winds are expected tomorrow", "weather"),
             ("A sunny afternoon with temperatures around 25 degrees", "weather"),
             ("Whisk the eggs with sugar and bake for twenty minutes; ask chef.anna@example.com", "cooking"),
             ("Fry the onions in butter until golden, then add the garlic", "cooking"),
             ("The referee sent off two players", "gardening")]  # a label the job lacks: left out


@pytest.fixture
def tenants(settings) -> dict[str, dict]:
    from tailor.security.keys import TenantStore

    store = TenantStore(settings.registry_url)
    return {name: {"Authorization": f"Bearer {store.create_tenant(name)[1]}"} for name in ("acme", "globex")}


def test_zero_shot_job_registers_scores_and_serves(api, tenants, settings):
    from tailor.security.quotas import QuotaStore

    acme, globex = tenants["acme"], tenants["globex"]
    QuotaStore(settings.registry_url).set("acme", redact_pii=True)  # the eval texts' e-mail must not be kept
    uploaded = api.post("/v1/files", headers=acme, files={"file": ("topics.csv", csv_bytes(EVAL_ROWS))},
                        data={"purpose": "fine-tune"}).json()
    response = api.post(JOBS, headers=acme, json={
        "model": "minilm-l6", "validation_file": uploaded["id"], "suffix": "topics",
        "method": {"tailor": {"method": "zero_shot", "labels": LABELS}}})
    assert response.status_code == 200, response.text
    job = response.json()
    store = JobStore(settings.registry_url)
    claimed = store.claim("w1")
    assert claimed.id == job["id"]
    run_job(claimed, store=store, settings=settings, worker_id="w1", signal=StopSignal())

    done = store.get("acme", job["id"])
    model_id = f"ft:minilm-l6:acme:topics:{job['id']}"
    assert (done.status, done.fine_tuned_model, done.worker_id, done.error) == ("succeeded", model_id, None, None)
    assert {k: done.result[k] for k in ("model", "name", "version", "method", "base_model", "labels", "prompts",
                                        "scale", "runtime")} == {
        "model": f"{model_id}:1", "name": model_id, "version": 1, "method": "head", "base_model": "minilm-l6",
        "labels": ["cooking", "sports", "weather"],
        "prompts": ["cooking", "sports", "weather: rain, sun, wind and temperatures"], "scale": 15.0,
        "runtime": "onnx-int8"}
    # 5 of the 6 scorable rows right (the gardening row is left out); the majority baseline is the eval rows' own
    assert done.result["metrics"] == {"accuracy": 0.8333, "macro_f1": 0.8222, "weighted_f1": 0.8222,
                                      "roc_auc": None, "ece": 0.1152}
    assert done.result["baseline"] == {"label": "cooking", "accuracy": 0.3333, "macro_f1": 0.1667}

    version = open_registry(settings).store.resolve("acme", model_id)
    assert (version.tenant, version.version, version.method, version.base_model) == ("acme", 1, "head",
                                                                                     "minilm-l6")
    assert version.lineage["zero_shot"] == {"labels": ["cooking", "sports", "weather"],
                                            "prompts": done.result["prompts"], "scale": 15.0,
                                            "descriptions": {"weather": "rain, sun, wind and temperatures"}}
    assert version.lineage["rows"] == {"train": 0, "valid": 0, "test": 6}
    assert open_registry(settings).store.list_models("globex") == []
    artifacts = open_registry(settings).artifact_dir(version)
    stored = "".join(p.read_text(encoding="utf-8", errors="replace") for p in artifacts.rglob("*") if p.is_file())
    assert "chef.anna@example.com" not in stored and "ask [EMAIL]" in stored

    events = [e.message for e in store.events("acme", job["id"], limit=100)[0]][::-1]  # oldest first
    assert events == [
        "No training file: a zero-shot classifier from 3 labels", "Job queued", "Fine-tuning job started",
        "eval file: 1 rows left out (empty, or a label not among the labels: gardening)",
        "base model: minilm-l6 (chosen by the user)", "zero-shot head from 3 label prompts (scale 15)",
        "test: macro-F1 0.8222, accuracy 0.8333 (majority baseline macro-F1 0.1667)",
        "serving runtime: onnx-int8 (macro-F1 82.22 vs 82.22 fp32)", f"registered {model_id}:1",
        f"The job has successfully completed; fine-tuned model: {model_id}"]
    listed = api.get(f"{JOBS}/{job['id']}", headers=acme).json()
    assert (listed["status"], listed["fine_tuned_model"], listed["training_file"]) == ("succeeded", model_id, None)

    answer = api.post("/v1/classifications", headers=acme, json={
        "model": model_id, "input": ["Snow and freezing temperatures all week", "The goalkeeper saved a penalty"]})
    assert answer.status_code == 200, answer.text
    assert [row["label"] for row in answer.json()["data"]] == ["weather", "sports"]
    other = api.post("/v1/classifications", headers=globex, json={"model": model_id, "input": ["rain"]})
    assert other.status_code == 404
