"""``POST /v1/models/compare`` and ``tailor compare``: two versions on an uploaded file and on the labelled
feedback, the report recomputed here from each version's own served answers; every refusal with its status and
message; tenant isolation (of the models, the file and the feedback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from api_helpers import csv_bytes, error_of, publish_copy, upload
from samples import SAMPLE_TEST, sample_rows, write_csv
from tailor.eval.compare import compare_predictions

ROWS = sample_rows(SAMPLE_TEST, per_label=6)  # 18 rows, 6 per label
FEEDBACK = sample_rows(SAMPLE_TEST)[100:106]
FAVOURED = "bullish"


@pytest.fixture(autouse=True)
def never_a_500(client):
    yield
    assert 'status="500"' not in client.get("/metrics").text


def publish_variant(settings, head_artifact, tmp_path, tenant: str, name: str, *, favour: str | None = None,
                    rename: dict | None = None):
    """A copy of the session's head version, changed: every text labelled ``favour`` (its head bias raised by
    1000), or labels renamed (``{old: new}``)."""
    from safetensors.numpy import load_file, save_file

    source, version = head_artifact
    changed = tmp_path / f"variant-{favour or 'renamed'}"
    shutil.copytree(source, changed)
    spec = json.loads((changed / "tailor_model.json").read_text())
    if favour:
        head = load_file(str(changed / "head.safetensors"))
        head["bias"][spec["labels"].index(favour)] += 1000
        save_file(head, str(changed / "head.safetensors"))
    if rename:
        spec["labels"] = [rename.get(label, label) for label in spec["labels"]]
        (changed / "tailor_model.json").write_text(json.dumps(spec))
    return publish_copy(settings, (changed, version), tenant, name)


@pytest.fixture
def sentiment(settings, head_artifact, tmp_path, client, acme):
    """acme's ``sentiment``: version 1 (the trained head) behind ``@prod``, version 2 always saying FAVOURED."""
    publish_copy(settings, head_artifact, "acme", "sentiment")
    publish_variant(settings, head_artifact, tmp_path, "acme", "sentiment", favour=FAVOURED)
    response = client.put("/v1/models/sentiment/aliases/prod", headers=acme.headers, json={"version": 1})
    assert response.status_code == 200, response.text


def classify(client, tenant, model: str, texts: list[str], store: bool = False) -> list[dict]:
    response = client.post("/v1/classifications", headers=tenant.headers,
                           json={"model": model, "input": texts, "store": store})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def compare(client, tenant, **body):
    return client.post("/v1/models/compare", headers=tenant.headers, json=body)


def give_feedback(client, tenant, model: str, rows, store: bool = True) -> None:
    """Classify each text alone (so the answers' order is the rows'), then give its true label as feedback."""
    for text, label in rows:
        answer = classify(client, tenant, model, [text], store=store)[0]
        response = client.post("/v1/feedback", headers=tenant.headers,
                               json={"prediction_id": answer["id"], "label": label})
        assert response.status_code == 200, response.text


def expected_section(client, tenant, source: str, data, rows) -> dict:
    """The section recomputed from the versions' own answers through /v1/classifications."""
    texts, truth = [t for t, _ in rows], [y for _, y in rows]
    a = [d["label"] for d in classify(client, tenant, "sentiment:1", texts)]
    b = [d["label"] for d in classify(client, tenant, "sentiment:2", texts)]
    assert b == [FAVOURED] * len(rows)
    labels = sorted(classify(client, tenant, "sentiment:1", texts[:1])[0]["scores"])
    return {"source": source, "data": data, "skipped_rows": 0} | compare_predictions(truth, a, b, labels)


def test_compare_on_an_uploaded_file_and_on_the_labelled_feedback(client, acme, globex, settings, head_artifact,
                                                                  sentiment):
    file_id = upload(client, acme, csv_bytes(ROWS), filename="test.csv").json()["id"]
    give_feedback(client, acme, "sentiment@prod", FEEDBACK[:4])  # the alias's traffic
    give_feedback(client, acme, "sentiment:2", FEEDBACK[4:])     # the candidate's, under its own id
    give_feedback(client, acme, "sentiment", sample_rows(SAMPLE_TEST)[110:112], store=False)  # no text: left out
    publish_copy(settings, head_artifact, "globex", "sentiment")
    give_feedback(client, globex, "sentiment", sample_rows(SAMPLE_TEST)[120:123])  # another tenant's: left out

    response = compare(client, acme, a="sentiment@prod", b="sentiment:2", file=file_id, feedback=True)
    assert response.status_code == 200, response.text
    report = response.json()
    runtime = report["a"]["runtime"]
    assert {k: report[k] for k in ("object", "a", "b", "labels")} == {
        "object": "model.comparison", "a": {"ref": "sentiment@prod", "model": "sentiment:1", "runtime": runtime},
        "b": {"ref": "sentiment:2", "model": "sentiment:2", "runtime": runtime},
        "labels": report["labels"]}
    assert sorted(report["labels"]) == ["bearish", "bullish", "neutral"]
    assert report["file"] == expected_section(client, acme, "file", "test.csv", ROWS)
    assert report["feedback"] == expected_section(client, acme, "feedback", None, FEEDBACK)
    assert report["file"]["disagreements"]["rows"] > 0 and report["feedback"]["disagreements"]["rows"] > 0
    b_row = next(r for r in report["file"]["per_class"] if r["label"] == FAVOURED)
    assert (report["file"]["b"]["accuracy"], b_row["support"], b_row["b"]["recall"]) == (0.3333, 6, 1.0)

    only_file = compare(client, acme, a="sentiment@prod", b="sentiment:2", file=file_id, feedback=False).json()
    assert only_file["feedback"] is None and only_file["file"] == report["file"]
    only_feedback = compare(client, acme, a="sentiment@prod", b="sentiment:2").json()
    assert only_feedback["file"] is None and only_feedback["feedback"] == report["feedback"]


