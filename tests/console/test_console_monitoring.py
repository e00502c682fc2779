"""The monitoring pages: the model list, a model's report as figures and chart data, its drift tests and
alerts, its settings form (what a read-only key sees), the empty state, tenants, escaping and both languages."""

from __future__ import annotations

import html
import json
import re

import pytest
from fastapi.testclient import TestClient

from api_helpers import publish_copy
from console.conftest import sign_in
from samples import SAMPLE_TEST, sample_rows

ROWS = sample_rows(SAMPLE_TEST)[:8]


@pytest.fixture
def sentiment(settings, head_artifact, acme):
    return publish_copy(settings, head_artifact, "acme", "sentiment")


def _classify(console, texts, model="sentiment") -> list[dict]:
    response = console.post("/v1/classifications", json={"model": model, "input": texts, "store": True},
                            headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _embedded_report(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="monitoring-report">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def _figure(page: str, field: str) -> str:
    return re.search(rf'<dd data-field="{re.escape(field)}" data-format="[a-z]+">([^<]*)</dd>', page).group(1)


def test_the_index_lists_the_tenants_fine_tuned_models(console, sentiment):
    page = console.get("/console/monitoring")
    assert page.status_code == 200
    assert '<a href="/console/monitoring/sentiment">sentiment</a>' in page.text
    assert "minilm-l6" not in page.text  # bases have no report
    assert 'aria-current="page">Monitoring</a>' in page.text


def test_a_model_page_shows_the_reports_figures_and_charts(console, sentiment):
    answers = _classify(console, [t for t, _ in ROWS[:5]]) + _classify(console, [t for t, _ in ROWS[5:8]])
    truth = ROWS[0][1]
    assert console.post("/v1/feedback", json={"prediction_id": answers[0]["id"], "label": truth},
                        headers={"X-CSRF-Token": console.csrf}).status_code == 200

    page = console.get("/console/monitoring/sentiment?hours=6")
    assert page.status_code == 200, page.text
    report = _embedded_report(page.text)
    api = console.get("/v1/models/sentiment/monitoring?hours=6&bucket_minutes=15").json()
    assert report["model"] == api["model"] == "sentiment:1" and report["bucket_minutes"] == 15  # 6 h in 24 buckets
    assert report["totals"] == api["totals"] and report["estimated"] == api["estimated"]
    assert len(report["buckets"]) == 24
    newest = report["buckets"][-1]
    served = [max(a["scores"], key=a["scores"].get) for a in answers]
    assert (newest["requests"], newest["answers"], newest["failed"]) == (2, 8, 0)
    assert newest["labels"] == {k: round(served.count(k) / 8, 4) for k in set(served)}
    assert newest["latency_ms_p95"] >= newest["latency_ms_p50"] > 0
    assert newest["confidence_mean"] == report["confidence"]["mean"]
    assert newest["measured_rows"] == 1 and newest["measured_accuracy"] == float(answers[0]["label"] == truth)
    assert newest["chars_mean"] == round(sum(len(t) for t, _ in ROWS[:8]) / 8, 2)  # input drift over time
    assert newest["unknown_token_rate"] == 0.0
    assert [b["answers"] for b in report["buckets"][:-1]] == [0] * 23
    assert [b["chars_mean"] for b in report["buckets"][:-1]] == [None] * 23

    assert _figure(page.text, "totals.requests") == "2" and _figure(page.text, "totals.answers") == "8"
    assert _figure(page.text, "estimated.accuracy") == f"{100 * report['estimated']['accuracy']:.1f}%"
    assert _figure(page.text, "measured.accuracy") == f"{100 * float(answers[0]['label'] == truth):.1f}%"
    assert _figure(page.text, "totals.latency_ms.p50") == f"{report['totals']['latency_ms']['p50']:,.1f} ms"
    assert _figure(page.text, "drift.verdict") == "not enough data"
    assert '<section id="charts" aria-label="Charts">' in page.text and '<p class="notice" id="quiet" hidden>' in page.text
    assert re.findall(r'data-chart="([a-z_]+)"', page.text) == ["requests", "latency", "labels", "confidence", "accuracy",
                                                                  "input_length", "unknown_tokens"]
    assert 'data-hours="6" data-bucket="15" data-task="classify"' in page.text
    assert '<option value="6" selected>last 6 hours</option>' in page.text
    assert '<script src="/console/static/monitoring.js?v=' in page.text
    assert "8 answers in the window; drift needs 30" in page.text


def test_a_model_without_traffic_shows_an_empty_state_not_empty_charts(console, sentiment):
    page = console.get("/console/monitoring/sentiment").text
    assert '<p class="notice" id="quiet">No traffic for sentiment:1 in this window yet.' in page
    assert '<section id="charts" aria-label="Charts" hidden>' in page
    assert _figure(page, "totals.requests") == "0" and _figure(page, "estimated.accuracy") == "–"
    assert "No alerts have fired for this model." in page


def test_alerts_and_settings_are_shown_and_the_form_talks_to_the_api(console, sentiment, app):
    _classify(console, [t for t, _ in ROWS[:3]])
    put = console.put("/v1/models/sentiment/monitoring/config", headers={"X-CSRF-Token": console.csrf}, json={
        "store_inputs": True, "window_hours": 2, "webhook_url": "http://127.0.0.1:9/hook",
        "rules": [{"metric": "answers", "op": ">=", "threshold": 2, "min_answers": 1}]})
    assert put.status_code == 200, put.text
    assert console.post("/v1/models/sentiment/alerts/check").status_code == 403  # the page's script sends the token
    fired = console.post("/v1/models/sentiment/alerts/check", headers={"X-CSRF-Token": console.csrf}).json()["data"]
    assert [(a["rule"], a["value"], a["state"]) for a in fired] == [("answers >= 2", 3.0, "firing")]

    page = console.get("/console/monitoring/sentiment").text
    row = re.search(r"<tr><td><code>answers &gt;= 2</code></td>(.*?)</tr>", page, re.S).group(1)
    assert "<td>sentiment:1</td>" in row and '<td class="num">3.0000</td>' in row
    assert '<span class="status alert-firing">firing</span>' in row
    assert re.search(r"(pending|failed|delivered)", row)  # the webhook's delivery, whatever it came to
    assert '<input type="checkbox" name="store_inputs" checked>' in page
    assert 'name="window_hours" min="0.01" max="744" step="any" value="2"' in page
    assert 'value="http://127.0.0.1:9/hook"' in page
    rules = re.search(r'<tbody id="rules">(.*?)</tbody>', page, re.S).group(1)
    assert '<select id="rule-0-metric" name="rules[0].metric">' in rules
    assert '<option value="answers" selected>answers</option>' in rules
    assert '<option value="&gt;=" selected>&gt;=</option>' in rules and 'value="2" required' in rules
    assert '<button type="button" id="check-alerts" class="secondary">Check alerts now</button>' in page
    assert "<fieldset>" in page  # editable with the admin key

    bad = console.put("/v1/models/sentiment/monitoring/config", headers={"X-CSRF-Token": console.csrf},
                      json={"rules": [{"metric": "accuracy", "op": "<", "threshold": 0.8}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rules[0].metric"
    assert 'data-error-for="rules[0].metric"' in page  # where the page shows that error


def test_a_read_only_key_sees_the_settings_but_cannot_change_them(app, settings, sentiment):
    from tailor.security.keys import TenantStore

    _, reader = TenantStore(settings.registry_url).create_key("acme", "viewer", "read")
    with TestClient(app, raise_server_exceptions=False) as client:
        csrf = sign_in(client, reader)
        page = client.get("/console/monitoring/sentiment").text
        assert "<fieldset disabled>" in page and 'id="check-alerts"' not in page
        assert "Your API key lacks the “deploy” scope needed here." in page
        refused = client.put("/v1/models/sentiment/monitoring/config", json={"store_inputs": True},
                             headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 403


def test_another_tenants_model_is_a_404_page_and_a_base_a_400_page(app, globex, sentiment, console):
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_in(client, globex.key)
        missing = client.get("/console/monitoring/sentiment")
        assert missing.status_code == 404 and "<title>Error 404 · Tailor</title>" in missing.text
        assert "model &#39;sentiment&#39; not found" in missing.text
        assert "sentiment" not in client.get("/console/monitoring").text.split("<main")[1]
    base = console.get("/console/monitoring/minilm-l6")
    assert base.status_code == 400 and "is a base model; monitoring reports cover fine-tuned versions" in base.text


def test_the_drift_tests_are_shown_with_the_novel_texts_escaped(console, sentiment):
    evil = " <script>alert(1)</script>"
    _classify(console, [t + evil for t, _ in sample_rows(SAMPLE_TEST)[:32]])
    page = console.get("/console/monitoring/sentiment").text
    drift = _embedded_report(page)["drift"]
    embedding = drift["embedding"]
    assert embedding["texts"] == 32 and "skipped" not in embedding
    assert (f"<td>MMD {embedding['mmd']} · p = {embedding['p_value']} · AUC {embedding['domain_auc']}</td>"
            in page)
    assert "<td>32 stored texts</td>" in page and f"<td>{embedding['reference_texts']} training texts</td>" in page
    novel = re.findall(r'<li><q>(.*?)</q> <span class="muted small">novelty ([0-9.]+)</span></li>', page, re.S)
    assert [(html.unescape(text), float(n)) for text, n in novel] == [
        (e["text"], e["novelty"]) for e in drift["novel_examples"]]
    assert len(novel) == 5 and all(text.endswith(" &lt;script&gt;alert(1)&lt;/script&gt;") for text, _ in novel)
    assert "<script>alert(1)" not in page
    embedded = re.search(r'id="monitoring-report">(.*?)</script>', page, re.S).group(1)
    assert "\\u003cscript\\u003e" in embedded  # tojson escapes < and > inside the script element


def test_the_page_speaks_chinese(console, sentiment):
    _classify(console, [ROWS[0][0]])
    page = console.get("/console/monitoring/sentiment?lang=zh").text
    assert '<html lang="zh-CN">' in page and "<title>监控 sentiment:1 · Tailor</title>" in page
    assert "<dt>请求数</dt>" in page and "<dt>估计准确率</dt>" in page and "立即检查告警" in page
    assert "相对训练文本的输入漂移" in page and "数据不足" in page
    assert "<option value=\"24\" selected>最近 24 小时</option>" in page


def test_a_chat_models_page_shows_its_own_report(app, console, settings, chat_artifact):
    from tailor.monitor.records import PredictionRecord

    publish_copy(settings, chat_artifact, "acme", "helpdesk")
    empty = console.get("/console/monitoring/helpdesk").text
    assert 'data-task="chat"' in empty and "No traffic for helpdesk:1 in this window yet." in empty
    assert re.findall(r'data-chart="([a-z_]+)"', empty) == ["requests", "latency", "tokens", "answer_rates"]
    # two answers as the chat routes record them (building the generation engine is not this page's test)
    app.state.services.predictions.add([
        PredictionRecord(id=f"chatcmpl-{i}", tenant="acme", kind="chat.completion", model="helpdesk",
                         model_name="helpdesk", version=1, latency_ms=120.0, prompt_tokens=9,
                         completion_tokens=tokens, output=text, details={"finish_reason": finish})
        for i, (text, tokens, finish) in enumerate([("I'm sorry, I can't.", 5, "stop"), ("Sure, the", 3, "length")])])
    page = console.get("/console/monitoring/helpdesk").text
    report = _embedded_report(page)
    assert report["task"] == "chat" and report["totals"]["requests"] == 2
    assert [_figure(page, f"totals.{k}") for k in ("requests", "completion_tokens", "refusals", "truncated", "empty")] == [
        "2", "8", "1", "1", "0"]
    assert _figure(page, "totals.latency_ms.p95") == "120.0 ms" and _figure(page, "feedback.up") == "0"
    assert '<p class="notice" id="quiet" hidden>' in page
    assert "Input drift against the training texts" not in page and "<dt>Refusals</dt>" in page
    assert "Alert rules judge classifier reports" in page
