"""The Models pages: the tenant's models, one model's versions, aliases, history and release forms, one
version's evaluation report, lineage and exports, and two versions side by side; in both languages, escaped,
tenant-isolated, and the release and export actions through the /v1 routes with the session."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from fastapi.testclient import TestClient

from tailor.registry.service import open_registry
from tailor.security.keys import TenantStore

from api_helpers import SMALL_CSV, publish_copy
from console.conftest import sign_in

LABELS = ["<b>ham</b>", "spam"]
METRICS_1 = {
    "test": {"n": 10, "accuracy": 0.8, "macro_f1": 0.7917, "weighted_f1": 0.8, "roc_auc": 0.875, "ece": 0.1012,
             "log_loss": 0.4513,
             "per_class": {"<b>ham</b>": {"precision": 0.8333, "recall": 0.8333, "f1": 0.8333, "support": 6},
                           "spam": {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}},
             "confusion_matrix": {"labels": LABELS, "matrix": [[5, 1], [1, 3]]}},
    "baseline": {"label": "<b>ham</b>", "accuracy": 0.6, "macro_f1": 0.375, "weighted_f1": 0.45},
    "calibration": {"temperature": 1.4213, "rows": 40, "fitted": True, "capped": False, "ece_before": 0.0712,
                    "ece_after": 0.0231},
    "abstain": {"target_precision": 0.95, "rows": 40, "reachable": True, "threshold": 0.8125, "coverage": 0.625,
                "accuracy": 0.96, "answered": 25, "accuracy_all": 0.8, "note": None},
    "serving": {"runtime": "onnx-int8"},
}
METRICS_2 = {
    "test": {"n": 10, "accuracy": 0.9, "macro_f1": 0.8958, "weighted_f1": 0.9,
             "per_class": {"<b>ham</b>": {"precision": 1.0, "recall": 0.8333, "f1": 0.9091, "support": 6},
                           "spam": {"precision": 0.8, "recall": 1.0, "f1": 0.8889, "support": 4},
                           "eggs": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}},
             "confusion_matrix": {"labels": [*LABELS, "eggs"], "matrix": [[5, 1, 0], [0, 4, 0], [0, 0, 0]]}},
    "baseline": {"label": "<b>ham</b>", "accuracy": 0.6, "macro_f1": 0.375, "weighted_f1": 0.45},
}
LINEAGE_2 = {"parent": "mail:1", "retrain": {"rows": {"file": 0, "feedback": 12, "replay": 48}},
             "dataset": {"path": "/srv/tailor/files/acme/secret-place.csv", "sha256": "ab12cd34ef56" + "0" * 52,
                         "format": "csv", "rows_read": 60},
             "rows": {"train": 48, "valid": 6, "test": 10}, "label_counts": {"<b>ham</b>": 30, "spam": 18},
             "base_reason": "100% of letters are Latin", "method_reason": "chosen by the user",
             "timings": {"total_s": 12.34, "train_s": 8.5}, "device": "cpu", "precision": "fp32",
             "stop_reason": "early_stopping", "tailor_version": "0.1.0"}


def publish(settings, name, metrics, lineage=None, tenant="acme", task="classify", method="head"):
    """A version whose stored numbers are ``metrics`` (its files are a placeholder: the pages read rows only)."""
    registry = open_registry(settings)
    with registry.artifacts.stage() as staged:
        (staged / "tailor_model.json").write_text("{}", encoding="utf-8")
        return registry.publish_version(tenant, name, staged, task=task, base_model="minilm-l6", method=method,
                                        params={"epochs": 3, "lr": 0.001}, metrics=metrics, lineage=lineage or {})


@pytest.fixture
def mail(settings, acme):
    """acme's classifier ``mail``: version 1 (aliased production, with a reason holding HTML) and version 2."""
    publish(settings, "mail", METRICS_1, {"dataset": {"sha256": "f" * 64, "format": "csv", "rows_read": 50}})
    publish(settings, "mail", METRICS_2, LINEAGE_2)
    store = open_registry(settings).store
    store.set_alias("acme", "mail", "production", 1, actor="acme/default (key_1)",
                    reason="<script>alert('x')</script> first release")
    store.set_candidate("acme", "mail", "production", 2, "canary", 0.25, actor="acme/default (key_1)")
    return "mail"


def reader_client(app, settings, scopes="read"):
    _, secret = TenantStore(settings.registry_url).create_key("acme", "viewer", scopes)
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    client.csrf = sign_in(client, secret)
    return client


