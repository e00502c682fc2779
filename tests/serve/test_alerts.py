"""A model's monitoring settings and alerts through the API: checked settings, stored inputs by the model's
setting, alerts posted to a real webhook server, and a hanging webhook that fails after its retries without
slowing serving."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from api_helpers import error_of, publish_copy
from samples import SAMPLE_TEST, sample_rows

TEXTS = [t for t, _ in sample_rows(SAMPLE_TEST)[:8]]


class Hooks:
    """A webhook receiver on a free local port; ``delay_s`` makes it hang before answering."""

    def __init__(self, delay_s: float = 0.0):
        self.received: list[dict] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(delay_s)
                hooks.received.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def client(fresh_home, db_url):
    from tailor.serve.app import create_app
    from tailor.settings import Settings

    settings = Settings(home=fresh_home, database_url=db_url, webhook_timeout_s=0.3, webhook_attempts=2,
                        webhook_backoff_s=0.05)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        test_client.settings = settings
        yield test_client


@pytest.fixture
def sentiment(client, head_artifact, acme):
    return publish_copy(client.settings, head_artifact, "acme", "sentiment")


@pytest.fixture
def acme(client):
    from api_helpers import Tenant
    from tailor.security.keys import TenantStore

    return Tenant("acme", TenantStore(client.settings.registry_url).create_tenant("acme")[1])


@pytest.fixture
def globex(client):
    from api_helpers import Tenant
    from tailor.security.keys import TenantStore

    return Tenant("globex", TenantStore(client.settings.registry_url).create_tenant("globex")[1])


def _config(client, tenant, body, model="sentiment"):
    return client.put(f"/v1/models/{model}/monitoring/config", headers=tenant.headers, json=body)


def test_settings_are_checked_and_tenant_isolated(client, acme, globex, sentiment):
    assert client.get("/v1/models/sentiment/monitoring/config", headers=acme.headers).json() == {
        "object": "model.monitoring_config", "model": "sentiment", "store_inputs": False, "window_hours": 1.0,
        "rules": [], "webhook_url": None, "updated_at": None}
    bad = _config(client, acme, {"rules": [{"metric": "accuracy", "op": "<", "threshold": 0.8}]})
    assert error_of(bad, 400)["message"].startswith("rules[0].metric: 'accuracy' is not a metric; metrics: ")
    assert error_of(_config(client, acme, {"webhook_url": "ftp://x"}), 400)["message"] == (
        "webhook_url: 'ftp://x' is not an http:// or https:// URL")
    assert error_of(_config(client, acme, {"window_hours": 0}), 400)["message"] == (
        "window_hours: between 0 and 744 hours, got 0")
    assert error_of(_config(client, acme, {"store_inputs": "maybe"}), 400)["param"] == "store_inputs"
    assert error_of(_config(client, globex, {"store_inputs": True}), 404)["message"].startswith(
        "model 'sentiment' not found")
    assert error_of(client.get("/v1/models/sentiment/alerts", headers=globex.headers), 404)
    assert error_of(client.post("/v1/models/sentiment/alerts/check", headers=globex.headers), 404)
    set_ = _config(client, acme, {"store_inputs": True, "rules": [{"metric": "answers", "op": ">=", "threshold": 5}]})
    assert set_.status_code == 200 and set_.json()["rules"] == [
        {"metric": "answers", "op": ">=", "threshold": 5.0, "min_answers": 30}]
    assert client.get("/v1/models/sentiment@latest/monitoring/config", headers=acme.headers).json()["store_inputs"]


def test_the_models_setting_stores_inputs_unless_the_request_says(client, acme, sentiment):
    records = client.app.state.services

    def stored(body):
        answer = client.post("/v1/classifications", headers=acme.headers,
                             json={"model": "sentiment", "input": TEXTS[:1], **body}).json()["data"][0]
        records.recorder.flush()
        return records.predictions.get("acme", answer["id"]).input

    assert stored({}) is None
    _config(client, acme, {"store_inputs": True})
    assert stored({}) == {"text": TEXTS[0]}
    assert stored({"store": False}) is None  # the request's own word wins


def test_an_alert_fires_once_and_is_posted_to_the_webhook(client, acme, sentiment):
    hooks = Hooks()
    try:
        _config(client, acme, {"rules": [{"metric": "answers", "op": ">=", "threshold": 5, "min_answers": 1},
                                         {"metric": "estimated_accuracy", "op": "<", "threshold": 0.0}],
                               "webhook_url": hooks.url})
        client.post("/v1/classifications", headers=acme.headers, json={"model": "sentiment", "input": TEXTS[:6]})
        fired = client.post("/v1/models/sentiment/alerts/check", headers=acme.headers).json()["data"]
        assert [(a["model"], a["rule"], a["value"], a["state"]) for a in fired] == [
            ("sentiment:1", "answers >= 5", 6.0, "firing")]
        assert client.post("/v1/models/sentiment/alerts/check", headers=acme.headers).json()["data"] == []  # open
        client.app.state.services.alert_loop.sender.join()
        assert [(h["event"], h["model"], h["rule"], h["value"], h["tenant"]) for h in hooks.received] == [
            ("fired", "sentiment:1", "answers >= 5", 6.0, "acme")]
        listed = client.get("/v1/models/sentiment/alerts?state=firing", headers=acme.headers).json()["data"]
        assert [(a["id"], a["delivery"], a["attempts"]) for a in listed] == [(fired[0]["id"], "delivered", 1)]
    finally:
        hooks.close()


def test_a_hanging_webhook_fails_after_its_retries_and_never_slows_serving(client, acme, sentiment):
    hooks = Hooks(delay_s=2.0)
    try:
        _config(client, acme, {"rules": [{"metric": "answers", "op": ">=", "threshold": 1, "min_answers": 1}],
                               "webhook_url": hooks.url})
        client.post("/v1/classifications", headers=acme.headers, json={"model": "sentiment", "input": TEXTS[:2]})
        assert len(client.post("/v1/models/sentiment/alerts/check", headers=acme.headers).json()["data"]) == 1
        started = time.perf_counter()
        served = client.post("/v1/classifications", headers=acme.headers, json={"model": "sentiment",
                                                                                 "input": TEXTS[:2]})
        assert served.status_code == 200 and time.perf_counter() - started < 0.3  # while the post hangs
        client.app.state.services.alert_loop.sender.join()
        alert = client.get("/v1/models/sentiment/alerts", headers=acme.headers).json()["data"][0]
        assert (alert["delivery"], alert["attempts"]) == ("failed", 2)
        assert "timed out" in alert["last_error"]
    finally:
        hooks.close()
