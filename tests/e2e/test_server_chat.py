"""The embedded LLM fine-tuned and served through the real server with the official ``openai`` client:
upload chat examples, fine-tune SmolLM2 with LoRA, read the losses from the events, chat (streaming)."""

from __future__ import annotations

import itertools
import json
import re

import httpx
import openai
import pytest

from e2e.conftest import wait_for_job
from samples import SAMPLE_DIR


def _head(path, n: int, out):
    with open(path, encoding="utf-8") as source:
        out.write_text("".join(itertools.islice(source, n)), encoding="utf-8")
    return out


@pytest.mark.slow
def test_openai_client_fine_tunes_smollm2_and_chats_with_it_streaming(server, tmp_path):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    train = _head(SAMPLE_DIR / "medquad_chat_train.jsonl", 24, tmp_path / "medquad.jsonl")
    valid = _head(SAMPLE_DIR / "medquad_chat_test.jsonl", 8, tmp_path / "medquad_valid.jsonl")
    training_file = client.files.create(file=open(train, "rb"), purpose="fine-tune")
    assert (training_file.kind, training_file.summary["examples"]) == ("chat", 24)
    validation_file = client.files.create(file=open(valid, "rb"), purpose="fine-tune")

    job = client.fine_tuning.jobs.create(
        model="smollm2-135m-instruct", training_file=training_file.id, validation_file=validation_file.id,
        suffix="medquad", method={"type": "supervised", "tailor": {"preset": "fast"}})
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 8
    done = wait_for_job(client, job.id, timeout_s=600)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:smollm2-135m-instruct:acme:medquad:{job.id}"
    metrics = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data
               if e.type == "metrics" and "valid_loss" in (e.data or {})]
    assert metrics and {"step", "train_loss", "valid_loss"} <= set(metrics[0])
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert any(re.fullmatch(r"serving engine ready \(\d+\.\d s\)", m) for m in messages), messages
    test = done.result["metrics"]["test"]
    assert test["loss"] < test["base_loss"]  # the tuned model fits held-out answers better than the base

    stream = client.chat.completions.create(
        model=done.fine_tuned_model, messages=[{"role": "user", "content": "What are the symptoms of anemia?"}],
        max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].usage.completion_tokens <= 12
    whole = client.chat.completions.create(
        model=done.fine_tuned_model, messages=[{"role": "user", "content": "What are the symptoms of anemia?"}],
        max_tokens=12, temperature=0)
    assert whole.choices[0].message.content == text
    assert done.fine_tuned_model in [m.id for m in client.models.list().data]
    _stored_completions_round_trip(client, done.fine_tuned_model)
    _chat_monitoring(server, client, done.fine_tuned_model, whole.id)
    # the base's engine may not be built yet: 503 with Retry-After while it builds, which the client's retries honour
    completion = client.with_options(max_retries=30).completions.create(
        model="smollm2-135m-instruct", prompt="The capital of France is", max_tokens=4, temperature=0)
    assert completion.usage.completion_tokens <= 4 and completion.choices[0].text


def _chat_monitoring(server, client, model: str, completion_id: str) -> None:
    """Ratings and a corrected answer on completions, the chat version's monitoring report counting the four
    completions still recorded (the round trip deleted one) and the feedback, and the correction as a chat
    fine-tuning row for the next LoRA job."""
    headers = {"Authorization": f"Bearer {server.key}"}
    stored = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Is anemia common?"}],
                                            max_tokens=4, temperature=0, store=True)
    rated = httpx.post(server.url + "/v1/feedback", headers=headers, json=[
        {"completion_id": completion_id, "rating": "up"},
        {"completion_id": stored.id, "rating": "down", "correction": "Yes: about a quarter of people have it."}])
    assert rated.status_code == 200, rated.text
    report = httpx.get(server.url + f"/v1/models/{model}/monitoring?hours=1", headers=headers).json()
    assert (report["task"], report["totals"]["answers"], report["totals"]["empty"]) == ("chat", 4, 0)
    assert report["feedback"] == {"rated": 2, "up": 1, "down": 1, "corrections": 1}
    assert report["totals"]["latency_ms"]["p50"] > 0 and report["totals"]["errors"] == 0
    rows = httpx.get(server.url + f"/v1/models/{model}/corrections", headers=headers)
    assert rows.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in rows.text.splitlines()] == [{"messages": [
        {"role": "user", "content": "Is anemia common?"},
        {"role": "assistant", "content": "Yes: about a quarter of people have it."}]}]


def _stored_completions_round_trip(client, model: str) -> None:
    """OpenAI's stored completions through the official client: store, list by metadata, retrieve, read the
    messages, update, delete."""
    question = [{"role": "user", "content": "What is anemia?"}]
    made = client.chat.completions.create(model=model, messages=question, max_tokens=6, temperature=0, store=True,
                                          metadata={"case": "anemia"})
    client.chat.completions.create(model=model, messages=question, max_tokens=2, store=True, metadata={"case": "x"})
    listed = client.chat.completions.list(model=model, metadata={"case": "anemia"})
    assert [c.id for c in listed.data] == [made.id]
    fetched = client.chat.completions.retrieve(made.id)
    assert (fetched.choices[0].message.content, fetched.usage.total_tokens) == (
        made.choices[0].message.content, made.usage.total_tokens)
    assert [(m.role, m.content) for m in client.chat.completions.messages.list(made.id).data] == [
        ("user", "What is anemia?")]
    assert client.chat.completions.update(made.id, metadata={"case": "done"}).metadata == {"case": "done"}
    assert client.chat.completions.delete(made.id).deleted is True
    assert client.chat.completions.list(model=model, metadata={"case": "anemia"}).data == []