def test_the_list_shows_each_model_with_its_task_base_latest_version_and_aliases(console, mail):
    html = console.get("/console/models?lang=en").text
    row = re.search(r'<tr data-model="mail">.*?</tr>', html, re.S).group(0)
    assert '<a href="/console/models/mail">mail</a>' in row and "<td>classification</td>" in row
    assert "<td>minilm-l6</td>" in row and '<a href="/console/models/mail/2">2</a>' in row
    assert '<span class="alias">production → 1</span>' in row
    assert "minilm-l6</a>" not in html  # catalog bases are not the tenant's models
    chinese = console.get("/console/models?lang=zh").text
    assert "<td>文本分类</td>" in chinese and "最新版本" in chinese


def test_a_tenant_without_models_is_told_how_to_make_one(console):
    html = console.get("/console/models").text
    assert "No fine-tuned model yet." in html and 'href="/console/finetune"' in html


def test_the_model_page_lists_versions_with_their_numbers_newest_first(console, mail):
    html = console.get("/console/models/mail").text
    assert "<title>Model mail · Tailor</title>" in html
    versions = re.search(r'<table id="versions".*?</table>', html, re.S).group(0)
    assert re.findall(r'<tr data-version="(\d+)">', versions) == ["2", "1"]
    assert re.findall(r'data-metric="(\w+)">([^<]+)</td>', versions) == [
        ("accuracy", "0.9000"), ("macro_f1", "0.8958"), ("weighted_f1", "0.9000"),
        ("accuracy", "0.8000"), ("macro_f1", "0.7917"), ("weighted_f1", "0.8000")]
    assert "<td>mail:1</td>" in versions  # version 2's parent
    aliases = re.search(r'<table id="aliases".*?</table>', html, re.S).group(0)
    assert '<tr data-alias="production"><td><code>mail@production</code></td><td class="num">1</td>' in aliases
    assert "canary: version 2 answers 25% of requests" in aliases


def test_the_alias_history_shows_who_when_and_why_escaped(console, mail):
    html = console.get("/console/models/mail").text
    history = re.search(r'<table id="history".*?</table>', html, re.S).group(0)
    rows = re.findall(r"<tr><td><time[^>]*>[^<]+</time></td>(.*?)</tr>", history, re.S)
    assert len(rows) == 2  # newest first: the canary, then the first set
    assert "<td>canary started</td>" in rows[0] and "canary: version 2 answers 25% of requests" in rows[0]
    assert ("<td>set or moved</td>" in rows[1] and "<td>acme/default (key_1)</td>" in rows[1]
            and "<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; first release</td>" in rows[1])
    assert "<script>alert" not in html
    assert "设置或移动" in console.get("/console/models/mail?lang=zh").text


def test_release_forms_are_for_a_key_with_the_deploy_scope(console, mail, app, settings):
    html = console.get("/console/models/mail").text
    form = re.search(r'<form class="card release" data-alias="production".*?</form>', html, re.S).group(0)
    assert re.findall(r'name="action" value="(\w+)"', form) == ["set", "canary", "shadow", "promote", "abort",
                                                                "rollback", "unset"]
    assert "Promote the candidate (version 2)" in form and '<p data-error-for="share" hidden></p>' in form
    assert '<form class="card release" data-alias=""' in html  # a new alias
    viewer = reader_client(app, settings)
    try:
        page = viewer.get("/console/models/mail").text
        assert 'class="card release"' not in page and "models.js" in page
        assert ("Your API key lacks the “deploy” scope needed here. You can see the aliases and their history; "
                "releasing needs a key with the deploy scope.") in page
        refused = viewer.put("/v1/models/mail/aliases/production", json={"version": 2},
                             headers={"X-CSRF-Token": viewer.csrf})
        assert refused.status_code == 403 and "lacks the 'deploy' scope" in refused.json()["error"]["message"]
    finally:
        viewer.__exit__(None, None, None)


def test_release_actions_go_through_the_api_and_refusals_name_their_reason(console, mail):
    csrf = {"X-CSRF-Token": console.csrf}
    assert console.post("/v1/models/mail/aliases/production/promote", json={"reason": "wins"}).status_code == 403
    promoted = console.post("/v1/models/mail/aliases/production/promote", json={"reason": "B wins"}, headers=csrf)
    assert promoted.json() == {"object": "model.alias", "model": "mail", "alias": "production", "version": 2,
                               "candidate": None}
    conflict = console.post("/v1/models/mail/aliases/production/canary", json={"version": 2, "share": 0.1},
                            headers=csrf)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["message"] == ("mail@production already points at mail:2; a candidate must "
                                                   "be another version")
    html = console.get("/console/models/mail").text
    history = re.search(r'<table id="history".*?</table>', html, re.S).group(0)
    assert "<td>promoted</td>" in history and "<td>B wins</td>" in history and "acme/default (key_" in history
    assert '<tr data-alias="production"><td><code>mail@production</code></td><td class="num">2</td>' in html


