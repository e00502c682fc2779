"""``/v1/chat/completions`` and ``/v1/completions``: OpenAI's shapes, server-sent events, sampling options,
refusals, tenant isolation, and 503 while a serving engine is built, on a tiny fine-tuned chat model."""

from __future__ import annotations

import json
import re

import pytest

from api_helpers import publish_copy

MESSAGES = [{"role": "user", "content": "the lamp is great and lovely"}]


@pytest.fixture
def reviews(settings, chat_artifact, acme):
    return publish_copy(settings, chat_artifact, "acme", "reviews")


@pytest.fixture
def ready(client, acme, reviews):
    """``reviews`` loaded, its serving engine built (POST /load waits for the build a completion would not)."""
    loaded = client.post("/v1/models/reviews/load", headers=acme.headers)
    assert (loaded.status_code, loaded.json()["state"]) == (200, "ready"), loaded.text
    return reviews


def events_of(response) -> list:
    """The JSON chunks of a server-sent event stream, checking its framing and the closing [DONE]."""
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = response.text.split("\n\n")
    assert blocks[-1] == "" and blocks[-2] == "data: [DONE]"
    assert all(block.startswith("data: ") for block in blocks[:-1])
    return [json.loads(block[len("data: "):]) for block in blocks[:-2]]


def test_chat_completion_has_openai_s_shape_and_counts_tokens(client, acme, ready):
    body = client.post("/v1/chat/completions", headers=acme.headers,
                       json={"model": "reviews", "messages": MESSAGES, "temperature": 0, "max_tokens": 5}).json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion" and body["model"] == "reviews"
    choice = body["choices"][0]
    assert set(choice) == {"index", "message", "finish_reason", "logprobs"}
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5 and 1 <= usage["completion_tokens"] <= 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert choice["finish_reason"] == ("length" if usage["completion_tokens"] == 5 else "stop")


def test_streamed_chat_equals_the_whole_answer_and_ends_with_usage(client, acme, ready):
    request = {"model": "reviews:1", "messages": MESSAGES, "temperature": 0, "max_completion_tokens": 8}
    whole = client.post("/v1/chat/completions", headers=acme.headers, json=request).json()
    streamed = client.post("/v1/chat/completions", headers=acme.headers,
                           json={**request, "stream": True, "stream_options": {"include_usage": True}})
    chunks = events_of(streamed)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


def test_seeded_sampling_repeats_and_stop_strings_cut(client, acme, ready):
    request = {"model": "reviews", "messages": MESSAGES, "temperature": 1.5, "top_p": 0.9, "seed": 7,
               "max_tokens": 12}
    first, again = (client.post("/v1/chat/completions", headers=acme.headers, json=request).json()
                    for _ in range(2))
    assert first["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
    answer = first["choices"][0]["message"]["content"]
    if len(answer) > 2:
        stop = answer[1:3]
        cut = client.post("/v1/chat/completions", headers=acme.headers, json={**request, "stop": stop}).json()
        assert cut["choices"][0]["message"]["content"] == answer[:answer.find(stop)]
        assert cut["choices"][0]["finish_reason"] == "stop"


def test_text_completion_streams_and_echoes(client, acme, ready):
    request = {"model": "reviews", "prompt": "the chair is", "temperature": 0, "max_tokens": 4}
    whole = client.post("/v1/completions", headers=acme.headers, json=request).json()
    assert whole["object"] == "text_completion" and whole["id"].startswith("cmpl-")
    assert set(whole["choices"][0]) == {"index", "text", "finish_reason", "logprobs"}
    echoed = client.post("/v1/completions", headers=acme.headers, json={**request, "echo": True}).json()
    assert echoed["choices"][0]["text"] == "the chair is" + whole["choices"][0]["text"]
    chunks = events_of(client.post("/v1/completions", headers=acme.headers, json={**request, "stream": True}))
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/chat/completions", {"model": "reviews", "messages": MESSAGES, "n": 2}, 400,
     "n: Input should be less than or equal to 1"),
    ("/v1/chat/completions", {"model": "reviews", "messages": []}, 400,
     "messages: List should have at least 1 item after validation, not 0"),
    ("/v1/chat/completions", {"model": "reviews", "messages": [{"role": "robot", "content": "hi"}]}, 400,
     "messages.0.role: Input should be 'system', 'developer', 'user' or 'assistant'"),
    ("/v1/chat/completions", {"model": "minilm-l6", "messages": MESSAGES}, 400,
     "model 'minilm-l6' is a classify model: completions need a chat model (e.g. smollm2-135m-instruct or a "
     "fine-tuned chat model)"),
    ("/v1/chat/completions", {"model": "nope", "messages": MESSAGES}, 404, "model 'nope' not found"),
    ("/v1/completions", {"model": "reviews", "prompt": ["a", "b"]}, 400,
     "prompt: List should have at most 1 item after validation, not 2"),
    ("/v1/completions", {"model": "reviews", "prompt": "a", "temperature": 3}, 400,
     "temperature: Input should be less than or equal to 2"),
])
def test_bad_requests_are_refused_with_openai_errors(client, acme, reviews, path, body, status, message):
    response = client.post(path, headers=acme.headers, json=body)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message


