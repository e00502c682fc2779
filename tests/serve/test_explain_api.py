"""``POST /v1/classifications`` with ``"explain"``: the explanation's shape and numbers on the serving runtime,
every label on request, and the 400s (a chat model, a base model, too many texts)."""

from __future__ import annotations

import pytest

from api_helpers import error_of, publish_copy
from tailor.models.explain import split_units, without

TEXTS = ["Stocks rally as earnings beat forecasts", "股市大涨 after the rate cut"]


@pytest.fixture
def tweets(settings, head_artifact, acme):
    return publish_copy(settings, head_artifact, "acme", "tweets")


def _classify(client, acme, **body):
    return client.post("/v1/classifications", headers=acme.headers, json={"model": "tweets"} | body)


def test_explain_adds_each_words_weight_for_the_predicted_label(client, acme, tweets):
    plain = _classify(client, acme, input=TEXTS).json()["data"]
    response = _classify(client, acme, input=TEXTS, explain=True)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    for text, row, before in zip(TEXTS, data, plain):
        assert set(row) == {"id", "index", "label", "score", "scores", "explanation"}
        assert (row["label"], row["scores"]) == (before["label"], pytest.approx(before["scores"], abs=1e-5))
        units = split_units(text)
        assert [(t["token"], t["start"], t["end"]) for t in row["explanation"]] == [
            (u.token, u.start, u.end) for u in units]
        assert all(text[t["start"]:t["end"]] == t["token"] for t in row["explanation"])
    # the weight of "rally" is what removing it does to the label's probability, on the same runtime
    rally = next(t for t in data[0]["explanation"] if t["token"] == "rally")
    cut = without(TEXTS[0], [u for u in split_units(TEXTS[0]) if u.token == "rally"])
    after = _classify(client, acme, input=cut).json()["data"][0]["scores"][data[0]["label"]]
    assert rally["weight"] == pytest.approx(data[0]["scores"][data[0]["label"]] - after, abs=2e-5)
    assert response.json()["usage"] == _classify(client, acme, input=TEXTS).json()["usage"]  # the texts' own tokens


def test_explain_all_weighs_every_label(client, acme, tweets):
    labels = tweets.metrics["test"]["per_class"].keys()
    row = _classify(client, acme, input=TEXTS[0], explain="all").json()["data"][0]
    assert set(row["explanations"]) == set(labels)
    assert row["explanation"] == row["explanations"][row["label"]]
    for position in range(len(row["explanation"])):
        assert abs(sum(row["explanations"][label][position]["weight"] for label in labels)) < 1e-5


def test_explain_false_keeps_the_plain_shape(client, acme, tweets):
    row = _classify(client, acme, input=TEXTS[0], explain=False).json()["data"][0]
    assert set(row) == {"id", "index", "label", "score", "scores"}


def test_explaining_a_chat_model_is_refused(client, acme):
    error = error_of(client.post("/v1/classifications", headers=acme.headers,
                                 json={"model": "smollm2-135m-instruct", "input": "hi", "explain": True}), 400)
    assert (error["param"], error["message"]) == (
        "explain", "explain: explanations exist for fine-tuned classifiers only; 'smollm2-135m-instruct' is a chat model")
    error = error_of(client.post("/v1/classifications", headers=acme.headers,
                                 json={"model": "minilm-l6", "input": "hi", "explain": "all"}), 400)
    assert error["message"] == ("explain: explanations exist for fine-tuned classifiers only; 'minilm-l6' is a base "
                                "model without labels")


def test_too_many_texts_or_a_bad_value_are_refused(client, acme, tweets):
    error = error_of(_classify(client, acme, input=["up"] * 33, explain=True), 400)
    assert (error["param"], error["message"]) == (
        "explain", "explain: at most 32 texts per request can be explained, not 33")
    error = error_of(_classify(client, acme, input="up", explain="some"), 400)
    assert error["param"] == "explain"
