"""``/v1/fine_tuning/jobs``: request validation (status, message and param), hyperparameter resolution, paging,
and the user's cancel, pause and resume."""

from __future__ import annotations

import json

import pytest

from tailor.jobs.store import JobStore
from tailor.train.config import load_preset

from api_helpers import error_of, upload

JOBS = "/v1/fine_tuning/jobs"


def chat_jsonl(n: int = 3) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "system", "content": "Answer briefly."},
                                            {"role": "user", "content": f"What is {i} + {i}?"},
                                            {"role": "assistant", "content": f"{2 * i}"}]}) + "\n"
                   for i in range(n)).encode()


@pytest.fixture
def file_id(client, acme) -> str:
    return upload(client, acme).json()["id"]


def create(client, tenant, **body):
    return client.post(JOBS, headers=tenant.headers, json=body)


def test_create_job(client, acme, file_id):
    response = create(client, acme, model="minilm-l6", training_file=file_id, suffix="tweets", seed=3,
                      metadata={"team": "risk"})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["id"].startswith("ftjob-")
    assert {k: job[k] for k in ("object", "model", "status", "training_file", "validation_file", "fine_tuned_model",
                                "organization_id", "user_provided_suffix", "seed", "metadata", "task", "error",
                                "result", "finished_at")} == {
        "object": "fine_tuning.job", "model": "minilm-l6", "status": "queued", "training_file": file_id,
        "validation_file": None, "fine_tuned_model": None, "organization_id": "acme",
        "user_provided_suffix": "tweets", "seed": 3, "metadata": {"team": "risk"}, "task": "classification",
        "error": None, "result": None, "finished_at": None}
    preset = load_preset("default")
    assert job["hyperparameters"] == {"n_epochs": preset.epochs, "batch_size": preset.batch_size,
                                      "learning_rate_multiplier": 1.0}
    assert job["method"] == {"type": "supervised", "supervised": {"hyperparameters": job["hyperparameters"]},
                             "tailor": {"method": "auto", "preset": "default"}}
    assert client.get(f"{JOBS}/{job['id']}", headers=acme.headers).json() == job


@pytest.mark.parametrize("body, message, param", [
    ({"model": "bert-base"}, "model 'bert-base' cannot be fine-tuned here; base models are: minilm-l6, me5-small, "
                             "smollm2-135m-instruct, or one of your fine-tuned classifiers", "model"),
    ({"training_file": "file-nope"}, "training_file 'file-nope' not found; upload it with POST /v1/files",
     "training_file"),
    ({"validation_file": "file-nope"}, "validation_file 'file-nope' not found; upload it with POST /v1/files",
     "validation_file"),
    ({"hyperparameters": {"n_epochs": 2}, "method": {"supervised": {"hyperparameters": {"n_epochs": 2}}}},
     "hyperparameters: give hyperparameters either in method.supervised or at the top level, not both",
     "hyperparameters"),
    ({"learning_rate": 0.1}, "learning_rate: unknown field", "learning_rate"),
    ({"method": {"tailor": {"lr": 0.1}}}, "method.tailor.lr: unknown field", "method.tailor.lr"),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs: n_epochs must be between 1 and 50",
     "hyperparameters.n_epochs"),
    ({"method": {"supervised": {"hyperparameters": {"batch_size": 512}}}},
     "method.supervised.hyperparameters.batch_size: batch_size must be between 1 and 256",
     "method.supervised.hyperparameters.batch_size"),
    ({"hyperparameters": {"learning_rate_multiplier": 0}},
     "hyperparameters.learning_rate_multiplier: learning_rate_multiplier must be above 0 and at most 10",
     "hyperparameters.learning_rate_multiplier"),
    ({"suffix": "Tweets"}, "suffix: String should match pattern '^[a-z0-9][a-z0-9._-]{0,39}$'", "suffix"),
    ({"method": {"tailor": {"preset": "nope"}}}, "unknown preset 'nope'; presets are: default, fast, quality", None),
])
def test_create_job_validation(client, acme, file_id, body, message, param):
    error = error_of(create(client, acme, **{"model": "minilm-l6", "training_file": file_id, **body}), 400)
    assert (error["message"], error["param"], error["type"]) == (message, param, "invalid_request_error")
    assert client.get(JOBS, headers=acme.headers).json()["data"] == []


