"""The whole job on real data: registered versions, artifact file sets, reload, crash safety, resume."""

import json

import pytest

import tailor
from tailor.registry.service import open_registry

COMMON_FILES = {"tailor_model.json", "train_config.json", "metrics.json", "history.json", "data_report.json",
                "data_report.html", "eval_report.html", "serving.json", "abstain.json", "fingerprint.json",
                "TAILOR_COMPLETE.json"}
METHOD_FILES = {
    "full": {"model/config.json", "model/model.safetensors", "model/tokenizer.json", "model/tokenizer_config.json",
             "runtime/model.onnx", "runtime/model.int8.onnx"},
    "lora": {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/README.md",
             "adapter/tokenizer.json", "adapter/tokenizer_config.json"},
    "head": {"head.safetensors"},
}


@pytest.mark.parametrize("method", ["full", "lora", "head"])
def test_artifacts_have_the_exact_file_set(trained, method):
    version = trained[method].version
    root = open_registry().artifact_dir(version)
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert files == COMMON_FILES | METHOD_FILES[method]
    spec = json.loads((root / "tailor_model.json").read_text())
    assert spec == {"method": method, "base_model": "minilm-l6", "labels": ["bearish", "bullish", "neutral"],
                    "max_length": 128, "pooling": "mean" if method == "head" else "pooler", "task": "classify",
                    "format_version": 2}


def test_versions_record_lineage_and_metrics(trained, small_train_csv):
    result = trained["full"]
    version = result.version
    assert (version.name, version.version, version.method, version.task) == ("small-full", 1, "full", "classify")
    assert version.lineage["dataset"]["path"] == str(small_train_csv)
    assert len(version.lineage["dataset"]["sha256"]) == 64
    assert version.lineage["rows"] == {"train": 54, "valid": 6, "test": 40}
    assert version.lineage["label_counts"] == {"bearish": 18, "bullish": 18, "neutral": 18}
    assert version.lineage["tailor_version"] == tailor.__version__
    timings = version.lineage["timings"]
    assert set(timings) == {"data_s", "estimated_s", "train_s", "eval_s", "explain_s", "total_s"}
    assert timings["total_s"] > timings["train_s"] + timings["eval_s"] + timings["explain_s"] and timings["estimated_s"] > timings["data_s"]
    assert version.params["epochs"] == 2 and version.params["batch_size"] == 8
    assert version.metrics["test"]["n"] == 40
    assert 0.0 <= version.metrics["test"]["macro_f1"] <= 1.0
    summary = result.summary()
    assert set(summary) == {"model", "name", "version", "method", "method_reason", "base_model", "metrics",
                            "baseline", "timings", "rows", "best_epoch"}
    assert summary["model"] == "small-full:1"


@pytest.mark.parametrize("method", ["full", "lora", "head"])
def test_reloaded_version_predicts_what_training_measured(trained, small_test_csv, method):
    result = trained[method]
    evaluation = tailor.evaluate(f"small-{method}@latest", small_test_csv)
    assert evaluation["rows"] == 40
    assert evaluation["metrics"]["macro_f1"] == result.metrics["macro_f1"]
    assert evaluation["metrics"]["confusion_matrix"] == result.metrics["confusion_matrix"]
    stored = open_registry().store.resolve("default", f"small-{method}")
    assert list(stored.metrics["evaluations"].values())[0]["macro_f1"] == result.metrics["macro_f1"]


def test_predictions_are_probabilities_in_input_order(trained):
    model = tailor.load_model("small-head")
    texts = ["$AAPL shares soar after record quarter", "Bank stocks slump as defaults rise", "Fed meeting on Tuesday"]
    predictions = model.predict(texts)
    assert [p.label for p in predictions] == [model.predict([t])[0].label for t in texts]
    for p in predictions:
        assert set(p.scores) == {"bearish", "bullish", "neutral"}
        assert abs(sum(p.scores.values()) - 1.0) < 1e-4
        assert p.score == max(p.scores.values())


def test_auto_chooses_contrastive_for_few_rows_per_class_and_trains_on_augmented_copies(fresh_home,
                                                                                          small_train_csv):
    from tailor.train.progress import RecordingReporter

    reporter = RecordingReporter()
    result = tailor.fine_tune(small_train_csv, name="auto-small", seed=0, augment=2, contrastive_steps=20,
                              reporter=reporter)
    assert result.method == "contrastive"  # judged by the user's 16 rows per class, not the 48 with copies
    assert result.method_reason.startswith("few examples per class")
    lineage = result.version.lineage
    assert lineage["rows"] == {"train": 48, "valid": 6, "test": 6}
    added = lineage["augmentation"]["rows_added"]
    assert 80 <= added <= 96 and lineage["augmentation"]["copies"] == 2
    assert f"contrastive stage: 20 steps over {48 + added} labelled rows (supcon)" in [m for m, _ in reporter.messages]


