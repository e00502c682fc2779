"""The console's data pages: the tenant's files with the upload zone and its limit, and a file's data report
rendered with its exact figures, what blocks training first, text and labels escaped, other tenants' files a
404 page, and what a read-only key sees."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from api_helpers import SMALL_CSV, csv_bytes, upload
from console.conftest import sign_in


def send(console, content: bytes = SMALL_CSV, filename: str = "train.csv") -> dict:
    """Upload as the console's script does: the session cookie and the CSRF header."""
    response = console.post("/v1/files", files={"file": (filename, content)}, data={"purpose": "fine-tune"},
                            headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 200, response.text
    return response.json()


def cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each body row's cells of the table ``table_id`` (tags stripped, entities kept)."""
    body = re.search(rf'<table id="{table_id}"[^>]*>.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


DIRTY = csv_bytes(
    [(f"<b>good</b> news number {i}", "<script>alert(1)</script>") for i in range(10)]
    + [(f"bad news number {i}", "neg") for i in range(10)]
    + [("<b>good</b> news number 0", "<script>alert(1)</script>"),  # line 22: an exact duplicate of line 2
       ("", "neg"),  # line 23: empty
       ("<script>steal()</script> mail me at jo@example.com", "neg")])  # line 24: an e-mail


def test_the_list_shows_each_file_with_its_figures_and_the_upload_zone_with_the_limit(console, settings):
    created = send(console)
    chat = send(console, b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n',
                "chat.jsonl")
    html = console.get("/console/data?lang=en").text
    when = {f["id"]: datetime.fromtimestamp(f["created_at"], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            for f in (created, chat)}
    assert cells(html, "files") == [
        ["chat.jsonl", "chat", "1", "—", f"{chat['bytes']} B", when[chat["id"]], chat["id"]],
        ["train.csv", "classification", "36", "3", f"{len(SMALL_CSV) / 1024:.1f} KiB", when[created["id"]],
         created["id"]]]
    assert f'<a href="/console/data/{created["id"]}">train.csv</a>' in html
    assert f'data-max-bytes="{512 * 1024 * 1024}" data-max-mb="512"' in html
    assert "JSONL with “messages”. At most 512 MiB." in html
    assert 'accept=".csv,.tsv,.jsonl,.json,.txt"' in html and '<label for="file">' in html
    assert '<p id="file-error" class="error" data-error-for="file" hidden></p>' in html
    assert '<script src="/console/static/data.js' in html


def test_the_list_in_chinese(console):
    send(console)
    html = console.get("/console/data?lang=zh").text
    assert "上传文件" in html and "将文件拖到此处，或选择文件。" in html and "<td>分类</td>" in html
    assert "最大 512 MiB" in html


def test_the_report_page_renders_the_report_s_exact_figures(console):
    created = send(console)
    report = console.get(f"/v1/files/{created['id']}/report").json()
    html = console.get(f"/console/data/{created['id']}?lang=en").text
    assert "<h1>Data report: train.csv</h1>" in html
    assert '<p class="ok" id="no-blockers">Nothing blocks training.</p>' in html
    assert html.index('id="problems-title"') < html.index('id="summary-title"') < html.index('id="balance-title"')
    assert '<dd id="rows-read">36</dd>' in html and '<dd id="rows-kept">36</dd>' in html
    assert '<dd id="classes">3</dd>' in html
    assert re.findall(r'<dt>(\w+)</dt>\s*<dd><span class="bar" style="width: ([\d.]+)%"></span>'
                      r'<span class="num">([^<]+)</span>', html) == [
        ("bearish", "100.0", "12 (33.3%)"), ("bullish", "100.0", "12 (33.3%)"), ("neutral", "100.0", "12 (33.3%)")]
    chars = report["lengths"]["chars"]
    assert (f"Characters per kept row: mean {chars['mean']}, median {chars['p50']}, 95th percentile {chars['p95']}, "
            f"longest {chars['max']}.") in html
    histogram = report["length_histogram"]
    assert [int(row[1]) for row in cells(html, "histogram")] == histogram["counts"] and sum(histogram["counts"]) == 36
    assert cells(html, "histogram")[0][0] == f"{histogram['edges'][0]}–{histogram['edges'][1] - 1}"
    assert cells(html, "removed") == [["empty text or label", "0"], ["text too long", "0"], ["exact duplicate", "0"],
                                      ["duplicate after normalization", "0"],
                                      ["same text, conflicting labels", "0"], ["also in the evaluation data", "0"]]
    assert cells(html, "pii") == [["e-mail", "0"], ["phone", "0"], ["card number", "0"], ["ID number", "0"],
                                  ["IBAN", "0"], ["Rows with any", "0"]]
    link = f'<a class="button" id="finetune-link" href="/console/finetune?file={created["id"]}">'
    assert link + "Fine-tune on this file</a>" in html


def test_the_report_shows_removed_rows_pii_and_warnings_with_text_and_labels_escaped(console):
    created = send(console, DIRTY, "dirty.csv")
    report = console.get(f"/v1/files/{created['id']}/report").json()
    html = console.get(f"/console/data/{created['id']}?lang=en").text
    assert "<script>alert(1)</script>" not in html and "<script>steal()" not in html and "<b>good</b>" not in html
    assert "<dt>&lt;script&gt;alert(1)&lt;/script&gt;</dt>" in html  # the label in the balance
    assert '<h2 id="removed-title">Rows removed by cleaning (2)</h2>' in html
    assert cells(html, "removed")[:3] == [["empty text or label", "1"], ["text too long", "0"],
                                          ["exact duplicate", "1"]]
    assert "<h3>Examples: exact duplicate</h3>" in html
    duplicate = re.search(r'<table class="examples" data-reason="duplicate_exact">.*?</table>', html, re.S).group(0)
    assert ("<td class=\"num\">22</td><td>&lt;b&gt;good&lt;/b&gt; news number 0</td>"
            "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>") in duplicate
    assert cells(html, "pii")[0] == ["e-mail", "1"] and cells(html, "pii")[-1] == ["Rows with any", "1"]
    warning = "Found personal data in 1 row (e-mail 1); mask or remove it before training."
    assert warning in report["warnings"] and f'<li class="warn">{warning}</li>' in html


def test_what_blocks_training_comes_first(console):
    rows = [(f"text {i}", "a") for i in range(12)] + [(f"text {i}", "b") for i in range(2)]
    created = send(console, csv_bytes(rows), "conflicts.csv")
    html = console.get(f"/console/data/{created['id']}?lang=en").text
    assert ('<ul class="blockers" id="blockers">\n<li class="error">only one class (&#39;a&#39;) in the file&#39;s '
            "rows after cleaning: a classifier needs at least 2 labels</li></ul>") in html
    assert "<li class=\"warn\">Cleaning removed 4 of 14 rows (28.6%); see the reasons under rows removed.</li>" in html
    assert html.index('id="blockers"') < html.index('id="summary-title"')
    assert '<dd id="rows-read">14</dd>' in html and '<dd id="rows-kept">10</dd>' in html
    assert cells(html, "removed")[4] == ["same text, conflicting labels", "4"]


def test_another_tenant_s_file_is_a_404_page(console, app, globex):
    with TestClient(app) as client:
        theirs = upload(client, globex).json()["id"]
    response = console.get(f"/console/data/{theirs}?lang=en")
    assert response.status_code == 404
    assert "<h1>Error 404</h1>" in response.text and f"file &#39;{theirs}&#39; not found" in response.text
    assert console.get("/console/data?lang=en").text.count(theirs) == 0


def test_a_chat_file_has_its_own_report_escaped(console, tmp_path, monkeypatch):
    import functools

    import tailor.data.chat
    from tiny_chat import build_tiny_chat_model

    tiny = build_tiny_chat_model(tmp_path / "tiny")  # the service counts tokens with SmolLM2's tokenizer
    monkeypatch.setattr(tailor.data.chat, "chat_report_for_file",
                        functools.partial(tailor.data.chat.chat_report_for_file, base=str(tiny)))
    line = {"messages": [{"role": "user", "content": "<script>x()</script> hello"},
                         {"role": "assistant", "content": "<i>hi</i>"}]}
    created = send(console, (json.dumps(line) + "\n") * 3, "chat.jsonl")
    report = console.get(f"/v1/files/{created['id']}/report").json()
    html = console.get(f"/console/data/{created['id']}?lang=en").text
    assert "<script>x()" not in html and "<i>hi</i>" not in html
    assert ("<dt>user</dt><dd>&lt;script&gt;x()&lt;/script&gt; hello</dd>"
            "<dt>assistant</dt><dd>&lt;i&gt;hi&lt;/i&gt;</dd>") in html
    assert '<dd id="examples">3</dd>' in html and '<dd id="chat-duplicates">2</dd>' in html
    assert f'<dd id="token-limit">{report["max_length"]}</dd>' in html
    tokens = report["tokens"]
    assert cells(html, "chat-lengths")[0] == ["Tokens per conversation"] + [
        str(tokens[k]) for k in ("min", "p50", "p95", "max", "mean", "total")]
    assert '<li class="warn">only 3 conversations: expect little change from the base model</li>' in html
    assert '<li class="warn">2 duplicate conversations (they are trained on more than once)</li>' in html
    assert f'href="/console/finetune?file={created["id"]}"' in html


def test_a_read_only_key_sees_the_files_but_cannot_upload(app, acme, settings):
    from tailor.security.keys import TenantStore

    _, secret = TenantStore(settings.registry_url).create_key("acme", name="viewer", scopes=["read"])
    with TestClient(app) as admin:
        file_id = upload(admin, acme).json()["id"]
    with TestClient(app, raise_server_exceptions=False) as client:
        csrf = sign_in(client, secret)
        html = client.get("/console/data?lang=en").text
        assert 'id="upload"' not in html and f"/console/data/{file_id}" in html
        assert "Your API key lacks the “train” scope needed here." in html
        report = client.get(f"/console/data/{file_id}?lang=en").text
        assert 'id="finetune-link"' not in report and '<dd id="rows-read">36</dd>' in report
        refused = client.post("/v1/files", files={"file": ("a.csv", SMALL_CSV)}, data={"purpose": "fine-tune"},
                              headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 403 and "train" in refused.json()["error"]["message"]


def test_an_upload_without_the_csrf_header_is_refused(console):
    refused = console.post("/v1/files", files={"file": ("a.csv", SMALL_CSV)}, data={"purpose": "fine-tune"})
    assert refused.status_code == 403
    assert console.get("/v1/files").json()["data"] == []


def test_an_upload_over_the_limit_is_refused_with_the_api_s_message(fresh_home, acme):
    from tailor.serve.app import create_app
    from tailor.settings import Settings

    small = create_app(Settings(home=fresh_home, max_file_mb=0.001))
    with TestClient(small, raise_server_exceptions=False) as client:
        csrf = sign_in(client, acme.key)
        assert 'data-max-bytes="1048" data-max-mb="0.001"' in client.get("/console/data?lang=en").text
        refused = client.post("/v1/files", files={"file": ("big.csv", SMALL_CSV)}, data={"purpose": "fine-tune"},
                              headers={"X-CSRF-Token": csrf})
        error = refused.json()["error"]
        assert refused.status_code == 413 and error["param"] == "file"
        assert error["message"].endswith("over the limit of 0.00 MiB")


def test_the_page_script_shows_errors_beside_the_file_and_never_writes_html(console):
    script = console.get("/console/static/data.js").text
    assert "innerHTML" not in script and 'Tailor.upload("/v1/files"' in script
    assert 'body.append("purpose", "fine-tune")' in script and "file.size > maxBytes" in script
    for key in set(re.findall(r'Tailor\.t\("(js\.data\.[a-z_]+)"', script)):
        assert key in json.loads(re.search(r'<script type="application/json" id="tailor-strings">(.*?)</script>',
                                           console.get("/console/data").text, re.S).group(1))


@pytest.mark.parametrize("lang, text", [("en", "Rows removed by cleaning (0)"), ("zh", "清洗删除的行（0）")])
def test_the_report_in_both_languages(console, lang, text):
    created = send(console)
    assert text in console.get(f"/console/data/{created['id']}?lang={lang}").text