def test_create_job_without_a_body(client, acme):
    error = error_of(client.post(JOBS, headers={**acme.headers, "Content-Type": "application/json"},
                                 content=b"{not json"), 400)
    assert error["message"].startswith("the body is not valid JSON (") and error["code"] == "invalid_value"
    error = error_of(client.post(JOBS, headers=acme.headers, json=["minilm-l6"]), 400)
    assert error["message"] == "the body must be a JSON object"
    error = error_of(create(client, acme, model="minilm-l6"), 400)
    assert (error["message"], error["param"]) == ("training_file: required unless method.tailor.feedback is true "
                                                  "(a retrain of a fine-tuned classifier from its feedback alone)",
                                                  "training_file")


def test_chat_file_for_an_encoder_base(client, acme):
    uploaded = upload(client, acme, chat_jsonl(), filename="chat.jsonl").json()
    assert (uploaded["kind"], uploaded["summary"]["examples"], uploaded["summary"]["format"]) == ("chat", 3, "chat")
    error = error_of(create(client, acme, model="minilm-l6", training_file=uploaded["id"]), 400)
    assert error["message"] == (f"training_file {uploaded['id']} holds chat data, but a classification model "
                                "trains on text/label rows (CSV, TSV or JSONL)")
    assert (error["param"], error["code"]) == ("training_file", "invalid_file")


def test_text_label_file_for_a_chat_base(client, acme, file_id):
    error = error_of(create(client, acme, model="smollm2-135m-instruct", training_file=file_id), 400)
    assert error["message"] == (f"training_file {file_id} holds text-label data, but a chat model trains on chat "
                                "examples (JSONL with messages)")


def test_single_label_file_is_refused_at_upload(client, acme):
    response = upload(client, acme, b"text,label\n" + b"".join(b"row %d,up\n" % i for i in range(5)))
    error = error_of(response, 400)  # the upload itself says so (tests/serve/test_files.py): no job is possible
    assert error["message"] == "train.csv: only one class ('up') in the file: a classifier needs at least 2 labels"


def test_top_level_hyperparameters_are_resolved(client, acme, settings, file_id):
    job = create(client, acme, model="minilm-l6", training_file=file_id,
                 hyperparameters={"n_epochs": 3, "learning_rate_multiplier": 2}).json()
    preset = load_preset("default")
    assert job["hyperparameters"] == {"n_epochs": 3, "batch_size": preset.batch_size, "learning_rate_multiplier": 2.0}
    stored = JobStore(settings.registry_url).get("acme", job["id"])
    assert stored.request["overrides"] == {"method": "auto", "preset": "default", "epochs": 3,
                                           "batch_size": preset.batch_size, "lr": pytest.approx(preset.lr * 2)}


def test_learning_rate_multiplier_scales_the_lora_rate(client, acme, settings, file_id):
    job = create(client, acme, model="minilm-l6", training_file=file_id,
                 method={"type": "supervised", "supervised": {"hyperparameters": {"learning_rate_multiplier": 0.5,
                                                                                  "batch_size": 8}},
                         "tailor": {"method": "lora", "preset": "fast"}}).json()
    preset = load_preset("fast")
    overrides = JobStore(settings.registry_url).get("acme", job["id"]).request["overrides"]
    assert overrides == {"method": "lora", "preset": "fast", "epochs": preset.epochs, "batch_size": 8,
                         "lora_lr": pytest.approx(preset.lora_lr * 0.5)}
    assert job["method"]["tailor"] == {"method": "lora", "preset": "fast"}


