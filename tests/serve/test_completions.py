"""``/v1/chat/completions`` and ``/v1/completions``: OpenAI's shapes, server-sent events, sampling options,
refusals, and tenant isolation, on a tiny fine-tuned chat model."""

from __future__ import annotations

import json

import pytest

from api_helpers import publish_copy

MESSAGES = [{"role": "user", "content": "the lamp is great and lovely"}]


@pytest.fixture
def reviews(settings, chat_artifact, acme):
    return publish_copy(settings, chat_artifact, "acme", "reviews")


def events_of(response) -> list:
    """The JSON chunks of a server-sent event stream, checking its framing and the closing [DONE]."""
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = response.text.split("\n\n")
    assert blocks[-1] == "" and blocks[-2] == "data: [DONE]"
    assert all(block.startswith("data: ") for block in blocks[:-1])
    return [json.loads(block[len("data: "):]) for block in blocks[:-2]]


def test_chat_completion_has_openai_s_shape_and_counts_tokens(client, acme, reviews):
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


def test_streamed_chat_equals_the_whole_answer_and_ends_with_usage(client, acme, reviews):
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


def test_seeded_sampling_repeats_and_stop_strings_cut(client, acme, reviews):
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


def test_text_completion_streams_and_echoes(client, acme, reviews):
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