def test_the_version_page_renders_the_evaluation_report(console, mail):
    html = console.get("/console/models/mail/1").text
    assert "<title>Version mail:1 · Tailor</title>" in html and "<code>onnx-int8</code>" in html
    headline = re.search(r'<table id="headline".*?</table>', html, re.S).group(0)
    assert re.findall(r'<tr data-metric="(\w+)"><th scope="row">[^<]+</th><td class="num">([^<]+)</td>\s*'
                      r'<td class="num">(?:<span class="muted">)?([^<]+)(?:</span>)?</td><td class="num">'
                      r'(?:<span class="muted">)?([^<]+)', headline) == [
        ("accuracy", "0.8000", "0.6000", "+0.2000"), ("macro_f1", "0.7917", "0.3750", "+0.4167"),
        ("weighted_f1", "0.8000", "0.4500", "+0.3500"), ("roc_auc", "0.8750", "—", "—"),
        ("ece", "0.1012", "—", "—"), ("log_loss", "0.4513", "—", "—")]
    assert "The majority baseline predicts “&lt;b&gt;ham&lt;/b&gt;” for every row." in html
    matrix = re.search(r'<table id="confusion".*?</table>', html, re.S).group(0)
    assert re.findall(r"<th scope=\"col\">([^<]*)</th>", matrix) == ["True ＼ predicted", "&lt;b&gt;ham&lt;/b&gt;",
                                                                     "spam"]
    assert re.findall(r'<td class="num([^"]*)" style="--shade: ([\d.]+)">(\d+)</td>', matrix) == [
        (" diag dark", "1.0", "5"), ("", "0.2", "1"), ("", "0.2", "1"), (" diag dark", "0.6", "3")]
    per_class = re.search(r'<table id="per-class".*?</table>', html, re.S).group(0)
    assert ('<tr><th scope="row">&lt;b&gt;ham&lt;/b&gt;</th><td class="num">0.8333</td><td class="num">0.8333</td>\n'
            '      <td class="num">0.8333</td><td class="num">6</td></tr>') in per_class
    pairs = re.search(r'<table id="pairs".*?</table>', html, re.S).group(0)
    assert re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td class=\"num\">(\d+)</td><td class=\"num\">(.*?)</td>",
                      pairs) == [("&lt;b&gt;ham&lt;/b&gt;", "spam", "1", "16.7%"), ("spam", "&lt;b&gt;ham&lt;/b&gt;",
                                                                                     "1", "25.0%")]
    assert ("Probabilities are calibrated with temperature 1.421, fitted on 40 validation rows. Calibration error "
            "(ECE) 0.0712 before, 0.0231 after.") in html
    assert ("Suggested abstain threshold 0.812: answering only above it reached 95% accuracy on the validation "
            "rows, answering 62.5% of 40 rows.") in html
    assert "<b>" not in html.replace("<body>", "")


def test_the_version_page_shows_lineage_without_storage_paths(console, mail):
    html = console.get("/console/models/mail/2").text
    lineage = re.search(r'<dl class="facts" id="lineage">.*?</dl>', html, re.S).group(0)
    assert '<dd><a href="/console/models/mail/1">mail:1</a></dd>' in lineage
    assert "0 rows from a file, 12 feedback labels, 48 replayed rows" in lineage
    assert "SHA-256 ab12cd34ef56…, csv, 60 rows read" in lineage
    assert "48 train, 6 validation, 10 test" in lineage and '<span class="alias">spam: 18</span>' in lineage
    assert "12.3 s (training 8.5 s)" in lineage and "cpu · fp32" in lineage
    assert "secret-place" not in html and "/srv/tailor" not in html
    chinese = console.get("/console/models/mail/2?lang=zh").text
    assert "训练 48 行，验证 6 行，测试 10 行" in chinese and "重新训练自" in chinese


