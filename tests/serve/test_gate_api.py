"""The release gate through the API: ``GET/PUT /v1/release_gate``, alias changes refused with the failing numbers
(409), an admin override recorded in the history, a non-admin override refused (403), tenants kept apart; and
``POST /v1/models/{model}/evaluations``, whose bias report the gate reads."""

from __future__ import annotations

import pytest

from tailor.registry.service import open_registry
from tailor.security.keys import TenantStore

from api_helpers import Tenant, error_of, publish_copy, region_csv, upload

GOOD = {"slice_column": "region", "largest_gap": 0.04, "min_rows": 30,
        "counterfactual": {"checked": 50, "flipped": 1, "flip_rate": 0.02}}
BAD = {"slice_column": "region", "largest_gap": 0.31, "min_rows": 30,
       "counterfactual": {"checked": 50, "flipped": 4, "flip_rate": 0.08}}
FAILS = "largest slice gap 0.31 > 0.10 (region); flip rate 0.08 > 0.05"


@pytest.fixture(autouse=True)
def never_a_500(client):
    yield
    assert 'status="500"' not in client.get("/metrics").text


@pytest.fixture
def loans(settings, acme):
    """acme's ``loans``: version 1 within the thresholds below, version 2 beyond them (rows only: alias changes
    never load a model)."""
    store = open_registry(settings).store
    for fairness in (GOOD, BAD):
        store.create_version("acme", "loans", task="classify", base_model="minilm-l6", method="head",
                             artifact_path="acme/loans/x", params={}, metrics={
                                 "test": {"accuracy": 0.9, "macro_f1": 0.88}, "fairness": fairness}, lineage={})
    return store


@pytest.fixture
def deployer(settings, acme) -> Tenant:
    _, secret = TenantStore(settings.registry_url).create_key("acme", "release-bot", "read,deploy")
    return Tenant("acme", secret)


def put_gate(client, tenant, **policy):
    return client.put("/v1/release_gate", headers=tenant.headers, json=policy)


def test_the_gate_is_read_by_anyone_and_set_by_an_admin(client, acme, globex, deployer):
    assert client.get("/v1/release_gate", headers=acme.headers).json() == {
        "object": "release_gate", "tenant": "acme", "active": False, "min_accuracy": None, "min_macro_f1": None,
        "max_slice_gap": None, "max_flip_rate": None, "require_fairness": False}
    response = put_gate(client, acme, min_macro_f1=0.8, max_slice_gap=0.1, max_flip_rate=0.05)
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "release_gate", "tenant": "acme", "active": True, "min_accuracy": None,
                               "min_macro_f1": 0.8, "max_slice_gap": 0.1, "max_flip_rate": 0.05,
                               "require_fairness": False}
    assert client.get("/v1/release_gate", headers=deployer.headers).json() == response.json()
    assert client.get("/v1/release_gate", headers=globex.headers).json()["active"] is False  # tenants apart
    assert error_of(put_gate(client, deployer, max_slice_gap=0.5), 403)["message"] == (
        "this API key lacks the 'admin' scope (it has: read, deploy)")
    assert error_of(put_gate(client, acme, max_slice_gap=1.5), 400)["param"] == "max_slice_gap"


def test_refused_with_the_numbers_then_overridden_then_allowed(client, acme, deployer, loans):
    put_gate(client, acme, max_slice_gap=0.1, max_flip_rate=0.05)
    ok = client.put("/v1/models/loans/aliases/prod", headers=deployer.headers, json={"version": 1})
    assert ok.status_code == 200, ok.text
    for method, path, body in (("PUT", "aliases/prod", {"version": 2}),
                               ("POST", "aliases/prod/canary", {"version": 2, "share": 0.1}),
                               ("POST", "aliases/prod/promote", {"version": 2})):
        error = error_of(client.request(method, f"/v1/models/loans/{path}", headers=deployer.headers, json=body), 409)
        assert error == {"message": f"release gate: loans:2 fails: {FAILS} (an admin may override with a reason)",
                         "type": "invalid_request_error", "param": "version", "code": "release_gate_failed"}
    # a shadow answers nobody: it may start, and promoting its candidate is gated
    assert client.post("/v1/models/loans/aliases/prod/shadow", headers=deployer.headers,
                       json={"version": 2}).status_code == 200
    error_of(client.post("/v1/models/loans/aliases/prod/promote", headers=deployer.headers), 409)

    override = {"version": 2, "override": True, "reason": "board approved, ticket RISK-12"}
    forbidden = client.post("/v1/models/loans/aliases/prod/promote", headers=deployer.headers, json=override)
    assert error_of(forbidden, 403)["message"] == (
        "overriding the release gate needs the 'admin' scope (this API key has: read, deploy)")
    assert error_of(client.post("/v1/models/loans/aliases/prod/promote", headers=acme.headers,
                                json={"version": 2, "override": True}), 400) == {
        "message": "an override of the release gate needs a reason", "type": "invalid_request_error",
        "param": "reason", "code": None}
    promoted = client.post("/v1/models/loans/aliases/prod/promote", headers=acme.headers, json=override)
    assert promoted.status_code == 200 and promoted.json()["version"] == 2
    last = client.get("/v1/models/loans/aliases", headers=acme.headers).json()["history"][-1]
    assert (last["action"], last["version"], last["reason"]) == (
        "promote", 2, f"release gate overridden ({FAILS}): board approved, ticket RISK-12")
    assert last["actor"].startswith("acme/")

    put_gate(client, acme, max_slice_gap=0.4, max_flip_rate=0.1)  # a relaxed gate lets v2 through plainly
    assert client.put("/v1/models/loans/aliases/staging", headers=deployer.headers,
                      json={"version": 2}).status_code == 200


