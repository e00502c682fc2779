"""The console's trust pages: a version's bias report (run on an uploaded file, the stored report shown with its
numbers), the release gate (thresholds set through the API and shown; a version's standing; the override
offered to admins only), the audit log (rows, filters, paging, a verified and a tampered chain) and the
quotas on the Keys page; for admins, refused or hidden for other keys, in both languages."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tailor.db import open_engine
from tailor.registry.service import open_registry
from tailor.security.keys import TenantStore
from tailor.security.quotas import QuotaStore
from tailor.serve.console.formats import size

from api_helpers import csv_bytes, new_master_key, publish_copy, region_csv
from console.conftest import sign_in
from samples import sample_rows

GOOD = {"data": "ab12cd34ef56" + "0" * 52, "created_at": "2026-11-30T08:00:00+00:00", "metric": "accuracy",
        "positive_label": None, "positive_label_from": None,
        "slice_column": "region", "largest_gap": 0.04, "min_rows": 30, "equal_opportunity": None, "slices": [],
        "worst_slices": [], "counterfactual": {"checked": 50, "flipped": 1, "flip_rate": 0.02, "by_group": {},
                                               "examples": []}}
BAD = {**GOOD, "largest_gap": 0.31, "counterfactual": {**GOOD["counterfactual"], "flipped": 4, "flip_rate": 0.08}}


def section(html: str, element_id: str, tag: str = "table") -> str:
    return re.search(rf'<{tag} id="{element_id}".*?</{tag}>', html, re.S).group(0)


def cells(row_html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row_html, re.S)]


@pytest.fixture
def csrf(console) -> dict:
    return {"X-CSRF-Token": console.csrf}


@pytest.fixture
def deployer(app, settings, acme):
    """A client signed in with acme's read+deploy key (no admin)."""
    _, secret = TenantStore(settings.registry_url).create_key("acme", "release-bot", "read,deploy")
    with TestClient(app, raise_server_exceptions=False) as client:
        client.csrf = sign_in(client, secret)
        yield client


@pytest.fixture
def loans(settings, acme):
    """acme's ``loans``: version 1 within the gate set below, version 2 beyond it (rows only)."""
    store = open_registry(settings).store
    for fairness in (GOOD, BAD):
        store.create_version("acme", "loans", task="classify", base_model="minilm-l6", method="head",
                             artifact_path="acme/loans/x", params={}, metrics={
                                 "test": {"accuracy": 0.9, "macro_f1": 0.88}, "fairness": fairness}, lineage={})
    return store


def test_the_gate_page_shows_the_thresholds_set_through_the_api(console, csrf, deployer):
    html = console.get("/console/gate").text
    assert '<caption id="gate-h">No gate is set: every version may be released</caption>' in html
    put = console.put("/v1/release_gate", headers=csrf,
                      json={"min_macro_f1": 0.8, "max_slice_gap": 0.1, "max_flip_rate": 0.05})
    assert put.status_code == 200, put.text
    html = console.get("/console/gate").text
    assert "<title>Release gate · Tailor</title>" in html and "/console/static/trust.js" in html
    rows = re.findall(r'<tr data-threshold="(\w+)">(.*?)</tr>', section(html, "gate"), re.S)
    assert [(name, *cells(row)) for name, row in rows] == [
        ("min_accuracy", "Lowest test accuracy", "—"), ("min_macro_f1", "Lowest test macro-F1", "0.8"),
        ("max_slice_gap", "Largest slice gap allowed", "0.1"),
        ("max_flip_rate", "Highest counterfactual flip rate allowed", "0.05"),
        ("require_fairness", "A bias report with a slice column is required", "no")]
    form = section(html, "gate-form", "form")
    assert 'id="gate-max_slice_gap" name="max_slice_gap" type="number" min="0" max="1" step="0.01" ' \
           'inputmode="decimal"\n         value="0.1">' in form
    assert '<label for="gate-min_accuracy">Lowest test accuracy</label>' in form
    # a key without admin reads the gate, gets no form, and its navigation has no audit log
    other = deployer.get("/console/gate").text
    assert cells(re.search(r'<tr data-threshold="max_slice_gap">(.*?)</tr>', other, re.S).group(0))[1] == "0.1"
    assert 'id="gate-form"' not in other and 'id="gate-no-admin"' in other
    assert '<a href="/console/gate"' in other and '<a href="/console/audit"' not in other
    assert '<a href="/console/audit"' in html
    refused = deployer.put("/v1/release_gate", headers={"X-CSRF-Token": deployer.csrf}, json={"max_slice_gap": 0.5})
    assert refused.status_code == 403
    chinese = console.get("/console/gate?lang=zh").text
    assert "<title>发布门禁 · Tailor</title>" in chinese and "允许的最大切片差距" in chinese and "保存门禁" in chinese


