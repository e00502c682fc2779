"""The console's fine-tune page: the form's files, bases, methods and defaults (a chat file offers chat bases
and LoRA only), the error places for every field the API names, another tenant's file a 404 page, the
estimate and job routes its script calls, and a read-only key's disabled form."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from api_helpers import SMALL_CSV, upload
from console.conftest import sign_in

CHAT = (json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
        + "\n").encode()


def send(console, content: bytes = SMALL_CSV, filename: str = "train.csv") -> str:
    response = console.post("/v1/files", files={"file": (filename, content)}, data={"purpose": "fine-tune"},
                            headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def options(html: str, select_id: str) -> list[tuple[str, str]]:
    """``(value, attributes after the value)`` of each option of the select ``select_id``."""
    body = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', html, re.S).group(1)
    return re.findall(r'<option value="([^"]*)"([^>]*)>', body)


def test_the_form_preselects_the_file_and_offers_classifier_bases_and_every_method(console):
    older = send(console, SMALL_CSV, "older.csv")
    chat = send(console, CHAT, "chat.jsonl")
    file_id = send(console)
    html = console.get(f"/console/finetune?file={older}&lang=en").text
    assert options(html, "training_file") == [(file_id, ' data-task="classification"'),
                                              (chat, ' data-task="chat"'),
                                              (older, ' data-task="classification" selected')]
    assert options(html, "validation_file") == [("", ""), (file_id, ' data-task="classification"'),
                                                (chat, ' data-task="chat" hidden disabled'),
                                                (older, ' data-task="classification" hidden disabled')]
    assert [v for v, _ in options(html, "model")] == ["minilm-l6", "me5-small"]
    assert re.findall(r'<option value="(\w+)">([^<]+)</option>', re.search(
        r'<select id="method".*?</select>', html, re.S).group(0)) == [
        ("auto", "auto (chosen from your data)"), ("full", "full fine-tuning"), ("lora", "LoRA"),
        ("head", "linear head on the frozen encoder"), ("contrastive", "contrastive few-shot (SetFit&#39;s recipe)")]
    assert 'placeholder="default: 4"' in html and 'placeholder="default: 16"' in html  # the default preset's
    assert "×1 is a learning rate of 0.0001 for full fine-tuning and 0.001 for LoRA" in html
    assert 'data-describes="model">all-MiniLM-L6-v2: 6-layer BERT encoder' in html


def test_a_chat_file_offers_chat_bases_and_lora_only(console):
    send(console)
    chat = send(console, CHAT, "chat.jsonl")
    html = console.get(f"/console/finetune?file={chat}&lang=en").text
    assert [v for v, _ in options(html, "model")] == ["smollm2-135m-instruct"]
    assert [v for v, _ in options(html, "method")] == ["lora"]
    assert 'placeholder="default: 2"' in html and "×1 is a learning rate of 0.0002 for LoRA." in html
    assert all("hidden disabled" in attrs for value, attrs in options(html, "validation_file") if value)
    catalog = json.loads(re.search(r'<script type="application/json" id="finetune-catalog">(.*?)</script>', html,
                                   re.S).group(1))
    assert [b["id"] for b in catalog["chat"]["bases"]] == ["smollm2-135m-instruct"]
    assert [b["id"] for b in catalog["classification"]["bases"]] == ["minilm-l6", "me5-small"]
    assert catalog["classification"]["defaults"] == {"n_epochs": 4, "batch_size": 16,
                                                     "learning_rate": {"auto": 0.0001, "full": 0.0001,
                                                                       "lora": 0.001, "head": 0.0001,
                                                                       "contrastive": 5e-05}}


def test_every_field_the_api_names_has_its_error_place_and_control(console):
    file_id = send(console)
    html = console.get(f"/console/finetune?file={file_id}&lang=en").text
    for param in ("training_file", "validation_file", "model", "method.tailor.method", "hyperparameters.n_epochs",
                  "hyperparameters.batch_size", "hyperparameters.learning_rate_multiplier", "suffix", ""):
        assert f'data-error-for="{param}"' in html
        if param:
            assert f'name="{param}"' in html
    for control in ("training_file", "validation_file", "model", "method", "n_epochs", "batch_size",
                    "learning_rate_multiplier", "suffix"):
        assert f'<label for="{control}">' in html
    # What the page's script sends, refused by the API with the param the page has a place for.
    headers = {"X-CSRF-Token": console.csrf}
    body = {"model": "minilm-l6", "training_file": file_id, "method": {"type": "supervised",
                                                                      "tailor": {"method": "auto"}}}
    refused = console.post("/v1/fine_tuning/jobs", headers=headers,
                           json={**body, "hyperparameters": {"n_epochs": 0, "batch_size": "auto",
                                                             "learning_rate_multiplier": "auto"}})
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "hyperparameters.n_epochs")
    missing = console.post("/v1/fine_tuning/jobs", headers=headers, json={**body, "training_file": "file-nope"})
    assert missing.json()["error"]["param"] == "training_file"
    created = console.post("/v1/fine_tuning/jobs", headers=headers, json={**body, "suffix": "tweets"})
    assert created.status_code == 200 and created.json()["user_provided_suffix"] == "tweets"
    assert console.post("/v1/fine_tuning/jobs", json=body).status_code == 403  # no CSRF header


def test_the_estimate_the_page_asks_for(console, monkeypatch):
    import tailor.train.job

    file_id = send(console)
    seen = {}

    def fake(path, **options):
        seen.update(options)
        stages = {"data": 0.5, "train": 10.0, "validation": 1.0, "test": 0.5, "gate": 2.0, "save": 0.5}
        return {"task": "classification", "base_model": "minilm-l6", "base_reason": "chosen by the user",
                "method": "head", "method_reason": "r", "auto_method": "head", "auto_reason": "r",
                "estimates": {"full": {"method": "full", "total_s": 14.5, "stages": stages, "epochs": 3, "trials": 1}},
                "rows": {"train": 30, "validation": 3, "test": 3}, "labels": 3}

    monkeypatch.setattr(tailor.train.job, "estimate_classification_job", fake)
    body = {"model": "minilm-l6", "training_file": file_id, "method": {"type": "supervised",
                                                                      "tailor": {"method": "auto"}},
            "hyperparameters": {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": "auto"}}
    response = console.post("/v1/fine_tuning/jobs/estimate", headers={"X-CSRF-Token": console.csrf}, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["estimates"]["full"]["total_s"] == 14.5
    assert (seen["base"], seen["epochs"], seen["batch_size"], seen["method"]) == ("minilm-l6", 3, 16, "auto")
    assert console.post("/v1/fine_tuning/jobs/estimate", json=body).status_code == 403
    script = console.get("/console/static/finetune.js").text
    assert '"/v1/fine_tuning/jobs/estimate"' in script
    assert 'Tailor.api("POST", "/v1/fine_tuning/jobs", body())' in script
    assert 'location.assign("/console/jobs/" + encodeURIComponent(job.id))' in script and "innerHTML" not in script
    strings = json.loads(re.search(r'<script type="application/json" id="tailor-strings">(.*?)</script>',
                                   console.get("/console/finetune").text, re.S).group(1))
    used = set(re.findall(r'"(js\.finetune\.[a-z_.]*[a-z_])"', script))
    used |= {f"js.finetune.method.{m}" for m in ("auto", "full", "lora", "head", "contrastive")}
    used |= {f"js.finetune.{p}.{t}" for p in ("method_help", "lr_help") for t in ("classification", "chat")}
    assert used - set(strings) == set()


def test_another_tenant_s_file_in_the_url_is_a_404_page(console, app, globex):
    with TestClient(app) as client:
        theirs = upload(client, globex).json()["id"]
    response = console.get(f"/console/finetune?file={theirs}&lang=en")
    assert response.status_code == 404 and f"file &#39;{theirs}&#39; not found" in response.text


def test_the_page_in_chinese(console):
    file_id = send(console)
    html = console.get(f"/console/finetune?file={file_id}&lang=zh").text
    assert "<h1>微调</h1>" in html and "开始微调" in html and "全参数微调" in html
    assert 'placeholder="默认：4"' in html and "倍数为 1 时，全参数微调的学习率为 0.0001" in html


def test_without_files_the_form_says_to_upload_first(console):
    html = console.get("/console/finetune?lang=en").text
    assert "You have no training file yet." in html and "<fieldset disabled>" in html


def test_a_read_only_key_sees_the_form_disabled(app, acme, settings):
    from tailor.security.keys import TenantStore

    _, secret = TenantStore(settings.registry_url).create_key("acme", name="viewer", scopes=["read"])
    with TestClient(app) as admin:
        file_id = upload(admin, acme).json()["id"]
    with TestClient(app, raise_server_exceptions=False) as client:
        csrf = sign_in(client, secret)
        html = client.get(f"/console/finetune?file={file_id}&lang=en").text
        assert 'id="no-scope">Your API key lacks the “train” scope needed here.</p>' in html
        assert "<fieldset disabled>" in html
        refused = client.post("/v1/fine_tuning/jobs", headers={"X-CSRF-Token": csrf},
                              json={"model": "minilm-l6", "training_file": file_id})
        assert refused.status_code == 403
