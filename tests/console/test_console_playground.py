"""The playground page: the model picker, the classifier and chat panels, and the /v1 calls its script makes
with the session cookie (classifications with every label's probability, a streamed chat completion)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api_helpers import error_of, publish_copy
from console.conftest import sign_in

SCRIPT = Path(__file__).parents[2] / "src" / "tailor" / "serve" / "console" / "static" / "playground.js"
SCRIPT_LABEL = "<script>alert(1)</script>"


def main_of(html: str) -> str:
    return html[html.index('<main id="main"'):html.index("</main>")]


def options_of(html: str) -> list[tuple[str, str, bool]]:
    """The picker's ``(optgroup, value, selected)`` options, in order."""
    picker = re.search(r'<select id="pg-model".*?</select>', html, re.S).group(0)
    found = []
    for group, body in re.findall(r'<optgroup label="([^"]*)">(.*?)</optgroup>', picker, re.S):
        found += [(group, value, bool(selected)) for value, selected in
                  re.findall(r'<option value="([^"]*)"( selected)?>', body)]
    return found


@pytest.fixture
def sentiment(settings, acme, head_artifact):
    """acme's head classifier (labels bearish, bullish, neutral), version 1, with the alias production."""
    from tailor.registry.service import open_registry

    version = publish_copy(settings, head_artifact, "acme", "sentiment")
    open_registry(settings).store.set_alias("acme", "sentiment", "production", 1)
    return version


@pytest.fixture
def reviews(settings, acme, chat_artifact):
    """acme's tiny chat version; its base is a local directory, which no tenant can chat with."""
    return publish_copy(settings, chat_artifact, "acme", "reviews")


def test_the_picker_lists_the_tenants_classifiers_and_chat_versions_with_their_aliases(console, sentiment, reviews):
    html = console.get("/console/playground").text
    assert options_of(html) == [
        ("Fine-tuned classifiers", "sentiment", False), ("Fine-tuned classifiers", "sentiment@production", False),
        ("Fine-tuned chat models", "reviews", False), ("Base chat models", "smollm2-135m-instruct", False)]
    assert ('<option value="sentiment@production">sentiment@production · version 1</option>' in html
            and '<option value="" selected disabled>Choose a model…</option>' in html)
    assert ("Base encoders (minilm-l6, me5-small) have no labels and are not listed: fine-tune one to classify "
            "with it.") in html
    assert 'id="pg-classify"' not in html and 'id="pg-chat"' not in html  # nothing picked yet
    assert '<a href="/console/playground" aria-current="page">Playground</a>' in html
    assert '<script src="/console/static/playground.js?v=' in html


def test_a_tenant_without_fine_tuned_models_is_sent_to_fine_tune(console):
    html = console.get("/console/playground").text
    assert options_of(html) == [("Base chat models", "smollm2-135m-instruct", False)]
    assert ("You have no fine-tuned model yet: try a base chat model below, or fine-tune one first: "
            '<a href="/console/finetune">Fine-tune</a>') in html


def test_a_preselected_classifier_shows_its_labels_and_the_classify_form(console, sentiment):
    html = console.get("/console/playground?model=sentiment@production").text
    assert ("Fine-tuned classifiers", "sentiment@production", True) in options_of(html)
    assert sum(selected for _, _, selected in options_of(html)) == 1
    panel = main_of(html)
    assert '<section id="pg-classify" class="card" data-model="sentiment@production"' in panel
    assert "<h2 id=\"pg-classify-title\">Classify with sentiment@production</h2>" in panel
    assert "Version 1, fine-tuned from minilm-l6." in panel
    assert re.findall(r'<span class="pg-chip">([^<]*)</span>', panel) == ["bearish", "bullish", "neutral"]
    assert '<textarea id="pg-input" name="input"' in panel and '<p id="pg-input-error" class="error" ' \
        'data-error-for="input" hidden></p>' in panel
    assert 'id="pg-chat"' not in panel
    assert '<script src="/console/static/chart.js?v=' in html


def test_a_version_not_listed_by_name_is_added_to_the_picker_when_preselected(console, sentiment):
    html = console.get("/console/playground?model=sentiment:1").text
    assert options_of(html)[:2] == [("Fine-tuned classifiers", "sentiment:1", True),
                                    ("Fine-tuned classifiers", "sentiment", False)]
    assert 'data-model="sentiment:1"' in html


def test_a_base_encoder_preselected_gets_a_note_instead_of_a_form(console):
    html = main_of(console.get("/console/playground?model=minilm-l6").text)
    assert ("minilm-l6 is a base encoder without labels: fine-tune it first, then classify with the fine-tuned "
            "version.") in html
    assert "<form id=" not in html