def test_a_version_page_says_whether_it_passes_the_gate_with_the_failing_numbers(console, csrf, loans):
    assert "The tenant has no release gate" in console.get("/console/models/loans/2").text
    console.put("/v1/release_gate", headers=csrf, json={"max_slice_gap": 0.1, "max_flip_rate": 0.05})
    failing = console.get("/console/models/loans/2").text
    assert re.findall(r"<li>(.*?)</li>", section(failing, "gate-failures", "ul")) == [
        "largest slice gap 0.31 &gt; 0.10 (region)", "flip rate 0.08 &gt; 0.05"]
    assert ("Latest bias report: region, largest slice gap 0.3100, counterfactual flip rate 0.0800." in failing
            and '<a id="bias-link" href="/console/models/loans/2/bias">Bias report</a>' in failing)
    passing = console.get("/console/models/loans/1").text
    assert '<strong class="status status-succeeded">Passes the release gate</strong>' in passing
    assert 'id="gate-failures"' not in passing


def test_an_admin_is_offered_the_override_and_a_deployer_is_not(console, deployer, loans):
    console.put("/v1/models/loans/aliases/prod", headers={"X-CSRF-Token": console.csrf}, json={"version": 1})
    admin = console.get("/console/models/loans").text
    assert ('<label class="check" for="release-1-override"><input id="release-1-override" name="override" '
            'type="checkbox"> Override the release gate (admin; the reason above is required and recorded)</label>'
            in admin and 'id="release-new-override"' in admin)
    assert 'name="override"' not in deployer.get("/console/models/loans").text
    # what the release forms send: refused with the numbers, then overridden with a reason
    body = {"version": 2, "reason": "board approved", "override": False}
    console.put("/v1/release_gate", headers={"X-CSRF-Token": console.csrf}, json={"max_slice_gap": 0.1})
    refused = console.put("/v1/models/loans/aliases/prod", headers={"X-CSRF-Token": console.csrf}, json=body)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "release_gate_failed"
    assert refused.json()["error"]["message"] == ("release gate: loans:2 fails: largest slice gap 0.31 > 0.10 "
                                                  "(region) (an admin may override with a reason)")
    moved = console.put("/v1/models/loans/aliases/prod", headers={"X-CSRF-Token": console.csrf},
                        json={**body, "override": True})
    assert moved.status_code == 200 and moved.json()["version"] == 2
    history = section(console.get("/console/models/loans").text, "history")
    assert ("<td>release gate overridden (largest slice gap 0.31 &gt; 0.10 (region)): board approved</td>"
            in history)



