"""A fine-tuning job whose model is a fine-tuned classifier: a retrain from its feedback through the API, run
in-process, registered as the model's next version; its request validation."""

from __future__ import annotations

import pytest

from samples import SAMPLE_TEST, sample_rows, write_csv
from tailor.jobs.runner import StopSignal, run_job
from tailor.jobs.store import JobStore
from tailor.registry.service import open_registry

JOBS = "/v1/fine_tuning/jobs"


@pytest.fixture
def settings(fresh_home):
    from tailor.settings import Settings

    return Settings(home=fresh_home)


@pytest.fixture
def tenants(settings) -> dict[str, dict]:
    from tailor.security.keys import TenantStore

    store = TenantStore(settings.registry_url)
    return {name: {"Authorization": f"Bearer {store.create_tenant(name)[1]}"} for name in ("acme", "globex")}


def _run_next(settings, job_id: str) -> JobStore:
    store = JobStore(settings.registry_url)
    claimed = store.claim("w1")
    assert claimed.id == job_id
    run_job(claimed, store=store, settings=settings, worker_id="w1", signal=StopSignal())
    return store


def _create(api, headers, **body):
    return api.post(JOBS, headers=headers, json=body)


def test_a_job_retrains_a_fine_tuned_classifier_from_its_feedback(api, tenants, settings, tmp_path):
    acme, globex = tenants["acme"], tenants["globex"]
    data = write_csv(tmp_path / "tweets.csv", sample_rows(per_label=12)).read_bytes()
    file_id = api.post("/v1/files", headers=acme, files={"file": ("tweets.csv", data)},
                       data={"purpose": "fine-tune"}).json()["id"]
    first = _create(api, acme, model="minilm-l6", training_file=file_id, seed=0,
                    method={"type": "supervised", "tailor": {"method": "head"}}).json()
    model_id = _run_next(settings, first["id"]).get("acme", first["id"]).fine_tuned_model

    rows = sample_rows(SAMPLE_TEST)[:24]
    answers = api.post("/v1/classifications", headers=acme,
                       json={"model": model_id, "input": [t for t, _ in rows], "store": True}).json()["data"]
    given = api.post("/v1/feedback", headers=acme, json=[{"prediction_id": a["id"], "label": label}
                                                         for a, (_, label) in zip(answers, rows)])
    assert given.status_code == 200, given.text

    body = {"model": model_id, "seed": 0, "method": {"type": "supervised", "tailor": {"feedback": True, "replay": 0.5}}}
    assert _create(api, globex, **body).json()["error"]["message"] == (
        f"model {model_id!r} cannot be fine-tuned here; base models are: minilm-l6, me5-small, smollm2-135m-instruct, "
        "or one of your fine-tuned classifiers")
    job = _create(api, acme, **body).json()
    assert (job["model"], job["training_file"], job["method"]["tailor"]) == (
        model_id, None, {"method": "auto", "preset": "default", "feedback": True, "replay": 0.5})
    done = _run_next(settings, job["id"]).get("acme", job["id"])
    assert (done.status, done.error, done.fine_tuned_model) == ("succeeded", None, f"{model_id}:2")
    version = open_registry(settings).store.resolve("acme", f"{model_id}:2")
    assert (version.method, version.lineage["parent"]) == ("head", f"{model_id}:1")
    assert version.lineage["retrain"]["rows"] == {"file": 0, "feedback": 24, "replay": 12}


@pytest.mark.parametrize("tailor, message, param", [
    ({"feedback": True}, "method.tailor.feedback is for a retrain: set model to one of your fine-tuned classifiers",
     "method.tailor.feedback"),
    ({"replay": -1}, "method.tailor.replay: Input should be greater than or equal to 0", "method.tailor.replay"),
])
def test_retrain_options_are_checked(api, tenants, tailor, message, param):
    response = _create(api, tenants["acme"], model="minilm-l6", method={"type": "supervised", "tailor": tailor})
    error = response.json()["error"]
    assert (response.status_code, error["message"], error["param"]) == (400, message, param)
