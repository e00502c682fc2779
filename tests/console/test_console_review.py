"""The review pages: the queue as a labelling page (its first answer, label buttons with their keys), labels
given and undone through the session cookie, the counts a retrain would use, the retrain job it starts, what a
read-only key sees, tenants, escaping and both languages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api_helpers import publish_copy
from console.conftest import sign_in
from samples import SAMPLE_TEST, sample_rows

TEXTS = [t for t, _ in sample_rows(SAMPLE_TEST)[:12]]
STATIC = Path(__file__).parents[2] / "src" / "tailor" / "serve" / "console" / "static"


@pytest.fixture
def sentiment(settings, head_artifact, acme):
    return publish_copy(settings, head_artifact, "acme", "sentiment")


def _classify(console, texts, store=True) -> list[dict]:
    response = console.post("/v1/classifications", json={"model": "sentiment", "input": texts, "store": store},
                            headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _queue(page: str) -> list[dict]:
    return json.loads(re.search(r'<script type="application/json" id="review-queue">(.*?)</script>', page, re.S)
                      .group(1))


def _figure(page: str, place: str) -> str:
    return re.search(rf'<dd id="{place}"[^>]*>([^<]*)</dd>', page).group(1)


def test_the_index_lists_only_classifiers(console, settings, sentiment, chat_artifact):
    publish_copy(settings, chat_artifact, "acme", "helpdesk")
    page = console.get("/console/review").text
    assert '<a href="/console/review/sentiment">sentiment</a> <span class="muted">version 1</span>' in page
    assert "helpdesk" not in page.split("<main")[1]


def test_the_queue_is_a_labelling_page_with_keys(console, sentiment):
    answers = _classify(console, TEXTS)
    labels = sorted(answers[0]["scores"])
    page = console.get("/console/review/sentiment")
    assert page.status_code == 200, page.text
    items = _queue(page.text)
    api = console.get("/v1/models/sentiment/review_queue?limit=50").json()
    assert items == api["data"] and len(items) == 12
    first = items[0]
    assert f'<div class="review-text" id="item-text">{first["input"]}</div>' in page.text.replace("&#39;", "'")
    assert f'<strong id="item-label">{first["label"]}</strong>' in page.text
    assert f'(<span id="item-score">{100 * first["score"]:.1f}%</span>)' in page.text
    assert f"uncertainty {first['uncertainty']:.2f} (1 − the margin" in page.text
    buttons = re.findall(r'<button type="button" class="label( predicted)?" data-label="([^"]+)" data-key="(\d)" '
                         r'aria-keyshortcuts="\d"><kbd>(\d)</kbd>([^<]+)</button>', page.text)
    assert [(name, key, kbd, text) for _, name, key, kbd, text in buttons] == [
        (label, str(i), str(i), label) for i, label in enumerate(labels, 1)]
    assert [name for predicted, name, *_ in buttons if predicted] == [first["label"]]
    assert '<kbd>S</kbd>Skip</button>' in page.text and '<kbd>U</kbd>Undo</button>' in page.text
    assert (_figure(page.text, "given"), _figure(page.text, "labels-total"), _figure(page.text, "left")) == ("0", "0", "12")
    assert 'href="/v1/models/sentiment/review_queue?format=csv&amp;limit=1000&amp;hours=168" download>CSV</a>' in page.text
    assert '<button type="button" id="retrain" disabled>Retrain with these</button>' in page.text
    assert 'data-ref="sentiment:1"' in page.text and '<script src="/console/static/review.js?v=' in page.text


def test_labels_are_given_and_undone_through_the_cookie_and_counted(console, sentiment, app):
    _classify(console, TEXTS)
    _classify(console, ["not stored, never queued"], store=False)
    items = _queue(console.get("/console/review/sentiment").text)
    first, second = items[0]["prediction_id"], items[1]["prediction_id"]
    label = sorted(items[0]["scores"])[0]
    token = {"X-CSRF-Token": console.csrf}
    assert console.post("/v1/feedback", json={"prediction_id": first, "label": label}).status_code == 403
    assert console.post("/v1/feedback", json={"prediction_id": first, "label": label}, headers=token).status_code == 200
    assert console.post("/v1/feedback", json={"prediction_id": second, "label": label}, headers=token).status_code == 200

    page = console.get("/console/review/sentiment").text
    assert (_figure(page, "labels-total"), _figure(page, "labels-new"), _figure(page, "left")) == ("2", "2", "10")
    assert {first, second}.isdisjoint(i["prediction_id"] for i in _queue(page))
    assert '<button type="button" id="retrain">Retrain with these</button>' in page  # enabled: labels to use

    assert console.delete(f"/v1/feedback/{second}").status_code == 403  # undo wants the token too
    undone = console.delete(f"/v1/feedback/{second}", headers=token)
    assert undone.json() == {"id": second, "object": "feedback", "deleted": True}
    assert app.state.services.feedback.for_records("acme", [first, second]).keys() == {first}
    page = console.get("/console/review/sentiment").text
    assert (_figure(page, "labels-total"), _figure(page, "left")) == ("1", "11")
    assert second in {i["prediction_id"] for i in _queue(page)}  # back in the queue
    again = console.delete(f"/v1/feedback/{second}", headers=token)
    assert again.status_code == 404 and again.json()["error"]["message"] == f"no feedback on answer {second!r}"


def test_retrain_with_these_creates_the_job_the_page_asks_for(console, sentiment, app):
    items = _classify(console, TEXTS[:3])
    label = sorted(items[0]["scores"])[0]
    console.post("/v1/feedback", json={"prediction_id": items[0]["id"], "label": label},
                 headers={"X-CSRF-Token": console.csrf})
    page = console.get("/console/review/sentiment").text
    ref = re.search(r'data-ref="([^"]+)"', page).group(1)
    body = {"model": ref, "method": {"type": "supervised", "tailor": {"feedback": True}}}  # what review.js posts
    js = (STATIC / "review.js").read_text(encoding="utf-8")
    assert 'model: root.dataset.ref, method: { type: "supervised", tailor: { feedback: true } }' in js
    assert 'location.assign("/console/jobs/" + encodeURIComponent(job.id))' in js
    job = console.post("/v1/fine_tuning/jobs", json=body, headers={"X-CSRF-Token": console.csrf})
    assert job.status_code == 200, job.text
    created = app.state.services.jobs.get("acme", job.json()["id"])
    assert created.model == "sentiment:1" and created.training_file is None
    assert created.request["retrain"] == {"parent": "sentiment:1", "base_model": "minilm-l6", "feedback": True,
                                          "new_labels": False}


def test_a_read_only_key_can_label_but_not_retrain(app, settings, sentiment, console):
    from tailor.security.keys import TenantStore

    items = _classify(console, TEXTS[:4])
    _, reader = TenantStore(settings.registry_url).create_key("acme", "labeller", "read")
    with TestClient(app, raise_server_exceptions=False) as client:
        csrf = sign_in(client, reader)
        page = client.get("/console/review/sentiment").text
        assert 'id="retrain"' not in page and "Your API key lacks the “train” scope needed here." in page
        assert 'data-key="1"' in page  # the label buttons are there
        label = sorted(items[0]["scores"])[1]
        given = client.post("/v1/feedback", json={"prediction_id": items[0]["id"], "label": label},
                            headers={"X-CSRF-Token": csrf})
        assert given.status_code == 200
        assert client.delete(f"/v1/feedback/{items[0]['id']}", headers={"X-CSRF-Token": csrf}).status_code == 200
        refused = client.post("/v1/fine_tuning/jobs", headers={"X-CSRF-Token": csrf}, json={
            "model": "sentiment:1", "method": {"type": "supervised", "tailor": {"feedback": True}}})
        assert refused.status_code == 403


def test_an_empty_queue_says_how_to_fill_it(console, sentiment):
    _classify(console, TEXTS[:2], store=False)
    page = console.get("/console/review/sentiment?hours=24").text
    assert '<p class="notice" id="empty">Nothing to review: no stored answers without feedback in the last 24 hours.' in page
    assert 'href="/console/monitoring/sentiment#settings"' in page and 'id="review-queue"' not in page
    assert "data-label=" not in page


def test_another_tenants_model_is_a_404_page(app, globex, sentiment, console):
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_in(client, globex.key)
        missing = client.get("/console/review/sentiment")
        assert missing.status_code == 404 and "model &#39;sentiment&#39; not found" in missing.text
        assert client.delete("/v1/feedback/pred-0", headers={"X-CSRF-Token": "x"}).status_code == 403
    items = _classify(console, TEXTS[:1])
    console.post("/v1/feedback", json={"prediction_id": items[0]["id"], "label": sorted(items[0]["scores"])[0]},
                 headers={"X-CSRF-Token": console.csrf})
    with TestClient(app, raise_server_exceptions=False) as client:
        csrf = sign_in(client, globex.key)
        assert client.delete(f"/v1/feedback/{items[0]['id']}", headers={"X-CSRF-Token": csrf}).status_code == 404
    assert app.state.services.feedback.count("acme") == 1  # globex took nothing back


def test_text_with_html_is_escaped(console, sentiment):
    evil = "<script>alert('x')</script> rates <b>rise</b>"
    _classify(console, [evil])
    page = console.get("/console/review/sentiment").text
    assert "<script>alert(" not in page and "<b>rise" not in page
    assert ('<div class="review-text" id="item-text">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; rates '
            '&lt;b&gt;rise&lt;/b&gt;</div>') in page
    assert "\\u003cscript\\u003e" in re.search(r'id="review-queue">(.*?)</script>', page, re.S).group(1)


def test_the_page_speaks_chinese(console, sentiment):
    _classify(console, TEXTS[:2])
    page = console.get("/console/review/sentiment?lang=zh").text
    assert "<title>审核标注 sentiment:1 · Tailor</title>" in page
    assert "<kbd>S</kbd>跳过</button>" in page and "<kbd>U</kbd>撤销</button>" in page
    assert "可用于重新训练的标注" in page and "快捷键：1–9 依次对应各标签，S 跳过，U 撤销上一步。" in page
    assert "你的 API 密钥缺少" not in page  # the admin key may retrain