def test_list_jobs_with_paging(client, acme, globex, file_id):
    ids = [create(client, acme, model="minilm-l6", training_file=file_id).json()["id"] for _ in range(3)]
    page = client.get(JOBS, headers=acme.headers, params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == [ids[2], ids[1]] and page["has_more"] is True
    rest = client.get(JOBS, headers=acme.headers, params={"limit": 2, "after": ids[1]}).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert client.get(JOBS, headers=globex.headers).json() == {"object": "list", "data": [], "has_more": False}


def test_cancel_then_cancel_again(client, acme, file_id):
    job_id = create(client, acme, model="minilm-l6", training_file=file_id).json()["id"]
    cancelled = client.post(f"{JOBS}/{job_id}/cancel", headers=acme.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"] is not None
    error = error_of(client.post(f"{JOBS}/{job_id}/cancel", headers=acme.headers), 409)
    assert (error["message"], error["code"]) == (f"cannot cancel job {job_id}: its status is cancelled", "conflict")
    events = client.get(f"{JOBS}/{job_id}/events", headers=acme.headers).json()
    assert [e["message"] for e in events["data"]] == ["Job cancelled by the user", "Job queued",
                                                      f"Validated training file: {file_id}"]
    assert events["has_more"] is False
    assert error_of(client.post(f"{JOBS}/{job_id}/pause", headers=acme.headers), 409)["message"] == (
        f"cannot pause job {job_id}: its status is cancelled")


def test_pause_and_resume(client, acme, file_id):
    job_id = create(client, acme, model="minilm-l6", training_file=file_id).json()["id"]
    error = error_of(client.post(f"{JOBS}/{job_id}/resume", headers=acme.headers), 409)
    assert error["message"] == f"cannot resume job {job_id}: its status is queued"
    assert client.post(f"{JOBS}/{job_id}/pause", headers=acme.headers).json()["status"] == "paused"
    assert error_of(client.post(f"{JOBS}/{job_id}/pause", headers=acme.headers), 409)["message"] == (
        f"cannot pause job {job_id}: its status is paused")
    assert client.post(f"{JOBS}/{job_id}/resume", headers=acme.headers).json()["status"] == "queued"
    events = client.get(f"{JOBS}/{job_id}/events", headers=acme.headers, params={"limit": 2}).json()
    assert [e["message"] for e in events["data"]] == [
        "Job resumed by the user; it continues from its last checkpoint", "Job paused by the user"]
    assert events["has_more"] is True
    older = client.get(f"{JOBS}/{job_id}/events", headers=acme.headers,
                       params={"limit": 2, "after": events["data"][-1]["id"]}).json()
    assert [e["message"] for e in older["data"]] == ["Job queued", f"Validated training file: {file_id}"]


def test_checkpoints_of_a_new_job_are_empty(client, acme, file_id):
    job_id = create(client, acme, model="minilm-l6", training_file=file_id).json()["id"]
    assert client.get(f"{JOBS}/{job_id}/checkpoints", headers=acme.headers).json() == {
        "object": "list", "data": [], "has_more": False, "first_id": None, "last_id": None}


def test_unknown_event_cursor(client, acme, file_id):
    job_id = create(client, acme, model="minilm-l6", training_file=file_id).json()["id"]
    error = error_of(client.get(f"{JOBS}/{job_id}/events", headers=acme.headers, params={"after": "bogus"}), 404)
    assert error["message"] == "'bogus' not found"


def test_unlabelled_files_upload_as_texts(client, acme):
    txt = upload(client, acme, b"first text\nsecond text\n\nthird\n", filename="pool.txt").json()
    assert (txt["kind"], txt["summary"]) == ("texts", {"format": "txt", "rows": 3, "text_column": None,
                                                       "empty_rows": 1})
    one_column = upload(client, acme, b"text\nfirst text\nsecond text\n", filename="pool.csv").json()
    assert (one_column["kind"], one_column["summary"]) == ("texts", {"format": "csv", "rows": 2,
                                                                     "text_column": "text", "empty_rows": 0})
    error = error_of(upload(client, acme, b"id,score\n1,2\n", filename="numbers.csv"), 400)
    assert error["message"] == ("numbers.csv: cannot tell which columns hold the text and the label (columns: id, "
                                "score); pass --text-col and --label-col")


def test_unlabeled_file_of_a_job_is_checked(client, acme, file_id):
    texts_id = upload(client, acme, b"first text\nsecond text\n", filename="pool.txt").json()["id"]
    chat_id = upload(client, acme, chat_jsonl(), filename="chat.jsonl").json()["id"]
    param = "method.tailor.unlabeled_file"
    cases = [({"training_file": file_id, "unlabeled": "file-nope"},
              f"{param} 'file-nope' not found; upload it with POST /v1/files", param),
             ({"training_file": file_id, "unlabeled": chat_id},
              f"{param} {chat_id} holds chat data; self-training reads texts (a .txt file, or CSV, TSV or JSONL with a "
              "text column)", param),
             ({"training_file": texts_id, "unlabeled": None},
              f"training_file {texts_id} holds unlabelled texts (no label column); a model trains on labelled rows: "
              "give it as method.tailor.unlabeled_file to learn from it by self-training", "training_file")]
    for case, message, where in cases:
        tailor_options = {"unlabeled_file": case["unlabeled"]} if case["unlabeled"] else {}
        error = error_of(create(client, acme, model="minilm-l6", training_file=case["training_file"],
                                method={"tailor": tailor_options}), 400)
        assert (error["message"], error["param"]) == (message, where)
    chat_job = error_of(create(client, acme, model="smollm2-135m-instruct", training_file=chat_id,
                               method={"tailor": {"unlabeled_file": texts_id}}), 400)
    assert chat_job["message"] == ("unlabeled_file is for classification jobs (self-training on unlabelled texts); a "
                                   "chat model learns from its conversations only")
    chat_prior = error_of(create(client, acme, model="smollm2-135m-instruct", training_file=chat_id,
                                 method={"tailor": {"label_prior": 4}}), 400)
    assert chat_prior["message"] == ("label_prior is for classification jobs (a new head starts from the label "
                                     "names); a chat model has no labels")
    negative = error_of(create(client, acme, model="minilm-l6", training_file=file_id,
                               method={"tailor": {"label_prior": -1}}), 400)
    assert negative["param"] == "method.tailor.label_prior"
    assert client.get(JOBS, headers=acme.headers).json()["data"] == []
    job = create(client, acme, model="minilm-l6", training_file=file_id, method={"tailor": {"unlabeled_file":
                                                                                             texts_id}}).json()
    assert job["method"]["tailor"]["unlabeled_file"] == texts_id


def zero_shot(labels, **options) -> dict:
    return {"tailor": {"method": "zero_shot", "labels": labels, **options}}


def test_create_zero_shot_job(client, acme):
    labels = ["billing", {"name": "refund", "description": "money back"}, {"name": "cancellation"}]
    response = create(client, acme, model="minilm-l6", suffix="triage", method=zero_shot(labels))
    assert response.status_code == 200, response.text
    job = response.json()
    assert {k: job[k] for k in ("status", "training_file", "validation_file", "task", "hyperparameters")} == {
        "status": "queued", "training_file": None, "validation_file": None, "task": "classification",
        "hyperparameters": {}}
    assert job["method"] == {"type": "supervised", "supervised": {"hyperparameters": {}}, "tailor": {
        "method": "zero_shot", "preset": "default",
        "labels": [{"name": "billing"}, {"name": "refund", "description": "money back"}, {"name": "cancellation"}]}}
    events = client.get(f"{JOBS}/{job['id']}/events", headers=acme.headers).json()["data"]
    assert [e["message"] for e in events] == ["Job queued", "No training file: a zero-shot classifier from 3 labels"]


@pytest.mark.parametrize("body, message, param", [
    ({"method": zero_shot(["billing"])},
     "method.tailor.labels: give at least 2 labels to choose between (got 1: 'billing')", "method.tailor.labels"),
    ({"method": zero_shot([])}, "method.tailor.labels: give at least 2 labels to choose between (got none)",
     "method.tailor.labels"),
    ({"method": zero_shot(["billing", {"name": "refund"}, "billing"])},
     "method.tailor.labels: label 'billing' is given twice", "method.tailor.labels"),
    ({"method": zero_shot(["card_arrival", "card arrival"])},
     "method.tailor.labels: labels 'card_arrival' and 'card arrival' read the same ('card arrival'): rename one, "
     "or describe them", "method.tailor.labels"),
    ({"method": zero_shot(["billing", {"name": "refund", "description": "  "}])},
     "method.tailor.labels.1.description: the description is empty: leave it out, or say in words what the label "
     "means", "method.tailor.labels.1.description"),
    ({"method": zero_shot(["billing", {"name": "", "description": "money back"}])},
     "method.tailor.labels.1.name: String should have at least 1 character", "method.tailor.labels.1.name"),
    ({"method": zero_shot(["billing", {"label": "refund"}])},
     "method.tailor.labels.1.name: Field required (and 1 more problem)", "method.tailor.labels.1.name"),
    ({"method": {"tailor": {"method": "zero_shot"}}},
     "method.tailor.labels: required for a zero_shot job: the label names, or {name, description} objects",
     "method.tailor.labels"),
    ({"method": {"tailor": {"method": "head", "labels": ["billing", "refund"]}}},
     'method.tailor.labels: labels are for a zero_shot job (method.tailor.method = "zero_shot"); a trained model '
     "learns its labels from the training file", "method.tailor.labels"),
    ({"model": "bert-base", "method": zero_shot(["billing", "refund"])},
     "model 'bert-base': a zero_shot job embeds its labels with a base model; base models are: minilm-l6, "
     "me5-small, smollm2-135m-instruct", "model"),
    ({"model": "smollm2-135m-instruct", "method": zero_shot(["billing", "refund"])},
     "method.tailor.method: a zero_shot classifier needs an encoder base; smollm2-135m-instruct is a chat model",
     "method.tailor.method"),
    ({"hyperparameters": {"n_epochs": 3}, "method": zero_shot(["billing", "refund"])},
     "hyperparameters.n_epochs: a zero_shot job trains nothing; leave it out or auto", "hyperparameters.n_epochs"),
    ({"method": {**zero_shot(["billing", "refund"]), "supervised": {"hyperparameters": {"batch_size": 8}}}},
     "method.supervised.hyperparameters.batch_size: a zero_shot job trains nothing; leave it out or auto",
     "method.supervised.hyperparameters.batch_size"),
    ({"method": zero_shot(["billing", "refund"], time_budget_s=60)},
     "method.tailor.time_budget_s: a zero_shot job trains nothing; leave it out", "method.tailor.time_budget_s"),
    ({"method": zero_shot(["billing", "refund"], preset="fast")},
     "method.tailor.preset: a zero_shot job trains nothing; leave it out", "method.tailor.preset"),
    ({"method": zero_shot(["billing", "refund"], feedback=True)},
     "method.tailor.feedback: a zero_shot job trains nothing; leave it out", "method.tailor.feedback"),
    ({"method": zero_shot(["billing", "refund"], label_prior=4)},
     "method.tailor.label_prior: a zero_shot job trains nothing; leave it out", "method.tailor.label_prior"),
])
def test_zero_shot_job_validation(client, acme, body, message, param):
    error = error_of(create(client, acme, **{"model": "minilm-l6", **body}), 400)
    assert (error["message"], error["param"], error["type"]) == (message, param, "invalid_request_error")
    assert client.get(JOBS, headers=acme.headers).json()["data"] == []


def test_zero_shot_job_files(client, acme, file_id):
    texts_id = upload(client, acme, b"first text\nsecond text\n", filename="pool.txt").json()["id"]
    method = zero_shot(["billing", "refund"])
    cases = [({"training_file": file_id}, "training_file: a zero_shot job trains nothing; leave it out, give the "
              "labels in method.tailor.labels and, to score the model, a validation_file", "training_file"),
             ({"validation_file": file_id}, f"validation_file {file_id} has no row of the job's labels (billing, "
              "refund); its labels are: bearish, bullish, neutral", "validation_file"),
             ({"method": zero_shot(["billing", "refund"], unlabeled_file=texts_id)},
              "method.tailor.unlabeled_file: a zero_shot job trains nothing; leave it out",
              "method.tailor.unlabeled_file")]
    for case, message, param in cases:
        error = error_of(create(client, acme, **{"model": "minilm-l6", "method": method, **case}), 400)
        assert (error["message"], error["param"]) == (message, param)
    assert client.get(JOBS, headers=acme.headers).json()["data"] == []
    scored = create(client, acme, model="minilm-l6", validation_file=file_id,
                    method=zero_shot(["bearish", "bullish", "neutral"], text_column="text")).json()
    assert (scored["validation_file"], scored["method"]["tailor"]["text_column"]) == (file_id, "text")
    error = error_of(client.post(f"{JOBS}/estimate", headers=acme.headers,
                                 json={"model": "minilm-l6", "method": method}), 400)
    assert (error["message"], error["param"]) == ("method.tailor.method: a zero_shot job trains nothing, so there "
                                                  "is nothing to estimate", "method.tailor.method")
