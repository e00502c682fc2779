"""The real server driven by the official ``openai`` client: upload, fine-tune, follow events, list models,
embed and classify; a worker killed with SIGKILL mid-job; a server restart that loses nothing; one worker
runs one job at a time."""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import pytest

from e2e.conftest import wait_for_job
from samples import sample_rows, write_csv


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)


def _messages(client, job_id: str) -> list[str]:
    return [e.message for e in reversed(client.fine_tuning.jobs.list_events(job_id, limit=100).data)]


@pytest.mark.slow
def test_openai_client_fine_tunes_and_the_model_serves(server, client, tmp_path):
    train = write_csv(tmp_path / "tweets.csv", sample_rows(per_label=15))
    uploaded = client.files.create(file=open(train, "rb"), purpose="fine-tune")
    assert (uploaded.object, uploaded.filename, uploaded.purpose, uploaded.status) == (
        "file", "tweets.csv", "fine-tune", "processed")
    assert [f.id for f in client.files.list().data] == [uploaded.id]

    job = client.fine_tuning.jobs.create(model="minilm-l6", training_file=uploaded.id, suffix="tweets",
                                         method={"type": "supervised", "tailor": {"method": "head"}})
    assert job.status == "queued"
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:minilm-l6:acme:tweets:{job.id}"
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    metrics = [e for e in events if e.type == "metrics" and "valid_loss" in (e.data or {})]
    assert metrics and {"step", "train_loss", "valid_loss"} <= set(metrics[0].data)
    assert events[0].message == f"The job has successfully completed; fine-tuned model: {done.fine_tuned_model}"

    model_ids = [m.id for m in client.models.list().data]
    assert model_ids[:3] == ["minilm-l6", "me5-small", "smollm2-135m-instruct"]
    assert done.fine_tuned_model in model_ids
    assert client.models.retrieve(done.fine_tuned_model).owned_by == "acme"

    embedded = client.embeddings.create(model=done.fine_tuned_model, input=["Shares rally", "Stocks slump"])
    assert [len(e.embedding) for e in embedded.data] == [384, 384]
    assert embedded.usage.prompt_tokens > 0

    answer = httpx.post(server.url + "/v1/classifications", headers=server.headers,
                        json={"model": done.fine_tuned_model, "input": ["Stocks rally after record earnings"]}).json()
    assert answer["data"][0]["label"] in {"bearish", "bullish", "neutral"}
    assert abs(sum(answer["data"][0]["scores"].values()) - 1) < 1e-4

    with pytest.raises(openai.NotFoundError, match="fine-tuning job 'ftjob-missing' not found"):
        client.fine_tuning.jobs.retrieve("ftjob-missing")
    with pytest.raises(openai.BadRequestError, match="model 'gpt-4o' cannot be fine-tuned here"):
        client.fine_tuning.jobs.create(model="gpt-4o", training_file=uploaded.id)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="tk-wrong", max_retries=0).models.list()

    # the operator's CLI on the same storage root sees the tenant's model
    listed = server.cli("models", "list", "--tenant", "acme")
    assert [m["name"] for m in listed["models"]] == [done.fine_tuned_model]


@pytest.mark.slow
def test_a_killed_worker_s_job_resumes_from_its_checkpoint(server, client, tmp_path):
    train = write_csv(tmp_path / "tweets.csv", sample_rows(per_label=40))
    uploaded = client.files.create(file=open(train, "rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="minilm-l6", training_file=uploaded.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 16}},
                "tailor": {"method": "full"}})
    deadline = time.monotonic() + 180
    while not client.fine_tuning.jobs.checkpoints.list(job.id).data:
        assert time.monotonic() < deadline, "no checkpoint in 180 s"
        time.sleep(0.2)
    killed = server.worker_pid()
    os.kill(killed, signal.SIGKILL)

    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    messages = _messages(client, job.id)
    assert "Worker lost; job queued again and will resume from its last checkpoint" in messages
    assert "Attempt 2: resuming from the last checkpoint, if any" in messages
    assert any(m.startswith("resumed from the checkpoint after epoch ") for m in messages)
    assert server.worker_pid() != killed
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


@pytest.mark.slow
def test_a_restart_loses_no_file_job_or_model(server, client, tmp_path):
    train = write_csv(tmp_path / "tweets.csv", sample_rows(per_label=15))
    uploaded = client.files.create(file=open(train, "rb"), purpose="fine-tune")
    first = wait_for_job(client, client.fine_tuning.jobs.create(
        model="minilm-l6", training_file=uploaded.id, method={"type": "supervised", "tailor": {"method": "head"}}).id)
    second = client.fine_tuning.jobs.create(model="minilm-l6", training_file=uploaded.id,
                                            method={"type": "supervised", "tailor": {"method": "head"}})
    server.stop()
    server.start()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    assert client.files.retrieve(uploaded.id).filename == "tweets.csv"
    assert client.models.retrieve(first.fine_tuned_model).id == first.fine_tuned_model
    assert wait_for_job(client, second.id).status == "succeeded"
    assert {j.id for j in client.fine_tuning.jobs.list().data} == {first.id, second.id}


@pytest.mark.slow
def test_one_worker_runs_one_job_at_a_time_in_order(server, tmp_path):
    train = write_csv(tmp_path / "tweets.csv", sample_rows(per_label=12))
    with open(train, "rb") as f:
        file_id = httpx.post(server.url + "/v1/files", headers=server.headers, files={"file": ("t.csv", f)},
                             data={"purpose": "fine-tune"}).json()["id"]
    body = {"model": "minilm-l6", "training_file": file_id, "method": {"type": "supervised",
                                                                       "tailor": {"method": "head"}}}
    ids = [httpx.post(server.url + "/v1/fine_tuning/jobs", headers=server.headers, json=body).json()["id"]
           for _ in range(3)]
    most_running, deadline = 0, time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in httpx.get(server.url + "/v1/fine_tuning/jobs", headers=server.headers).json()["data"]}
        most_running = max(most_running, sum(j["status"] == "running" for j in jobs.values()))
        if all(jobs[i]["status"] == "succeeded" for i in ids):
            break
        time.sleep(0.1)
    assert [jobs[i]["status"] for i in ids] == ["succeeded"] * 3
    assert most_running == 1
    finished = [jobs[i]["finished_at"] for i in ids]
    assert finished == sorted(finished)  # the queue hands jobs out oldest first