@pytest.mark.parametrize("model", ["secret", "secret:1", "secret@production", "../etc"])
def test_another_tenants_model_is_a_404_page(settings, console, globex, head_artifact, model):
    from tailor.registry.service import open_registry

    publish_copy(settings, head_artifact, "globex", "secret")
    open_registry(settings).store.set_alias("globex", "secret", "production", 1)
    response = console.get(f"/console/playground?model={model}")
    assert response.status_code == 404 and "<title>Error 404 · Tailor</title>" in response.text
    assert re.search(r'<p class="error" role="alert">model &#39;[^<]*&#39; not found', response.text)
    assert "secret" not in console.get("/console/playground").text


def test_classifying_with_the_session_cookie_returns_every_labels_probability(app, settings, console, sentiment):
    from tailor.security.keys import TenantStore

    refused = console.post("/v1/classifications", json={"model": "sentiment", "input": ["up", "down"]})
    assert error_of(refused, 403)["message"].startswith("missing or wrong X-CSRF-Token header")
    response = console.post("/v1/classifications", json={"model": "sentiment@production", "input": ["up", "down"]},
                            headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 200 and response.headers["x-tailor-version"] == "sentiment:1"
    rows = response.json()["data"]
    assert [row["index"] for row in rows] == [0, 1]
    for row in rows:
        assert sorted(row["scores"]) == ["bearish", "bullish", "neutral"]
        assert sum(row["scores"].values()) == pytest.approx(1, abs=1e-5)
        assert row["label"] == max(row["scores"], key=row["scores"].get)
        assert row["score"] == row["scores"][row["label"]]

    # a read-only key's session sees the page and classifies the same (inference needs only the read scope)
    _, secret = TenantStore(settings.registry_url).create_key("acme", "viewer", "read")
    with TestClient(app) as viewer:
        csrf = sign_in(viewer, secret)
        assert 'data-model="sentiment"' in viewer.get("/console/playground?model=sentiment").text
        again = viewer.post("/v1/classifications", json={"model": "sentiment", "input": ["up", "down"]},
                            headers={"X-CSRF-Token": csrf})
        assert [row["scores"] for row in again.json()["data"]] == [row["scores"] for row in rows]


@pytest.mark.parametrize("texts, param, message", [
    ("", "input", "input: String should have at least 1 character"),
    (["fine", " "], "input.1", "input.1: String should match pattern '\\S'"),
    (["x"] * 2049, "input", "input: List should have at most 2048 items after validation, not 2049"),
])
def test_what_the_classify_form_sends_wrong_is_answered_with_a_message_and_the_input_param(console, sentiment,
                                                                                          texts, param, message):
    # The script sends the textarea's non-blank lines (or its text when it has none) and shows an error whose
    # param is "input" or "input.N" beside the textarea.
    error = error_of(console.post("/v1/classifications", json={"model": "sentiment", "input": texts},
                                  headers={"X-CSRF-Token": console.csrf}), 400)
    assert (error["param"], error["message"]) == (param, message)
    assert 'failure.param.split(".")[0] === "input"' in SCRIPT.read_text(encoding="utf-8")


def test_a_script_label_is_escaped_on_the_page_and_returned_as_plain_data(settings, console, acme, head_artifact):
    from tailor.registry.service import open_registry

    version = publish_copy(settings, head_artifact, "acme", "markup")
    spec_path = open_registry(settings).artifact_dir(version) / "tailor_model.json"
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    spec["labels"][0] = SCRIPT_LABEL
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    html = console.get("/console/playground?model=markup").text
    assert SCRIPT_LABEL not in html
    assert re.findall(r'<span class="pg-chip">([^<]*)</span>', html) == [
        "&lt;script&gt;alert(1)&lt;/script&gt;", "bullish", "neutral"]
    scores = console.post("/v1/classifications", json={"model": "markup", "input": "shares fell"},
                          headers={"X-CSRF-Token": console.csrf}).json()["data"][0]["scores"]
    assert sorted(scores) == sorted([SCRIPT_LABEL, "bullish", "neutral"])
    script = SCRIPT.read_text(encoding="utf-8")  # what the model says goes into text nodes, never HTML
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "text.textContent = reply" in script


def test_a_chat_version_gets_the_chat_panel_without_a_base_it_cannot_reach(console, reviews):
    html = main_of(console.get("/console/playground?model=reviews").text)
    assert '<section id="pg-chat" class="card" data-model="reviews" data-base=""' in html
    assert '<h3 id="pg-column-model">reviews</h3>' in html
    assert 'id="pg-compare"' not in html and 'data-column="base"' not in html
    assert '<input type="number" id="pg-max-tokens" name="max_tokens" min="1" max="4096" step="1" value="256"' in html
    assert 'name="temperature" min="0" max="2" step="0.1" value="0.7"' in html
    for button in ('<button type="submit" id="pg-send">Send</button>',
                   '<button type="button" id="pg-stop" class="secondary" disabled>Stop</button>',
                   '<button type="button" id="pg-reset" class="secondary">New conversation</button>'):
        assert button in html
    assert 'id="pg-classify"' not in html


def test_a_chat_version_of_a_catalog_base_can_be_compared_with_it(settings, console, acme, chat_artifact):
    import shutil

    from tailor.registry.artifacts import MARKER
    from tailor.registry.service import open_registry

    source, version = chat_artifact
    registry = open_registry(settings)
    with registry.artifacts.stage() as staged:
        shutil.copytree(source, staged, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER))
        registry.publish_version("acme", "support", staged, task="chat", base_model="smollm2-135m-instruct",
                                 method=version.method, params=version.params, metrics=version.metrics,
                                 lineage=version.lineage)
    html = main_of(console.get("/console/playground?model=support").text)
    assert 'data-model="support" data-base="smollm2-135m-instruct"' in html
    assert ('<h3 id="pg-column-model">support <span class="muted small">(fine-tuned)</span></h3>' in html
            and '<h3 id="pg-column-base">smollm2-135m-instruct <span class="muted small">(base model)</span></h3>'
            in html)
    assert '<section class="pg-column" data-column="base" aria-labelledby="pg-column-base" hidden>' in html
    assert '<label for="pg-compare" class="inline">Compare with the base model (smollm2-135m-instruct)</label>' in html
    base = main_of(console.get("/console/playground?model=smollm2-135m-instruct").text)  # a base: nothing to compare
    assert 'data-model="smollm2-135m-instruct" data-base=""' in base
    assert "A base chat model from the catalog, not fine-tuned." in base


