"""``POST /v1/fine_tuning/jobs/estimate``: a job's time per method and auto's choice before it is created, the
base's speed probed once and then read from the storage root's cache, and the same refusals as job creation."""

from __future__ import annotations

import json
import re

import pytest

from api_helpers import Tenant, csv_bytes, error_of, upload

ESTIMATE = "/v1/fine_tuning/jobs/estimate"


def chat_jsonl(n: int = 3) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                            {"role": "assistant", "content": f"{2 * i}"}]}) + "\n"
                   for i in range(n)).encode()


@pytest.fixture
def file_id(client, acme) -> str:
    return upload(client, acme).json()["id"]


def estimate(client, tenant, **body):
    return client.post(ESTIMATE, headers=tenant.headers, json=body)


def test_an_estimate_gives_every_method_and_auto_s_choice_and_caches_the_base_s_speed(client, acme, file_id,
                                                                                        settings, monkeypatch):
    response = estimate(client, acme, model="minilm-l6", training_file=file_id,
                        hyperparameters={"n_epochs": 2, "batch_size": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("object", "model", "task", "method", "auto_method", "rows", "labels",
                                 "hyperparameters")} == {
        "object": "fine_tuning.job.estimate", "model": "minilm-l6", "task": "classification",
        "method": "contrastive", "auto_method": "contrastive", "rows": {"train": 30, "validation": 3, "test": 3},
        "labels": 3, "hyperparameters": {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 1.0}}
    assert body["auto_reason"] == body["method_reason"]
    assert re.fullmatch(r"few examples per class \(median 10 < 30\): the encoder tuned contrastively on pairs of the "
                        r"labels, then a linear head \(estimated (\d+m)?\d+s of training here; \+2\.6 to \+3\.5 "
                        r"macro-F1 over a frozen encoder's head at 8 per class\)", body["auto_reason"])
    assert list(body["estimates"]) == ["full", "lora", "head", "contrastive"]
    for method, found in body["estimates"].items():
        assert found["method"] == method and found["trials"] == 1
        assert found["total_s"] == pytest.approx(sum(found["stages"].values()), abs=0.11)
        assert found["total_s"] > 0 and found["stages"]["train"] > 0
    assert list(body["estimates"]["full"]["stages"]) == ["data", "train", "validation", "test", "explain", "gate",
                                                             "save"]
    assert list(body["estimates"]["head"]["stages"]) == ["data", "train", "test", "explain", "gate", "save"]
    assert (body["estimates"]["full"]["epochs"], body["estimates"]["head"]["epochs"]) == (2, 300)
    speeds = json.loads((settings.home / "cache" / "speed.json").read_text())["entries"]
    assert [key.split("|")[0] for key in speeds] == ["minilm-l6"] and "|batch=8|" in next(iter(speeds))

    import tailor.models.classifier

    def no_probe(*args, **kwargs):
        raise AssertionError("the base was loaded again")

    monkeypatch.setattr(tailor.models.classifier, "build_model", no_probe)
    again = estimate(client, acme, model="minilm-l6", training_file=file_id, method={"tailor": {"method": "lora"}},
                     hyperparameters={"n_epochs": 2, "batch_size": 8})
    assert again.status_code == 200, again.text
    assert (again.json()["method"], again.json()["method_reason"], again.json()["auto_method"]) == (
        "lora", "chosen by the user", "contrastive")
    assert again.json()["estimates"]["lora"]["stages"]["train"] == body["estimates"]["lora"]["stages"]["train"]


@pytest.mark.parametrize("body, message, param", [
    ({"model": "minilm-l6"}, "training_file: required for an estimate", "training_file"),
    ({"model": "bert-base", "training_file": "F"}, "model 'bert-base': estimates are for the catalog's base models "
                                                    "(minilm-l6, me5-small, smollm2-135m-instruct)", "model"),
    ({"model": "minilm-l6", "training_file": "file-nope"},
     "training_file 'file-nope' not found; upload it with POST /v1/files", "training_file"),
    ({"model": "minilm-l6", "training_file": "F", "validation_file": "file-nope"},
     "validation_file 'file-nope' not found; upload it with POST /v1/files", "validation_file"),
    ({"model": "minilm-l6", "training_file": "F", "hyperparameters": {"n_epochs": 0}},
     "hyperparameters.n_epochs: n_epochs must be between 1 and 50", "hyperparameters.n_epochs"),
    ({"model": "smollm2-135m-instruct", "training_file": "F"},
     "training_file F holds text-label data, but a chat model trains on chat examples (JSONL with messages)",
     "training_file"),
])
def test_an_estimate_refuses_what_job_creation_refuses_naming_the_field(client, acme, file_id, body, message, param):
    body = {k: file_id if v == "F" else v for k, v in body.items()}
    error = error_of(estimate(client, acme, **body), 400)
    assert (error["message"], error["param"]) == (message.replace("F holds", f"{file_id} holds"), param)


def test_an_estimate_of_another_tenant_s_file_is_not_found(client, acme, globex, file_id):
    error = error_of(estimate(client, globex, model="minilm-l6", training_file=file_id), 400)
    assert (error["message"], error["param"]) == (
        f"training_file {file_id!r} not found; upload it with POST /v1/files", "training_file")


def test_a_chat_file_is_estimated_for_chat_bases_only(client, acme):
    chat_id = upload(client, acme, chat_jsonl(), filename="chat.jsonl").json()["id"]
    error = error_of(estimate(client, acme, model="minilm-l6", training_file=chat_id), 400)
    assert error["message"] == (f"training_file {chat_id} holds chat data, but a classification model trains on "
                                "text/label rows (CSV, TSV or JSONL)")


def test_an_estimate_needs_the_train_scope(client, acme, file_id, settings):
    from tailor.security.keys import TenantStore

    _, secret = TenantStore(settings.registry_url).create_key("acme", name="viewer", scopes=["read"])
    error = error_of(estimate(client, Tenant("acme", secret), model="minilm-l6", training_file=file_id), 403)
    assert "train" in error["message"]


def test_data_that_cannot_train_is_refused_beside_the_training_file(client, acme):
    # Two labels on upload, but every row of one of them repeats a row of the other: cleaning leaves one class.
    rows = [(f"text {i}", "a") for i in range(12)] + [(f"text {i}", "b") for i in range(2)]
    file_id = upload(client, acme, csv_bytes(rows)).json()["id"]
    error = error_of(estimate(client, acme, model="minilm-l6", training_file=file_id), 400)
    assert error["param"] == "training_file" and error["code"] == "invalid_file"
    assert error["message"].startswith(f"training_file {file_id}: ")


def test_an_unlabeled_file_adds_self_training_s_rounds_to_the_estimate(client, acme, file_id):
    pool = "".join(f"an unlabelled sentence number {i} about accounts and cards\n" for i in range(40)).encode()
    pool_id = upload(client, acme, pool, filename="pool.txt").json()["id"]
    plain = estimate(client, acme, model="minilm-l6", training_file=file_id, seed=3)
    with_pool = estimate(client, acme, model="minilm-l6", training_file=file_id, seed=3,
                         method={"tailor": {"unlabeled_file": pool_id}})
    assert plain.status_code == with_pool.status_code == 200, with_pool.text
    for method, found in with_pool.json()["estimates"].items():
        before = plain.json()["estimates"][method]["stages"]
        stages = found["stages"]
        assert list(stages) == [*[k for k in before if k not in ("test", "explain", "gate", "save")],
                                "self_training", "test", "explain", "gate", "save"]
        assert stages["self_training"] > 0
        assert {k: v for k, v in stages.items() if k not in ("self_training", "data")} == {
            k: v for k, v in before.items() if k != "data"}
    chat_id = upload(client, acme, chat_jsonl(), filename="chat.jsonl").json()["id"]
    error = error_of(estimate(client, acme, model="minilm-l6", training_file=file_id,
                              method={"tailor": {"unlabeled_file": chat_id}}), 400)
    assert error["param"] == "method.tailor.unlabeled_file"


def test_augmented_copies_join_the_training_work_but_not_the_rows_or_auto_s_judgement(client, acme, file_id):
    plain = estimate(client, acme, model="minilm-l6", training_file=file_id, seed=3)
    augmented = estimate(client, acme, model="minilm-l6", training_file=file_id, seed=3,
                         method={"tailor": {"augment": 2}})
    assert plain.status_code == augmented.status_code == 200, augmented.text
    before, after = plain.json(), augmented.json()
    assert after["rows"] == before["rows"] == {"train": 30, "validation": 3, "test": 3}
    assert after["auto_method"] == before["auto_method"] == "contrastive"
    for method in ("full", "head", "contrastive"):
        assert after["estimates"][method]["stages"]["train"] > before["estimates"][method]["stages"]["train"]
    error = error_of(estimate(client, acme, model="minilm-l6", training_file=file_id,
                              method={"tailor": {"augment": 21}}), 400)
    assert error["param"] == "method.tailor.augment"