def test_a_bias_report_runs_on_an_uploaded_file_and_shows_its_numbers(console, csrf, settings, head_artifact):
    publish_copy(settings, head_artifact, "acme", "tweets")
    upload = console.post("/v1/files", headers=csrf, files={"file": ("regions.csv", region_csv())},
                          data={"purpose": "fine-tune"})
    assert upload.status_code in (200, 201), upload.text
    file_id = upload.json()["id"]
    html = console.get("/console/models/tweets/1/bias").text
    assert "<title>Bias report of tweets:1 · Tailor</title>" in html and 'id="no-report"' in html
    form = section(html, "bias-form", "form")
    assert f'<option value="{file_id}" selected>regions.csv (80)</option>' in form
    assert re.findall(r'<option value="([^"]*)"', section(form, "bias-column", "select")) == ["", "region"]
    assert re.findall(r'<option value="([^"]*)"', section(form, "bias-positive", "select")) == [
        "", *upload.json()["summary"]["labels"]]
    assert '<label for="bias-column">Slice column</label>' in form and 'data-model="tweets:1"' in form

    bad = console.post("/v1/models/tweets:1/evaluations", headers=csrf, json={"file": file_id, "slice_column": "zone"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "slice_column"
    ran = console.post("/v1/models/tweets:1/evaluations", headers=csrf,
                       json={"file": file_id, "slice_column": "region", "counterfactual": True})
    assert ran.status_code == 200, ran.text
    report = ran.json()
    html = console.get("/console/models/tweets/1/bias").text
    shown = {row: cells(body) for row, body in re.findall(r'<tr data-slice="([^"]*)">(.*?)</tr>',
                                                          section(html, "slices"), re.S)}
    for s in report["slices"]:
        assert shown[s["value"]] == [
            s["value"], str(s["n"]), f"{s['accuracy']:.4f}", f"{s['accuracy_ci'][0]:.4f} – {s['accuracy_ci'][1]:.4f}",
            f"{s['macro_f1']:.4f}", "—" if s["positive_rate"] is None else f"{s['positive_rate']:.4f}",
            f"{s['gap']:.4f}", "too small to judge" if s["too_small"] else ""]
    assert sorted(shown) == ["north", "south"]
    assert re.sub(r"<[^>]+>", "", section(html, "largest-gap", "dd")) == f"{report['largest_gap']:.4f}"
    cf = report["counterfactual"]
    assert (f"{cf['flipped']} of {cf['checked']} texts with protected terms changed label when the terms were "
            f"swapped: flip rate {cf['flip_rate']:.4f}.") in html
    worst = re.findall(r'<tr data-slice="[^"]*">(.*?)</tr>', section(html, "worst-slices"), re.S)
    assert [cells(row)[:3] for row in worst] == [[s["column"], s["value"], str(s["n"])]
                                                 for s in report["worst_slices"]]
    chinese = console.get("/console/models/tweets/1/bias?lang=zh").text
    assert "<title>tweets:1 的偏差报告 · Tailor</title>" in chinese and "region 的切片" in chinese


def test_the_bias_page_of_a_chat_model_or_for_a_reader_has_no_form(console, app, settings, acme):
    store = open_registry(settings).store
    store.create_version("acme", "helper", task="chat", base_model="qwen2.5-0.5b", method="lora",
                         artifact_path="acme/helper/x", params={}, metrics={}, lineage={})
    html = console.get("/console/models/helper/1/bias").text
    assert ('<p class="notice" id="bias-not-classifier">helper:1 is a chat model: bias reports are for fine-tuned '
            'classifiers.</p>') in html and 'id="bias-form"' not in html
    store.create_version("acme", "tiny", task="classify", base_model="minilm-l6", method="head",
                         artifact_path="acme/tiny/x", params={}, metrics={"fairness": GOOD}, lineage={})
    _, secret = TenantStore(settings.registry_url).create_key("acme", "viewer", "read")
    with TestClient(app, raise_server_exceptions=False) as reader:
        sign_in(reader, secret)
        page = reader.get("/console/models/tiny/1/bias").text
        assert 'id="bias-no-deploy"' in page and 'id="bias-form"' not in page
        assert re.sub(r"<[^>]+>", "", section(page, "largest-gap", "dd")) == "0.0400"


def test_the_audit_page_lists_filters_pages_and_verifies_the_chain(console, csrf, settings, monkeypatch):
    from tailor.serve.console.pages import trust

    for gap in (0.1, 0.2, 0.3):
        assert console.put("/v1/release_gate", headers=csrf, json={"max_slice_gap": gap}).status_code == 200
    key_id = TenantStore(settings.registry_url).list_keys("acme")[0].id
    html = console.get("/console/audit?action=PUT /v1/release_gate").text
    assert "<title>Audit log · Tailor</title>" in html
    rows = re.findall(r'<tr data-seq="(\d+)">(.*?)</tr>', section(html, "audit"), re.S)
    assert len(rows) == 3 and [int(seq) for seq, _ in rows] == sorted((int(s) for s, _ in rows), reverse=True)
    first = cells(rows[0][1])
    assert first[0] == rows[0][0] and first[2] == f"console:{key_id} acme" and first[3] == "PUT /v1/release_gate"
    assert first[4:] == ["", "testclient", "200"]
    # paging: two rows a page, then the older ones
    monkeypatch.setattr(trust, "AUDIT_PAGE", 2)
    paged = console.get("/console/audit?action=PUT /v1/release_gate").text
    older = re.search(r'<a id="audit-older" href="([^"]+)">', paged).group(1).replace("&amp;", "&")
    assert len(re.findall(r'<tr data-seq=', paged)) == 2 and f"after={rows[1][0]}" in older
    assert re.findall(r'<tr data-seq="(\d+)"', console.get(older).text) == [rows[2][0]]
    bad_since = console.get("/console/audit?since=yesterday")
    assert bad_since.status_code == 200
    assert ('<p class="error" role="alert" data-error-for="since">since: &#39;yesterday&#39; is not a date or time '
            '(e.g. 2026-11-30T08:00:00Z)</p>') in bad_since.text

    intact = console.get("/console/audit?verify=true").text
    assert '<strong class="status status-succeeded">Chain intact.</strong>' in intact
    tampered = int(rows[1][0])
    with open_engine(settings.registry_url).begin() as conn:
        conn.execute(text("UPDATE audit_log SET client = '10.0.0.9' WHERE seq = :seq"), {"seq": tampered})
    broken = section(console.get("/console/audit?verify=true").text, "chain-result", "div")
    assert (f'<strong class="status status-failed">The chain breaks at row {tampered}:</strong> hash mismatch (a '
            f'field was changed after the row was written)') in broken
    assert f'href="/console/audit?after={tampered + 1}">Show row {tampered}</a>' in broken
    assert "哈希链在第" in console.get("/console/audit?verify=true&lang=zh").text


def test_the_audit_page_is_refused_to_a_key_without_admin(deployer):
    refused = deployer.get("/console/audit")
    assert refused.status_code == 403 and 'id="no-admin"' in refused.text and '<table id="audit"' not in refused.text
    assert "Only a key with the admin scope can read the audit log." in refused.text


def test_the_keys_page_shows_the_quotas_and_their_use(app, settings, acme):
    QuotaStore(settings.registry_url).set("acme", rpm=600, jobs=2, storage_mb=0, train_minutes=90)  # before a request
    _, deployer_key = TenantStore(settings.registry_url).create_key("acme", "release-bot", "read,deploy")
    content = csv_bytes(sample_rows(per_label=4))
    with TestClient(app, raise_server_exceptions=False) as client:
        csrf = sign_in(client, acme.key)
        assert client.post("/v1/files", headers={"X-CSRF-Token": csrf}, files={"file": ("q.csv", content)},
                           data={"purpose": "fine-tune"}).status_code in (200, 201)
        html = client.get("/console/keys").text
    rows = dict((name, cells(row)) for name, row in re.findall(r'<tr data-quota="(\w+)">(.*?)</tr>',
                                                               section(html, "quotas"), re.S))
    # the tokens spent of a bucket that refills 10 a second: a figure to two decimals, at most the 3 requests made
    assert rows["rpm"][:2] == ["Requests per minute (all keys)", "600"]
    assert re.fullmatch(r"\d\.\d\d", rows["rpm"][2]) and float(rows["rpm"][2]) <= 3
    assert rows["jobs"] == ["Jobs queued or running at once", "2", "0"]
    assert rows["storage_mb"] == ["Stored files (MiB)", "unlimited", size(len(content))]
    assert rows["train_minutes"] == ["Training minutes per day (UTC)", "90", "0.00"]
    limit = settings.key_rate_limit_rpm
    assert rows["key_rpm"][1] == (f"{limit:,}" if limit else "unlimited")
    assert "Personal data is not redacted" in html
    with TestClient(app, raise_server_exceptions=False) as deployer:
        sign_in(deployer, deployer_key)
        assert 'id="quotas"' not in deployer.get("/console/keys").text


def test_the_slice_columns_are_read_from_sealed_csv_and_jsonl_uploads(fresh_home, acme, monkeypatch):
    import json

    from pydantic import SecretStr

    from tailor.security.crypto import is_sealed_file
    from tailor.serve.app import create_app
    from tailor.settings import Settings

    key = new_master_key()
    monkeypatch.setenv("TAILOR_MASTER_KEY", key)
    sealed = Settings(home=fresh_home, master_key=SecretStr(key))
    open_registry(sealed).store.create_version("acme", "loans", task="classify", base_model="minilm-l6",
                                                method="head", artifact_path="acme/loans/x", params={},
                                                metrics={}, lineage={})
    rows = sample_rows(per_label=4)
    jsonl = "".join(json.dumps({"branch": f"b{i % 2}", "text": t, "label": lab, "age band": "30-39"}) + "\n"
                    for i, (t, lab) in enumerate(rows)).encode()
    with TestClient(create_app(sealed), raise_server_exceptions=False) as client:
        headers = {"X-CSRF-Token": sign_in(client, acme.key)}
        ids = [client.post("/v1/files", headers=headers, files={"file": (name, content)},
                           data={"purpose": "fine-tune"}).json()["id"]
               for name, content in (("rows.csv", csv_bytes([("north", t, lab, "f") for t, lab in rows],
                                                           header=("region", "text", "label", "gender"))),
                                     ("rows.jsonl", jsonl))]
        stored = client.app.state.services.files
        assert all(is_sealed_file(stored.path(stored.get("acme", i))) for i in ids)
        columns = [re.findall(r'<option value="([^"]*)"', section(client.get(
            f"/console/models/loans/1/bias?file={i}").text, "bias-column", "select")) for i in ids]
    assert columns == [["", "region", "gender"], ["", "branch", "age band"]]