def test_no_feedback_is_an_empty_section_and_no_rows_at_all_a_400(client, acme, sentiment):
    file_id = upload(client, acme, csv_bytes(ROWS), filename="test.csv").json()["id"]
    report = compare(client, acme, a="sentiment@prod", b="sentiment:2", file=file_id).json()
    assert report["file"]["rows"] == 18
    assert report["feedback"] == {"source": "feedback", "data": None, "skipped_rows": 0} | compare_predictions(
        [], [], [], report["labels"])
    error = error_of(compare(client, acme, a="sentiment@prod", b="sentiment:2"), 400)
    assert error["message"] == ("nothing to compare sentiment@prod and sentiment:2 on: no labelled file was given "
                                "and no stored answer of sentiment has a feedback label yet")
    error = error_of(compare(client, acme, a="sentiment@prod", b="sentiment:2", feedback=False), 400)
    assert error["message"] == ("nothing to compare sentiment@prod and sentiment:2 on: no labelled file was given "
                                "and feedback was left out")


def test_refusals(client, acme, globex, settings, head_artifact, tmp_path, sentiment):
    def refused(status, **body):
        return error_of(compare(client, acme, **({"a": "sentiment@prod", "b": "sentiment:2"} | body)), status)

    assert refused(404, b="nope")["message"] == "model 'nope' not found"
    assert refused(404, a="sentiment@canary")["message"] == "alias sentiment@canary not found"
    assert refused(404, b="sentiment:9")["message"] == "version sentiment:9 not found"
    publish_copy(settings, head_artifact, "globex", "secret")
    assert refused(404, b="secret")["message"] == "model 'secret' not found"  # another tenant's model
    base = refused(400, a="minilm-l6")
    assert (base["message"], base["param"]) == (
        "a: 'minilm-l6' is a base model without labels; compare needs two fine-tuned classifiers", "a")
    publish_variant(settings, head_artifact, tmp_path, "acme", "renamed", rename={"neutral": "mixed"})
    assert refused(400, b="renamed")["message"] == (
        "sentiment@prod and renamed have different labels (sentiment:1: bearish, bullish, neutral; renamed:1: "
        "bearish, bullish, mixed); compare only versions with the same labels")

    unknown = csv_bytes(ROWS[:4] + [("shares flat", "maybe"), ("who knows", "maybe"), ("odd", "spam")])
    file_id = upload(client, acme, unknown, filename="odd.csv").json()["id"]
    error = refused(400, file=file_id)
    assert (error["message"], error["param"], error["code"]) == (
        "odd.csv: 3 rows with labels the versions do not know: 'maybe' (lines 6, 7), 'spam' (line 8); their "
        "labels: bearish, bullish, neutral", "label", "invalid_file")
    assert refused(400, file="file-nope")["message"] == "file 'file-nope' not found; upload it with POST /v1/files"
    theirs = upload(client, globex, csv_bytes(ROWS), filename="test.csv").json()["id"]
    assert refused(400, file=theirs)["message"] == f"file {theirs!r} not found; upload it with POST /v1/files"
    assert refused(400, extra=1)["param"] == "extra"


def test_cli_compare_prints_a_table_and_the_same_report_as_json(settings, head_artifact, tmp_path, fresh_home,
                                                                db_url):
    from tailor.monitor.feedback import Feedback, FeedbackStore
    from tailor.monitor.records import PredictionRecord, PredictionStore, new_id
    from tailor.registry.service import open_registry

    publish_copy(settings, head_artifact, "default", "sentiment")
    publish_variant(settings, head_artifact, tmp_path, "default", "sentiment", favour=FAVOURED)
    open_registry(settings).store.set_alias("default", "sentiment", "prod", 1)
    answers = [PredictionRecord(id=new_id("classification"), tenant="default", kind="classification",
                                model="sentiment@prod", model_name="sentiment", version=1, input={"text": text})
               for text, _ in FEEDBACK]
    PredictionStore(settings.registry_url).add(answers)
    FeedbackStore(settings.registry_url).put([Feedback("default", r.id, label=label)
                                              for r, (_, label) in zip(answers, FEEDBACK)])
    data = write_csv(tmp_path / "test.csv", ROWS)

    def run(*args):
        env = dict(os.environ, TAILOR_HOME=str(fresh_home), TAILOR_DATABASE_URL=db_url)
        return subprocess.run([sys.executable, "-m", "tailor", "compare", *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=600)

    out = run("sentiment@prod", "sentiment:2", data, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert (report["a"]["model"], report["b"]["model"], report["file"]["data"]) == (
        "sentiment:1", "sentiment:2", str(data))
    assert (report["file"]["rows"], report["feedback"]["rows"], report["file"]["b"]["accuracy"]) == (18, 6, 0.3333)
    text = run("sentiment@prod", "sentiment:2", data, "--no-feedback")
    lines = text.stdout.splitlines()
    assert lines[0] == (f"A sentiment@prod (sentiment:1, {report['a']['runtime']})  vs  "
                        f"B sentiment:2 (sentiment:2, {report['b']['runtime']})")
    assert lines[2] == f"on {data}: 18 rows" and lines[7] == f"verdict: {report['file']['verdict']}"
    assert not any(line.startswith("on labelled feedback") for line in lines)
    bad = run("sentiment@prod", "nope", data)
    assert (bad.returncode, bad.stderr) == (2, "error: model 'nope' not found\n")
