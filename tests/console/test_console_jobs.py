"""The jobs pages: the list with its statuses and pages, a job with its events, curves, checkpoints and
buttons, cancel through /v1 with the CSRF header, scopes, another tenant's job, escaping and both languages.

No worker runs in the console's app: jobs are created through the API and moved along with the job store's
own methods (claim, finish, add_event, add_checkpoint), as a worker would."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from tailor.jobs.store import FAILED, SUCCEEDED
from tailor.security.keys import TenantStore
from tailor.serve.console.formats import when
from tailor.serve.console.pages import jobs as jobs_page

from api_helpers import SMALL_CSV, upload
from console.conftest import sign_in

JOBS = "/v1/fine_tuning/jobs"
WORKER = "worker-test"


@pytest.fixture
def store(app):
    return app.state.services.jobs


@pytest.fixture
def file_id(console) -> str:
    response = console.post("/v1/files", files={"file": ("tickets.csv", SMALL_CSV)}, data={"purpose": "fine-tune"},
                            headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def create_job(console, file_id: str, **body) -> dict:
    response = console.post(JOBS, json={"model": "minilm-l6", "training_file": file_id, **body},
                            headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 200, response.text
    return response.json()


def finish(store, job: dict, status: str, **outcome) -> None:
    """Claim the oldest queued job (it must be ``job``) and end it as a worker does."""
    assert store.claim(WORKER).id == job["id"]
    assert store.finish(job["id"], WORKER, status, message=f"Job {status}", **outcome)


def rows(html: str) -> dict[str, str]:
    """The list's rows: job id -> the row's HTML."""
    return dict(re.findall(r'<tr data-job-id="([^"]+)"[^>]*>(.*?)</tr>', html, re.S))


def cells(row_html: str) -> dict[str, str]:
    return {name: re.sub(r"\s+", " ", value).strip()
            for name, value in re.findall(r'<td data-cell="(\w+)">(.*?)</td>', row_html, re.S)}


def config_of(html: str, element_id: str) -> dict:
    return json.loads(re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html,
                                re.S).group(1))


def time_html(seconds: int) -> str:
    return (f'<time datetime="{when(seconds)["iso"]}" data-ts="{seconds}">'
            f'{when(seconds)["text"]}</time>')


def event_messages(html: str) -> list[str]:
    return re.findall(r'<li data-event-id="ftevent-\d+" class="event [^"]+">.*?<span class="message">(.*?)</span>',
                      html)


def visible_buttons(html: str) -> list[str]:
    return re.findall(r'<button type="button" data-action="(\w+)" class="\w+">', html)


def test_the_list_shows_the_tenants_jobs_newest_first_with_their_outcome(console, store, file_id, globex, app):
    first = create_job(console, file_id)
    second = create_job(console, file_id, suffix="tickets", method={"tailor": {"method": "lora"}})
    model = f"ft:minilm-l6:acme::{first['id']}"
    finish(store, first, SUCCEEDED, fine_tuned_model=model,
           result={"model": f"{model}:1", "name": model, "version": 1, "method": "head"})
    other = upload(TestClient(app), globex).json()["id"]
    TestClient(app).post(JOBS, headers=globex.headers, json={"model": "minilm-l6", "training_file": other})

    html = console.get("/console/jobs?lang=en").text
    listed = rows(html)
    assert list(listed) == [second["id"], first["id"]]  # newest first; globex's job is not there
    done = store.get("acme", first["id"])
    assert cells(listed[first["id"]]) == {
        "id": f'<a href="/console/jobs/{first["id"]}">{first["id"]}</a>', "model": "minilm-l6",
        "task": "classification", "method": "linear head",
        "status": '<span class="status status-succeeded">succeeded</span>',
        "created": time_html(first["created_at"]), "finished": time_html(int(done.finished_at.timestamp())),
        "result": f'<a href="/console/models/ft%3Aminilm-l6%3Aacme%3A%3A{first["id"]}">{model}</a>'}
    assert cells(listed[second["id"]])["method"] == "LoRA"
    assert cells(listed[second["id"]])["status"] == '<span class="status status-queued">queued</span>'
    assert (cells(listed[second["id"]])["finished"], cells(listed[second["id"]])["result"]) == (
        '<span class="muted">–</span>', "")
    assert f'<tr data-job-id="{second["id"]}" data-status="queued">' in html
    config = config_of(html, "jobs-config")
    assert {k: config[k] for k in ("after", "limit", "changing")} == {
        "after": None, "limit": 20, "changing": ["validating_files", "queued", "running"]}
    assert (config["labels"]["status"]["succeeded"], config["labels"]["method"]["head"]) == ("succeeded", "linear head")
    assert '<script src="/console/static/jobs.js?v=' in html


def test_the_list_pages_with_after(console, file_id, monkeypatch):
    monkeypatch.setattr(jobs_page, "PAGE_SIZE", 2)
    made = [create_job(console, file_id)["id"] for _ in range(3)]
    first = console.get("/console/jobs").text
    assert list(rows(first)) == [made[2], made[1]]
    assert f'<a href="/console/jobs?after={made[1]}" rel="next">Older jobs »</a>' in first
    assert "Newest jobs" not in first
    second = console.get(f"/console/jobs?after={made[1]}").text
    assert list(rows(second)) == [made[0]]
    assert '<a href="/console/jobs">« Newest jobs</a>' in second and "Older jobs" not in second
    assert config_of(second, "jobs-config")["after"] == made[1]


def test_an_empty_list_says_how_to_start(console):
    html = console.get("/console/jobs").text
    assert '<p id="jobs-none">No fine-tuning jobs yet. Upload a file, then start a job from the Fine-tune page.</p>' \
        in html
    assert rows(html) == {}


def test_the_job_page_renders_its_events_checkpoints_and_curves(console, store, file_id):
    job = create_job(console, file_id, seed=7, suffix="tickets")
    store.claim(WORKER)
    store.add_event(job["id"], "Fine-tuning job started")
    store.add_event(job["id"], "Step 2: training loss=0.9000", type="metrics", data={"step": 2, "train_loss": 0.9})
    epoch = {"epoch": 1, "step": 4, "train_loss": 0.7, "valid_loss": 0.8, "valid_macro_f1": 0.5,
             "valid_accuracy": 0.625, "seconds": 1.25}
    store.add_event(job["id"], "Step 4: epoch=1, ...", type="metrics", data=epoch)
    store.add_checkpoint(job["id"], 4, epoch)
    store.add_event(job["id"], "Step 6: training loss=0.6000", type="metrics", data={"step": 6, "train_loss": 0.6})
    later = {**epoch, "epoch": 2, "step": 8, "train_loss": 0.41234567, "valid_loss": 0.5, "valid_macro_f1": 0.75}
    store.add_event(job["id"], "Step 8: epoch=2, ...", type="metrics", data=later)
    store.add_event(job["id"], "Step 8: training loss=0.4000", type="metrics", data={"step": 8, "train_loss": 0.4})
    store.add_checkpoint(job["id"], 8, later)

    html = console.get(f"/console/jobs/{job['id']}?lang=en").text
    assert f"<h1>Job {job['id']}</h1>" in html
    assert '<span id="job-status" class="status status-running" role="status" aria-live="polite">running</span>' in html
    assert event_messages(html) == [
        "Step 8: training loss=0.4000", "Step 8: epoch=2, ...", "Step 6: training loss=0.6000", "Step 4: epoch=1, ...",
        "Step 2: training loss=0.9000", "Fine-tuning job started", "Job queued",
        f"Validated training file: {file_id}"]
    assert '<li data-event-id="ftevent-4" class="event level-info type-metrics">' in html
    config = config_of(html, "job-config")
    assert config["charts"] == [
        {"id": "loss", "title": "Training and validation loss", "xLabel": "step", "yLabel": "loss",
         "empty": "No measurements yet: they appear as training runs.",
         "series": [{"key": "train_loss", "label": "training loss", "points": [[2, 0.9], [4, 0.7], [6, 0.6], [8, 0.4]]},
                    {"key": "valid_loss", "label": "validation loss", "points": [[4, 0.8], [8, 0.5]]}]},
        {"id": "f1", "title": "Validation macro-F1", "xLabel": "step", "yLabel": "macro-F1", "yMin": 0, "yMax": 1,
         "empty": "No measurements yet: they appear as training runs.",
         "series": [{"key": "valid_macro_f1", "label": "validation macro-F1", "points": [[4, 0.5], [8, 0.75]]}]}]
    assert config["job"] == console.get(f"{JOBS}/{job['id']}").json()
    assert config["final"] == ["succeeded", "failed", "cancelled"]
    checkpoints = re.findall(r'<tr><td class="num">(\d+)</td><td><code>([^<]+)</code></td>\s*<td>(.*?)</td>', html)
    assert checkpoints == [
        ("8", f"{job['id']}:ckpt-step-8",
         '<span class="metric">epoch 2</span><span class="metric">training loss 0.4123</span>'
         '<span class="metric">validation loss 0.5</span><span class="metric">validation macro-F1 0.75</span>'
         '<span class="metric">validation accuracy 0.625</span><span class="metric">seconds 1.25</span>'),
        ("4", f"{job['id']}:ckpt-step-4",
         '<span class="metric">epoch 1</span><span class="metric">training loss 0.7</span>'
         '<span class="metric">validation loss 0.8</span><span class="metric">validation macro-F1 0.5</span>'
         '<span class="metric">validation accuracy 0.625</span><span class="metric">seconds 1.25</span>')]
    assert '<p id="checkpoints-none" hidden>' in html
    facts = re.sub(r"\s+", " ", re.search(r'<dl class="facts">(.*?)</dl>', html, re.S).group(1)).strip()
    assert facts == (
        f'<dt>ID</dt><dd><code>{job["id"]}</code></dd> <dt>Base model</dt><dd>minilm-l6</dd> '
        '<dt>Task</dt><dd>classification</dd> <dt>Method</dt> <dd>auto</dd> '
        '<dt>Preset</dt><dd>default</dd> <dt>Hyperparameters</dt> <dd><ul class="plain">'
        '<li><code>batch_size</code> 16</li><li><code>learning_rate_multiplier</code> 1</li>'
        '<li><code>n_epochs</code> 4</li></ul></dd> '
        f'<dt>Training file</dt> <dd><a href="/console/data/{file_id}">{file_id}</a></dd> '
        '<dt>Suffix</dt><dd>tickets</dd> <dt>Seed</dt><dd>7</dd> '
        f'<dt>Created</dt><dd>{time_html(job["created_at"])}</dd> <dt>Finished</dt><dd id="job-finished"><span class="muted">–</span></dd>')
    assert '<script src="/console/static/chart.js?v=' in html and '<script src="/console/static/jobs.js?v=' in html


def test_the_curves_use_every_event_while_the_list_shows_the_newest(console, store, file_id, monkeypatch):
    monkeypatch.setattr(jobs_page, "EVENTS_SHOWN", 3)
    job = create_job(console, file_id)
    for step in range(1, 131):  # more than one page (100) of the API's events
        store.add_event(job["id"], f"Step {step}", type="metrics", data={"step": step, "train_loss": 1 / step})
    html = console.get(f"/console/jobs/{job['id']}").text
    assert event_messages(html) == ["Step 130", "Step 129", "Step 128"]
    assert '<p class="muted small">129 older event(s) not listed.</p>' in html  # 127 steps and 2 of the API's
    points = config_of(html, "job-config")["charts"][0]["series"][0]["points"]
    assert points == [[step, 1 / step] for step in range(1, 131)]


def test_a_chat_job_charts_its_token_accuracy(console, store):
    lines = "".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                             {"role": "assistant", "content": str(2 * i)}]}) + "\n" for i in range(4))
    chat = console.post("/v1/files", files={"file": ("chat.jsonl", lines.encode())}, data={"purpose": "fine-tune"},
                        headers={"X-CSRF-Token": console.csrf}).json()["id"]
    job = create_job(console, chat, model="smollm2-135m-instruct")
    store.add_event(job["id"], "Step 3: ...", type="metrics", data={
        "step": 3, "epoch": 1, "total_steps": 6, "train_loss": 2.5, "train_mean_token_accuracy": 0.4,
        "valid_loss": 2.25, "valid_mean_token_accuracy": 0.45, "seconds": 3.0})
    charts = config_of(console.get(f"/console/jobs/{job['id']}").text, "job-config")["charts"]
    assert [(c["id"], c["title"], [(s["key"], s["points"]) for s in c["series"]]) for c in charts] == [
        ("loss", "Training and validation loss", [("train_loss", [[3, 2.5]]), ("valid_loss", [[3, 2.25]])]),
        ("accuracy", "Token accuracy", [("train_mean_token_accuracy", [[3, 0.4]]),
                                        ("valid_mean_token_accuracy", [[3, 0.45]])])]


def test_a_finished_job_shows_its_model_and_scores_and_no_buttons(console, store, file_id):
    job = create_job(console, file_id)
    model = f"ft:minilm-l6:acme::{job['id']}"
    finish(store, job, SUCCEEDED, fine_tuned_model=model,
           result={"model": f"{model}:1", "name": model, "version": 1, "method": "head",
                   "metrics": {"accuracy": 0.875, "macro_f1": 0.86667, "weighted_f1": None, "roc_auc": None,
                               "ece": 0.05}})
    html = console.get(f"/console/jobs/{job['id']}").text
    assert (f'<p id="job-result">Fine-tuned model: <a href="/console/models/ft%3Aminilm-l6%3Aacme%3A%3A{job["id"]}">'
            f'{model}</a></p>') in html
    assert re.findall(r"<li>([^<]+) <strong>([^<]+)</strong></li>", html) == [
        ("Test macro-F1", "0.8667"), ("Test accuracy", "0.875"), ("Calibration error (ECE)", "0.05")]
    assert '<dd>linear head <span class="muted">(asked for: auto)</span></dd>' in html
    assert visible_buttons(html) == []
    assert config_of(html, "job-config")["job"]["status"] == "succeeded"


def test_cancel_through_the_api_needs_the_csrf_header_and_then_the_page_shows_it(console, file_id):
    job = create_job(console, file_id)
    refused = console.post(f"{JOBS}/{job['id']}/cancel")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"].startswith("missing or wrong X-CSRF-Token header")
    assert console.get(f"{JOBS}/{job['id']}").json()["status"] == "queued"
    cancelled = console.post(f"{JOBS}/{job['id']}/cancel", headers={"X-CSRF-Token": console.csrf})
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    again = console.post(f"{JOBS}/{job['id']}/cancel", headers={"X-CSRF-Token": console.csrf})
    assert (again.status_code, again.json()["error"]["message"]) == (
        409, f"cannot cancel job {job['id']}: its status is cancelled")  # what the page shows beside the buttons
    html = console.get(f"/console/jobs/{job['id']}").text
    assert '<span id="job-status" class="status status-cancelled" role="status" aria-live="polite">cancelled</span>' \
        in html
    assert event_messages(html)[0] == "Job cancelled by the user"
    assert visible_buttons(html) == []
    assert '<dd id="job-finished"><time datetime=' in html


@pytest.mark.parametrize("steps, shown", [
    ((), ["pause", "cancel"]),  # queued
    (("claim",), ["pause", "cancel"]),  # running
    (("pause",), ["resume", "cancel"]),
    (("pause", "resume"), ["pause", "cancel"]),  # queued again
    (("cancel",), []),
])
def test_the_buttons_follow_the_status(console, store, file_id, steps, shown):
    job = create_job(console, file_id)
    for step in steps:
        if step == "claim":
            store.claim(WORKER)
        else:
            assert console.post(f"{JOBS}/{job['id']}/{step}", headers={"X-CSRF-Token": console.csrf}).status_code == 200
    html = console.get(f"/console/jobs/{job['id']}").text
    assert visible_buttons(html) == shown
    hidden = re.findall(r'<button type="button" data-action="(\w+)" class="\w+" hidden>', html)
    assert sorted(hidden + shown) == ["cancel", "pause", "resume"]
    assert '<div id="job-actions" class="actions">' in html and '<p data-error-for="" hidden></p>' in html


def test_a_read_only_key_sees_the_job_but_no_buttons_and_cannot_cancel(app, acme, console, file_id):
    job = create_job(console, file_id)
    _, secret = TenantStore(app.state.services.settings.registry_url).create_key("acme", "viewer", "read")
    with TestClient(app) as reader:
        csrf = sign_in(reader, secret)
        html = reader.get(f"/console/jobs/{job['id']}").text
        assert '<span id="job-status" class="status status-queued"' in html
        assert "job-actions" not in html and "<button type=\"button\" data-action" not in html
        assert config_of(html, "job-config")["actions"] == {}
        refused = reader.post(f"{JOBS}/{job['id']}/cancel", headers={"X-CSRF-Token": csrf})
        assert (refused.status_code, refused.json()["error"]["message"]) == (
            403, "this API key lacks the 'train' scope (it has: read)")
        assert list(rows(reader.get("/console/jobs").text)) == [job["id"]]


def test_another_tenants_job_is_a_404_page(app, console, globex):
    client = TestClient(app)
    other = upload(client, globex).json()["id"]
    job = client.post(JOBS, headers=globex.headers, json={"model": "minilm-l6", "training_file": other}).json()
    response = console.get(f"/console/jobs/{job['id']}")
    assert response.status_code == 404
    assert f'<p class="error" role="alert">fine-tuning job &#39;{job["id"]}&#39; not found</p>' in response.text
    assert job["id"] not in rows(console.get("/console/jobs").text)
    listed_after = console.get(f"/console/jobs?after={job['id']}")
    assert listed_after.status_code == 404


def test_script_in_an_error_and_an_event_is_escaped(console, store, file_id):
    job = create_job(console, file_id)
    attack = "<script>alert('x')</script>"
    store.add_event(job["id"], f"warning: label {attack}", level="warn")
    finish(store, job, FAILED, error={"code": "invalid_training_file", "param": None, "message": f"bad {attack}"})
    html = console.get(f"/console/jobs/{job['id']}").text
    assert attack not in html
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    assert (f'<div class="error-box" id="job-error" role="alert">\n    <strong>The job failed:</strong>\n'
            f'    <p>bad {escaped} <code>invalid_training_file</code></p>') in html
    assert f"warning: label {escaped}" in event_messages(html)
    assert "\\u003cscript\\u003e" in html  # the job's JSON for the script: no "</script>" can end its element early


def test_the_job_page_in_both_languages(console, file_id):
    job = create_job(console, file_id)
    zh = console.get(f"/console/jobs/{job['id']}?lang=zh").text
    assert f"<h1>任务 {job['id']}</h1>" in zh
    assert '<p class="job-status">状态：\n    <span id="job-status" class="status status-queued" role="status" ' \
           'aria-live="polite">排队中</span>' in zh
    buttons = r'data-action="\w+" class="\w+"(?: hidden)?>([^<]+)</button>'
    assert re.findall(buttons, zh) == ["暂停", "继续", "取消任务"]
    assert "<dt>任务类型</dt><dd>文本分类</dd>" in zh and "<figcaption>验证集宏平均 F1</figcaption>" in zh
    assert config_of(zh, "job-config")["labels"]["status"]["paused"] == "已暂停"
    en = console.get(f"/console/jobs/{job['id']}?lang=en").text
    assert re.findall(buttons, en) == ["Pause", "Resume", "Cancel job"]
    assert "<dt>Task</dt><dd>classification</dd>" in en and "<figcaption>Validation macro-F1</figcaption>" in en
    listed = console.get("/console/jobs?lang=zh").text
    assert "<h1>微调任务</h1>" in listed and '<span class="status status-queued">排队中</span>' in listed


def test_every_status_task_method_and_metric_has_words_in_both_languages(console):
    from tailor.serve.console.i18n import catalog

    keys = ([f"status.{s}" for s in jobs_page.STATUSES] + [f"jobs.task.{s}" for s in jobs_page.TASKS]
            + [f"jobs.method.{s}" for s in jobs_page.METHODS] + [f"jobs.metric.{s}" for s in jobs_page.METRICS]
            + [f"jobs.result.{s}" for s in jobs_page.RESULTS])
    assert jobs_page.METHODS == ("auto", "full", "lora", "head", "contrastive", "zero_shot")
    for key in keys:
        assert catalog().text("en", key) and catalog().text("zh", key)
