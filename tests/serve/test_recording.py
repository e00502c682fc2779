"""Every inference answer is recorded per tenant and version with an id; inputs only with "store": true; OpenAI's
stored chat completions (list with model and metadata filters, get, update, delete, messages) on a tiny chat
model; tenant isolation of all of it; recording off."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api_helpers import error_of, publish_copy

TEXTS = ["Shares of the bank fell after the profit warning", "Revenue beat expectations, the stock jumped"]
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the lamp is great"}]


@pytest.fixture
def sentiment(settings, head_artifact, acme):
    return publish_copy(settings, head_artifact, "acme", "sentiment")


def _records(app, tenant: str, ids: list[str]):
    services = app.state.services
    services.recorder.flush()
    return [services.predictions.get(tenant, i) for i in ids]


def test_classifications_are_recorded_with_their_ids_and_keep_texts_only_when_stored(app, client, acme, sentiment):
    body = client.post("/v1/classifications", headers=acme.headers,
                       json={"model": "sentiment", "input": TEXTS}).json()
    assert body["id"].startswith("clf-") and len(body["id"]) == 28
    ids = [item["id"] for item in body["data"]]
    assert all(i.startswith("pred-") for i in ids) and len(set(ids)) == 2
    records = _records(app, "acme", ids)
    for record, item in zip(records, body["data"]):
        assert (record.kind, record.model, record.model_name, record.version) == (
            "classification", "sentiment", "sentiment", sentiment.version)
        assert (record.label, record.score, record.scores) == (item["label"], item["score"], item["scores"])
        assert record.request_id == body["id"] and record.input is None and record.metadata is None
        assert record.prompt_tokens > 5 and record.latency_ms > 0
    assert sum(r.prompt_tokens for r in records) == body["usage"]["prompt_tokens"]

    stored = client.post("/v1/classifications", headers=acme.headers,
                         json={"model": "sentiment:1", "input": TEXTS[0], "store": True,
                               "metadata": {"channel": "app"}}).json()
    record, = _records(app, "acme", [stored["data"][0]["id"]])
    assert (record.model, record.input, record.metadata) == ("sentiment:1", {"text": TEXTS[0]}, {"channel": "app"})


def test_an_abstained_answer_is_recorded_with_its_reason(app, client, acme, sentiment):
    body = client.post("/v1/classifications", headers=acme.headers,
                       json={"model": "sentiment", "input": TEXTS[0], "abstain_threshold": 1.0}).json()
    record, = _records(app, "acme", [body["data"][0]["id"]])
    assert record.label is None and record.details == {"abstained": True, "reason": body["data"][0]["reason"]}


def test_embeddings_requests_are_recorded(app, client, acme):
    services = app.state.services
    client.post("/v1/embeddings", headers=acme.headers, json={"model": "minilm-l6", "input": TEXTS, "store": True})
    services.recorder.flush()
    assert services.predictions.count("acme", "embedding") == 1
    page, _ = services.predictions.list_stored("acme", "embedding")
    assert (page[0].model_name, page[0].version, page[0].details, page[0].input) == (
        "minilm-l6", None, {"texts": 2, "dimensions": 384}, {"texts": TEXTS})


@pytest.mark.parametrize("metadata, message", [
    ({f"k{i}": "v" for i in range(17)}, "at most 16 pairs, got 17"),
    ({"k" * 65: "v"}, "1 to 64 characters"),
    ({"k": "v" * 513}, "at most 512 characters, got 513"),
])
def test_bad_metadata_is_refused_naming_the_field(client, acme, sentiment, metadata, message):
    error = error_of(client.post("/v1/classifications", headers=acme.headers,
                                 json={"model": "sentiment", "input": "x", "metadata": metadata}), 400)
    assert error["param"] == "metadata" and message in error["message"]


def test_with_recording_off_answers_keep_their_ids_and_nothing_is_written(fresh_home, db_url, head_artifact):
    from tailor.security.keys import TenantStore
    from tailor.serve.app import create_app
    from tailor.settings import Settings

    settings = Settings(home=fresh_home, database_url=db_url, record_predictions=False)
    _, key = TenantStore(settings.registry_url).create_tenant("acme")
    publish_copy(settings, head_artifact, "acme", "sentiment")
    app = create_app(settings)
    with TestClient(app) as client:
        body = client.post("/v1/classifications", headers={"Authorization": f"Bearer {key}"},
                           json={"model": "sentiment", "input": TEXTS, "store": True}).json()
    assert body["data"][0]["id"].startswith("pred-")
    assert app.state.services.recorder is None and app.state.services.predictions.count("acme") == 0


@pytest.fixture
def reviews(client, settings, chat_artifact, acme):
    publish_copy(settings, chat_artifact, "acme", "reviews")
    loaded = client.post("/v1/models/reviews/load", headers=acme.headers)
    assert loaded.json()["state"] == "ready", loaded.text


def _chat(client, tenant, **extra) -> dict:
    response = client.post("/v1/chat/completions", headers=tenant.headers,
                           json={"model": "reviews", "messages": MESSAGES, "temperature": 0, "max_tokens": 4, **extra})
    assert response.status_code == 200, response.text
    return response


def test_stored_chat_completions_are_listed_fetched_updated_and_deleted(client, acme, globex, reviews):
    made = [_chat(client, acme, store=True, metadata={"team": team}).json() for team in ("a", "b", "a")]
    _chat(client, acme)                                           # not stored: recorded, never listed
    listed = client.get("/v1/chat/completions", headers=acme.headers, params={"model": "reviews"}).json()
    assert [c["id"] for c in listed["data"]] == [c["id"] for c in made]
    assert (listed["first_id"], listed["last_id"], listed["has_more"]) == (made[0]["id"], made[-1]["id"], False)
    assert listed["data"][0] == {**made[0], "metadata": {"team": "a"}}
    team_a = client.get("/v1/chat/completions?metadata[team]=a&order=desc&limit=1", headers=acme.headers).json()
    assert [c["id"] for c in team_a["data"]] == [made[2]["id"]] and team_a["has_more"] is True

    first = made[0]["id"]
    assert client.get(f"/v1/chat/completions/{first}", headers=acme.headers).json()["choices"] == made[0]["choices"]
    messages = client.get(f"/v1/chat/completions/{first}/messages", headers=acme.headers).json()
    assert messages["data"] == [{"id": f"{first}-0", "role": "system", "content": "be brief", "name": None},
                                {"id": f"{first}-1", "role": "user", "content": "the lamp is great", "name": None}]
    updated = client.post(f"/v1/chat/completions/{first}", headers=acme.headers, json={"metadata": {"ok": "yes"}})
    assert updated.json()["metadata"] == {"ok": "yes"}
    for path in (f"/v1/chat/completions/{first}", f"/v1/chat/completions/{first}/messages"):
        assert error_of(client.get(path, headers=globex.headers), 404)["message"] == (
            f"stored completion {first!r} not found")
    assert client.get("/v1/chat/completions", headers=globex.headers).json()["data"] == []
    error_of(client.delete(f"/v1/chat/completions/{first}", headers=globex.headers), 404)
    deleted = client.delete(f"/v1/chat/completions/{first}", headers=acme.headers).json()
    assert deleted == {"id": first, "object": "chat.completion.deleted", "deleted": True}
    error_of(client.get(f"/v1/chat/completions/{first}", headers=acme.headers), 404)


def test_a_streamed_stored_completion_keeps_the_streamed_text(client, acme, reviews):
    streamed = _chat(client, acme, store=True, stream=True)
    chunks = [json.loads(b[len("data: "):]) for b in streamed.text.split("\n\n")[:-2]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    stored = client.get(f"/v1/chat/completions/{chunks[0]['id']}", headers=acme.headers).json()
    assert stored["choices"][0]["message"]["content"] == text
    assert stored["choices"][0]["finish_reason"] == chunks[-1]["choices"][0]["finish_reason"]


def test_the_list_takes_metadata_filters_but_no_unknown_parameter(client, acme):
    assert client.get("/v1/chat/completions?metadata[a]=1", headers=acme.headers).status_code == 200
    error = error_of(client.get("/v1/chat/completions?colour=red", headers=acme.headers), 400)
    assert error["message"].startswith("unknown query parameter 'colour'")
    error_of(client.get("/v1/chat/completions?after=chatcmpl-nope", headers=acme.headers), 404)