def test_the_version_page_offers_the_exports_its_method_has(console, mail, settings):
    html = console.get("/console/models/mail/1").text
    exports = re.search(r'<table id="exports".*?</table>', html, re.S).group(0)
    assert re.findall(r"<td><code>(\w+)</code></td>", exports) == ["onnx"]
    assert re.findall(r'href="([^"]+)" download', exports) == [
        "/v1/models/mail%3A1/export?format=onnx&amp;archive=zip",
        "/v1/models/mail%3A1/export?format=onnx&amp;archive=tar.gz"]
    publish(settings, "mail", METRICS_2, method="lora")
    lora = console.get("/console/models/mail/3").text
    assert re.findall(r"<td><code>(\w+)</code></td>", re.search(r'<table id="exports".*?</table>', lora,
                                                                 re.S).group(0)) == ["hf", "peft", "onnx"]


def test_compare_shows_both_versions_numbers_and_differences(console, mail):
    html = console.get("/console/models/mail/compare?a=1&b=2").text
    assert "<title>mail: version 1 and version 2 · Tailor</title>" in html
    headline = re.search(r'<table id="compare-headline".*?</table>', html, re.S).group(0)
    assert re.findall(r'<tr data-metric="(\w+)">.*?<td class="num">(.*?)</td>\s*<td class="num">(.*?)</td>'
                      r'<td class="num">(.*?)</td>', headline, re.S)[:3] == [
        ("accuracy", "0.8000", "0.9000", '<span class="ok">+0.1000</span>'),
        ("macro_f1", "0.7917", "0.8958", '<span class="ok">+0.1041</span>'),
        ("weighted_f1", "0.8000", "0.9000", '<span class="ok">+0.1000</span>')]
    assert '<tr data-metric="ece"><th scope="row">ECE (lower is better)</th><td class="num">0.1012</td>' in headline
    per_class = re.search(r'<table id="compare-per-class".*?</table>', html, re.S).group(0)
    assert re.findall(r'<tr data-label="([^"]+)">', per_class) == ["&lt;b&gt;ham&lt;/b&gt;", "spam", "eggs"]
    assert '<span class="ok">+0.0758</span>' in per_class and '<span class="ok">+0.1389</span>' in per_class
    assert 'not a label of this version' in per_class
    assert '<form id="paired" class="card" data-a="mail:1" data-b="mail:2"' in html
    assert "B − A" in console.get("/console/models/mail/compare?a=1&b=2&lang=zh").text


def test_another_tenants_model_and_versions_are_404_pages(app, globex, mail):
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_in(client, globex.key)
        for path in ("/console/models/mail", "/console/models/mail/1", "/console/models/mail/compare?a=1&b=2"):
            response = client.get(path)
            assert response.status_code == 404 and "<title>Error 404 · Tailor</title>" in response.text, path
        assert "mail" not in client.get("/console/models").text.split("<main")[1]


def test_a_missing_version_and_bad_queries_are_error_pages(console, mail):
    assert console.get("/console/models/mail/9").status_code == 404
    assert console.get("/console/models/mail/compare?a=1").status_code == 400
    assert console.get("/console/models/mail/compare?a=1&b=2&c=3").status_code == 400


def test_a_paired_comparison_and_an_export_download_with_the_session(console, settings, head_artifact):
    publish_copy(settings, head_artifact, "acme", "tweets")
    publish_copy(settings, head_artifact, "acme", "tweets")
    csrf = {"X-CSRF-Token": console.csrf}
    uploaded = console.post("/v1/files", files={"file": ("eval.csv", SMALL_CSV)}, data={"purpose": "fine-tune"},
                            headers=csrf).json()
    html = console.get("/console/models/tweets/compare?a=1&b=2").text
    assert f'<option value="{uploaded["id"]}">eval.csv ({uploaded["id"]})</option>' in html
    compared = console.post("/v1/models/compare", json={"a": "tweets:1", "b": "tweets:2", "file": uploaded["id"],
                                                        "feedback": True}, headers=csrf)
    assert compared.status_code == 200, compared.text
    section = compared.json()["file"]
    assert (section["rows"], section["verdict"], section["disagreements"]["rows"]) == (36, "no_significant_difference", 0)

    link = re.findall(r'href="([^"]+)" download', console.get("/console/models/tweets/1").text)[0]
    download = console.get(link.replace("&amp;", "&"))
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(download.content)).namelist() == [
        "tweets-v1-onnx/model.onnx", "tweets-v1-onnx/tailor_model.json", "tweets-v1-onnx/tokenizer.json",
        "tweets-v1-onnx/tokenizer_config.json"]