def test_search_runs_trials_and_keeps_the_best(fresh_home, small_train_csv):
    result = tailor.fine_tune(small_train_csv, name="searched", method="head", search=3, seed=0)
    trials = result.search_trials
    assert [t["trial"] for t in trials] == [0, 1, 2]
    best = max(trials, key=lambda t: t["valid_macro_f1"])
    assert result.config["head_lr"] == best["params"]["head_lr"]
    assert result.version.params["head_lr"] == best["params"]["head_lr"]
    history = json.loads((open_registry().artifact_dir(result.version) / "history.json").read_text())
    assert history["search_trials"] == trials


def test_crash_mid_training_registers_nothing_and_resume_continues(fresh_home, small_train_csv):
    from tailor.train.progress import RecordingReporter

    class Crash(RecordingReporter):
        def metrics(self, step, data):
            super().metrics(step, data)
            if data["epoch"] == 2:
                raise KeyboardInterrupt("simulated crash")

    args = dict(name="crashy", method="full", epochs=2, batch_size=16, seed=0)
    with pytest.raises(KeyboardInterrupt):
        tailor.fine_tune(small_train_csv, reporter=Crash(), **args)
    assert open_registry().store.list_models("default") == []
    assert not any((fresh_home / "artifacts").glob("default/crashy/*"))
    reporter = RecordingReporter()
    result = tailor.fine_tune(small_train_csv, reporter=reporter, resume=True, **args)
    assert result.version.ref == "crashy:1"
    assert result.version.lineage["resumed_from_epoch"] == 1
    assert "resumed from the checkpoint after epoch 1" in [m for m, _ in reporter.messages]
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert not (fresh_home / "runs").exists() or not any((fresh_home / "runs").rglob("*.pt"))


@pytest.mark.parametrize("path, name", [
    ("Loans 2024.csv", "loans-2024"),
    ("finance_sentiment_train.csv", "finance_sentiment_train"),
    ("sms_spam/train.csv", "sms_spam"),
    ("/data/SMS Spam/test.jsonl", "sms-spam"),
    ("clinc150/data_01.csv", "clinc150"),
    ("reviews/Train-2.tsv", "reviews"),
    ("intents/train-final.csv", "train-final"),
])
def test_default_name_is_the_file_or_else_its_folder(path, name):
    from tailor.train.job import default_name

    assert default_name(path) == name


@pytest.mark.parametrize("path, message", [
    ("/srv/data/train.csv", "'train.csv' and its folder 'data' are too generic to name the model after: "
                            "pass --name NAME"),
    ("/tmp/small.csv", "'small.csv' and its folder 'tmp' are too generic to name the model after: pass --name NAME"),
    ("/dataset.jsonl", "'dataset.jsonl' (in no folder) is too generic to name the model after: pass --name NAME"),
])
def test_default_name_asks_for_a_name_when_both_are_generic(path, message):
    from tailor.errors import UsageError
    from tailor.train.job import default_name

    with pytest.raises(UsageError) as refused:
        default_name(path)
    assert str(refused.value) == message


def test_other_labels_are_refused_before_training_unless_asked(fresh_home, small_train_csv):
    from tailor.errors import UsageError
    from tailor.train.progress import RecordingReporter

    store = open_registry().store
    store.create_version("default", "finance", task="classify", base_model="minilm-l6", method="head",
                         artifact_path="default/finance/x", params={}, metrics={},
                         lineage={"label_counts": {"ham": 40, "spam": 9}})
    reporter = RecordingReporter()
    with pytest.raises(UsageError) as refused:
        tailor.fine_tune(small_train_csv, name="finance", method="head", epochs=1, seed=0, reporter=reporter)
    assert str(refused.value) == (
        "model 'finance' (tenant default) has labels [ham, spam]; this data has [bearish, bullish, neutral]: pass "
        "--new-labels to register it as a new version of 'finance' anyway, or --name to start a new model")
    assert not [m for m, _ in reporter.messages if m.startswith("base model")]  # refused before choosing one
    assert [v.version for v in store.list_versions("default", "finance")] == [1]
    result = tailor.fine_tune(small_train_csv, name="finance", method="head", epochs=1, seed=0, new_labels=True)
    assert result.version.ref == "finance:2"
    assert sorted(result.version.lineage["label_counts"]) == ["bearish", "bullish", "neutral"]