def test_a_streamed_chat_completion_works_with_the_session_cookie(console, reviews):
    request = {"model": "reviews", "messages": [{"role": "user", "content": "the lamp is great"}], "stream": True,
               "stream_options": {"include_usage": True}, "max_tokens": 4, "temperature": 0}
    assert error_of(console.post("/v1/chat/completions", json=request), 403)["code"] == "insufficient_scope"
    csrf = {"X-CSRF-Token": console.csrf}
    building = console.post("/v1/chat/completions", json=request, headers=csrf)  # the script waits and asks again
    assert (building.status_code, building.headers["Retry-After"]) == (503, "5")
    assert error_of(building, 503)["code"] == "unavailable"
    assert console.post("/v1/models/reviews/load", headers=csrf).json()["state"] == "ready"
    streamed = console.post("/v1/chat/completions", json=request, headers=csrf)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.headers["x-tailor-version"] == "reviews:1"
    blocks = streamed.text.split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""] and all(b.startswith("data: ") for b in blocks[:-2])
    chunks = [json.loads(b[len("data: "):]) for b in blocks[:-2]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(pieces) == 4 and all(pieces)
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length", "logprobs": None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4


def test_the_page_speaks_chinese(console, sentiment, reviews):
    classify = console.get("/console/playground?model=sentiment&lang=zh").text
    assert "<title>试用 · Tailor</title>" in classify and "<h1>试用</h1>" in classify
    assert '<optgroup label="微调后的分类模型">' in classify and '<optgroup label="基础对话模型">' in classify
    assert '<option value="sentiment" selected>sentiment · 版本 1</option>' in classify
    assert "使用 sentiment 分类" in classify and "版本 1，基于 minilm-l6 微调。" in classify
    assert '<label for="pg-input">待分类文本</label>' in classify and '<button type="submit">分类</button>' in classify
    strings = json.loads(re.search(r'<script type="application/json" id="tailor-strings">(.*?)</script>',
                                   classify, re.S).group(1))
    assert strings["js.playground.predicted"] == "预测标签：" and strings["js.playground.stopped"] == "已停止。"
    chat = console.get("/console/playground?model=reviews").text  # the language is remembered
    assert "与 reviews 对话" in chat and '<label for="pg-message">你的消息</label>' in chat
    assert '<button type="button" id="pg-stop" class="secondary" disabled>停止</button>' in chat
    english = console.get("/console/playground?model=reviews&lang=en").text
    assert "Chat with reviews" in english and '<label for="pg-message">Your message</label>' in english