def test_another_tenants_gate_does_not_apply(client, acme, globex, settings):
    store = open_registry(settings).store
    store.create_version("globex", "loans", task="classify", base_model="minilm-l6", method="head",
                         artifact_path="globex/loans/x", params={}, metrics={"fairness": BAD}, lineage={})
    put_gate(client, acme, max_slice_gap=0.1)
    assert client.put("/v1/models/loans/aliases/prod", headers=globex.headers, json={"version": 1}).status_code == 200



def test_an_evaluation_stores_the_bias_report_the_gate_reads(client, acme, settings, head_artifact):
    publish_copy(settings, head_artifact, "acme", "tweets")
    file_id = upload(client, acme, region_csv(), "test.csv").json()["id"]
    response = client.post("/v1/models/tweets:1/evaluations", headers=acme.headers,
                           json={"file": file_id, "slice_column": "region", "counterfactual": True})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["object"], report["model"], report["rows"], report["slice_column"]) == (
        "model.evaluation", "tweets:1", 80, "region")
    assert sorted((s["value"], s["n"], s["too_small"]) for s in report["slices"]) == [
        ("north", 40, False), ("south", 40, False)]
    accuracies = [s["accuracy"] for s in report["slices"]]
    assert report["largest_gap"] == round(max(accuracies) - min(accuracies), 4)
    assert abs(sum(s["accuracy"] * s["n"] for s in report["slices"]) / 80 - report["accuracy"]) < 1e-3
    assert report["positive_label"] is None and report["equal_opportunity"] is None  # three labels
    assert report["counterfactual"]["checked"] >= 20  # every fourth text starts with "He says"
    stored = open_registry(settings).store.get_version("acme", "tweets", 1).metrics["fairness"]
    # the slice table's rows in the response carry the finder's two extra fields as null
    assert all((s.pop("rest_accuracy"), s.pop("significant")) == (None, None) for s in report["slices"])
    assert stored == {k: v for k, v in report.items() if k not in ("object", "model", "rows", "accuracy", "macro_f1")}

    put_gate(client, acme, max_slice_gap=1.0, max_flip_rate=1.0)  # evidence present: passes
    assert client.put("/v1/models/tweets/aliases/prod", headers=acme.headers, json={"version": 1}).status_code == 200


def test_evaluation_refusals_name_the_field(client, acme, settings, head_artifact):
    publish_copy(settings, head_artifact, "acme", "tweets")
    file_id = upload(client, acme, region_csv(), "test.csv").json()["id"]
    missing = client.post("/v1/models/tweets:1/evaluations", headers=acme.headers,
                          json={"file": file_id, "slice_column": "regionx"})
    assert error_of(missing, 400) == {"message": "no column 'regionx' in test.csv (columns: text, label, region)",
                                      "type": "invalid_request_error", "param": "slice_column",
                                      "code": "invalid_file"}
    wrong = client.post("/v1/models/tweets:1/evaluations", headers=acme.headers,
                        json={"file": file_id, "positive_label": "bullish"})
    assert error_of(wrong, 400)["param"] == "positive_label"
    assert "fairness" not in open_registry(settings).store.get_version("acme", "tweets", 1).metrics  # none stored
    open_registry(settings).store.create_version("acme", "helper", task="chat", base_model="smollm2-135m",
                                                 method="lora", artifact_path="acme/helper/x", params={}, metrics={},
                                                 lineage={})
    chat = client.post("/v1/models/helper:1/evaluations", headers=acme.headers, json={"file": file_id})
    assert error_of(chat, 400)["message"] == ("'helper:1' is helper:1, a chat model: a bias report needs a fine-tuned "
                                              "classifier")