def test_another_tenant_cannot_use_the_model(client, acme, globex, reviews):
    for path, body in (("/v1/chat/completions", {"messages": MESSAGES}), ("/v1/completions", {"prompt": "x"})):
        response = client.post(path, headers=globex.headers, json={"model": "reviews", **body})
        assert response.status_code == 404 and response.json()["error"]["message"] == "model 'reviews' not found"


BUILDING = re.compile(r"model '(?P<model>[^']+)' is not ready yet: its onnxruntime-genai serving engine is being "
                      r"built \(a one-time step, (?P<seconds>\d+) s so far\); retry after 5 s")


def test_a_model_whose_engine_is_being_built_answers_503_with_retry_after_then_200(client, acme, reviews):
    request = {"model": "reviews", "messages": MESSAGES, "temperature": 0, "max_tokens": 3}
    first = client.post("/v1/chat/completions", headers=acme.headers, json=request)
    assert first.status_code == 503 and first.headers["Retry-After"] == "5"
    error = first.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("server_error", "unavailable", None)
    match = BUILDING.fullmatch(error["message"])
    assert match and match["model"] == "reviews", error["message"]
    # a stream is refused the same way, before any event; so is a text completion (one build for both)
    for path, body in (("/v1/chat/completions", {**request, "stream": True}),
                       ("/v1/completions", {"model": "reviews", "prompt": "the lamp", "max_tokens": 3})):
        again = client.post(path, headers=acme.headers, json=body)
        assert (again.status_code, again.headers["content-type"], again.headers["Retry-After"]) == (
            503, "application/json", "5")
        assert int(BUILDING.fullmatch(again.json()["error"]["message"])["seconds"]) >= int(match["seconds"])
    assert client.get("/v1/models/reviews/status", headers=acme.headers).json()["state"] == "loading"

    # POST /load waits for the build in progress (it does not start another); then completions are answered
    loaded = client.post("/v1/models/reviews/load", headers=acme.headers).json()
    assert (loaded["state"], loaded["loads"], loaded["error"]) == ("ready", 1, None)
    answer = client.post("/v1/chat/completions", headers=acme.headers, json=request)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] <= 3
    chunks = events_of(client.post("/v1/chat/completions", headers=acme.headers, json={**request, "stream": True}))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == \
        answer.json()["choices"][0]["message"]["content"]
    assert 'tailor_model_loads_total{kind="chat"} 1.0' in client.get("/metrics").text


def test_a_version_whose_engine_was_built_at_registration_is_answered_at_once(client, settings, acme, reviews):
    from tailor.train.chat_job import build_serving_engine
    from tailor.train.progress import RecordingReporter

    reporter = RecordingReporter()
    seconds = build_serving_engine(reviews, settings, reporter)  # what the chat job does once it registers
    assert reporter.messages == [(f"serving engine ready ({seconds:.1f} s)", {"engine_s": seconds})]
    first = client.post("/v1/chat/completions", headers=acme.headers,
                        json={"model": "reviews", "messages": MESSAGES, "temperature": 0, "max_tokens": 3})
    assert first.status_code == 200, first.text
    status = client.get("/v1/models/reviews/status", headers=acme.headers).json()
    assert (status["state"], status["loads"]) == ("ready", 1)
