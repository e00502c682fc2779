"""Zero-shot classification from label names on the real embedded encoder (minilm-l6): the prompts, the head
rows, the numbers it reaches on the shipped finance sample, the registered version and its round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samples import SAMPLE_DIR, SAMPLE_TEST, SAMPLE_TRAIN, sample_rows
from tailor.errors import DataError, UsageError
from tailor.eval.run import zero_shot_baseline
from tailor.models.zero_shot import ZERO_SHOT_SCALE, label_prompts
from tailor.train.zero_shot import parse_labels, read_label_file

FINANCE = ["bearish", "bullish", "neutral"]
# One-line descriptions of the finance labels: measured below to lift macro-F1 from 0.2513 (names) to 0.3693.
FINANCE_DESCRIPTIONS = {"bearish": "prices fall, losses, a weak outlook",
                        "bullish": "prices rise, gains, a strong outlook",
                        "neutral": "news without a clear market direction"}
TEXTS = ["$AAPL shares soar after record quarter", "Bank stocks slump as defaults rise",
         "Fed meeting on Tuesday", "card arrival"]


# ---- prompts and label files ------------------------------------------------------------------------------
def test_prompts_are_label_words_then_the_description():
    assert label_prompts(["card_arrival", "pin-change", "balance"]) == ["card arrival", "pin change", "balance"]
    assert label_prompts(["card_arrival", "balance"], {"card_arrival": "  my new card\n has not come ",
                                                       "balance": ""}) == [
        "card arrival: my new card has not come", "balance"]


@pytest.mark.parametrize("labels, descriptions, message", [
    ([], None, "give at least 2 labels to choose between (got none)"),
    (["billing"], None, "give at least 2 labels to choose between (got 1: 'billing')"),
    (["billing", "refund", "billing"], None, "label 'billing' is given twice"),
    (["billing", "refund"], {"refunds": "money back"},
     "a description is given for 'refunds', which is not one of the labels (billing, refund)"),
    (["card_arrival", "card arrival"], None,
     "labels 'card_arrival' and 'card arrival' read the same ('card arrival'): rename one, or describe them"),
    (["billing", "__"], None, "label '__' has no words to compare texts with: name it in words"),
])
def test_bad_labels_are_refused_with_the_reason(labels, descriptions, message):
    with pytest.raises(UsageError) as caught:
        label_prompts(labels, descriptions)
    assert str(caught.value) == message


def test_labels_option_splits_on_commas():
    assert parse_labels(" billing, technical issue ,cancellation") == ["billing", "technical issue", "cancellation"]
    with pytest.raises(UsageError, match=r"^--labels 'billing,,refund' has an empty label: separate labels by "
                                         r"single commas$"):
        parse_labels("billing,,refund")


def test_label_files_in_each_format(tmp_path):
    (tmp_path / "l.json").write_text(json.dumps({"billing": "a charge or an invoice", "refund": None}))
    (tmp_path / "list.json").write_text(json.dumps(["billing", "refund"]))
    (tmp_path / "l.csv").write_text("Label,Description\nbilling,a charge or an invoice\nrefund,\n")
    (tmp_path / "l.txt").write_text("billing\n\n refund \n")
    expected = (["billing", "refund"], {"billing": "a charge or an invoice"})
    assert read_label_file(tmp_path / "l.json") == expected
    assert read_label_file(tmp_path / "l.csv") == expected
    assert read_label_file(tmp_path / "list.json") == (["billing", "refund"], {})
    assert read_label_file(tmp_path / "l.txt") == (["billing", "refund"], {})


def test_bad_label_files_name_the_problem(tmp_path):
    (tmp_path / "bad.json").write_text('{"billing": 3}')
    (tmp_path / "broken.json").write_text('{\n"billing": }')
    (tmp_path / "nolabel.csv").write_text("name,description\nbilling,x\n")
    (tmp_path / "empty.csv").write_text("label,description\nbilling,x\n,y\n")
    (tmp_path / "labels.yaml").write_text("- billing\n")
    cases = {"bad.json": "labels file bad.json: the description of 'billing' is not a string",
             "broken.json": "line 2: labels file broken.json: not JSON (Expecting value)",
             "nolabel.csv": "line 1: labels file nolabel.csv: no 'label' column in the header (columns: name, "
                            "description)",
             "empty.csv": "line 3: labels file empty.csv: empty label"}
    for name, message in cases.items():
        with pytest.raises(DataError) as caught:
            read_label_file(tmp_path / name)
        assert str(caught.value) == message
    with pytest.raises(UsageError, match=r"^labels file 'labels.yaml': use a .json, .csv or .txt file$"):
        read_label_file(tmp_path / "labels.yaml")


# ---- the model on the real encoder ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    from tailor.catalog import resolve_base

    return resolve_base("minilm-l6")


@pytest.fixture(scope="module")
def finance_model(minilm):
    from tailor.models.zero_shot import build_zero_shot_model

    return build_zero_shot_model(minilm, FINANCE)


def test_head_rows_are_the_prompt_embeddings_at_the_scale(finance_model):
    head = finance_model.classifier.model.classifier
    norms = head.weight.detach().norm(dim=1).numpy()
    assert ZERO_SHOT_SCALE == 15.0
    np.testing.assert_allclose(norms, [15.0, 15.0, 15.0], atol=1e-4)
    assert head.bias.detach().abs().max().item() == 0.0
    # a text that is a prompt has cosine similarity 1 with its own row: its logit is the scale itself
    from tailor.train.evaluate import predict_logits

    classifier = finance_model.classifier
    logits = predict_logits(classifier.model, classifier.encode(FINANCE), classifier.tokenizer.pad_token_id)
    np.testing.assert_allclose(np.diag(logits), [15.0, 15.0, 15.0], atol=1e-3)
    assert [p.label for p in classifier.predict(FINANCE)] == FINANCE


def test_zero_shot_beats_the_majority_baseline_on_the_finance_sample(minilm):
    from tailor.eval.metrics import majority_baseline

    rows = sample_rows(SAMPLE_TEST)
    texts, targets = [t for t, _ in rows], [y for _, y in rows]
    found = zero_shot_baseline(minilm, FINANCE, texts, targets)
    assert found == {"label": "zero-shot", "accuracy": pytest.approx(0.3033, abs=0.005),
                     "macro_f1": pytest.approx(0.2513, abs=0.005), "weighted_f1": pytest.approx(0.2622, abs=0.005),
                     "base_model": "minilm-l6", "scale": 15.0, "prompts": FINANCE}
    # the training file is balanced: its majority class (ties to the first, bearish) scores macro-F1 0.0952
    majority = majority_baseline([y for _, y in sample_rows(SAMPLE_TRAIN)], targets, FINANCE)
    assert majority["macro_f1"] == 0.0952
    assert found["macro_f1"] > majority["macro_f1"] + 0.15


def test_zero_shot_baseline_on_the_bank_intents(minilm):
    rows = sample_rows(SAMPLE_DIR / "bank_intents_test.csv")
    labels = sorted({y for _, y in rows})
    found = zero_shot_baseline(minilm, labels, [t for t, _ in rows], [y for _, y in rows])
    assert (found["accuracy"], found["macro_f1"]) == (pytest.approx(0.8182, abs=0.005),
                                                      pytest.approx(0.8078, abs=0.005))
    assert found["prompts"][:3] == ["apr", "balance", "card declined"]


def test_no_zero_shot_baseline_on_a_chat_base():
    from tailor.catalog import ResolvedBase

    with pytest.raises(UsageError, match=r"^no zero-shot baseline on smollm2-135m-instruct: a chat model has no "
                                         r"sentence embeddings$"):
        zero_shot_baseline(ResolvedBase("smollm2-135m-instruct", "/nowhere", "mean", 512), FINANCE, ["x"], ["bullish"])


# ---- registered versions ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zs_home(tmp_path_factory):
    """A storage root of this module's own, in the environment too (``tailor.load_model`` reads it there)."""
    from tailor.settings import Settings

    home = tmp_path_factory.mktemp("zero-shot-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAILOR_HOME", str(home))
        mp.delenv("TAILOR_DATABASE_URL", raising=False)
        yield Settings(home=home)


@pytest.fixture(scope="module")
def described(zs_home):
    """The finance labels with descriptions, scored on the finance test file."""
    from tailor.train.zero_shot import run_zero_shot_job

    return run_zero_shot_job(FINANCE, descriptions=FINANCE_DESCRIPTIONS, name="fin-described",
                             eval_file=SAMPLE_TEST, settings=zs_home, actor="cli:tester")


@pytest.fixture(scope="module")
def names_only(zs_home, described):
    """The finance labels alone, without an eval file (after ``described``, so the base's graphs exist)."""
    from tailor.train.zero_shot import run_zero_shot_job

    return run_zero_shot_job(["neutral", "bullish", "bearish"], name="fin-names", settings=zs_home)


def artifact_files(settings, version) -> set[str]:
    from tailor.registry.service import open_registry

    root = open_registry(settings).artifact_dir(version)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_described_version_beats_the_majority_of_its_eval_file(described, zs_home):
    version = described.version
    assert (version.ref, version.method, version.task, version.base_model) == ("fin-described:1", "head",
                                                                               "classify", "minilm-l6")
    assert described.prompts == ["bearish: prices fall, losses, a weak outlook",
                                 "bullish: prices rise, gains, a strong outlook",
                                 "neutral: news without a clear market direction"]
    assert described.metrics["n"] == 300
    assert described.metrics["macro_f1"] == pytest.approx(0.3693, abs=0.005)
    assert described.metrics["accuracy"] == pytest.approx(0.3667, abs=0.005)
    # no training rows: the majority class is the eval file's own (neutral, 191 of 300 rows)
    assert described.baseline == {"label": "neutral", "accuracy": 0.6367, "macro_f1": 0.2593, "weighted_f1": 0.4953}
    assert described.metrics["macro_f1"] > described.baseline["macro_f1"] + 0.1
    assert version.lineage["zero_shot"] == {"labels": FINANCE, "prompts": described.prompts, "scale": 15.0,
                                            "descriptions": FINANCE_DESCRIPTIONS}
    assert version.lineage["method_reason"] == ("zero-shot: the nearest of 3 label prompts by cosine similarity of "
                                                "minilm-l6 embeddings; nothing trained")
    assert version.lineage["rows"] == {"train": 0, "valid": 0, "test": 300}
    assert version.lineage["label_counts"] == {"bearish": 0, "bullish": 0, "neutral": 0}
    assert version.lineage["actor"] == "cli:tester"
    assert version.lineage["eval_dataset"]["path"] == str(SAMPLE_TEST)
    assert set(version.metrics) == {"test", "baseline", "explanations", "serving", "abstain", "calibration"}
    assert version.metrics["serving"]["validation_rows"] == 300
    assert version.metrics["calibration"] == {"temperature": 1.0, "rows": 0, "fitted": False}
    assert version.metrics["abstain"]["note"] == "no validation rows to choose a threshold on"
    assert artifact_files(zs_home, version) == {"tailor_model.json", "head.safetensors", "metrics.json",
                                                "abstain.json", "fingerprint.json", "eval_report.html",
                                                "serving.json", "TAILOR_COMPLETE.json"}
    summary = described.summary()
    assert set(summary) == {"model", "name", "version", "method", "base_model", "labels", "prompts", "scale",
                            "runtime", "metrics", "baseline", "timings"}
    assert summary["metrics"]["macro_f1"] == described.metrics["macro_f1"]


def test_version_without_eval_file_records_no_metrics(names_only, zs_home):
    from tailor.registry.service import open_registry

    version = names_only.version
    assert names_only.metrics is None and names_only.baseline is None
    assert names_only.prompts == FINANCE  # labels sorted as a trained version's are
    assert set(version.metrics) == {"serving", "abstain", "calibration"}
    assert version.metrics["serving"]["runtime"] == "onnx-fp32"
    assert version.metrics["serving"]["validation_rows"] == 0
    assert version.lineage["rows"] == {"train": 0, "valid": 0, "test": 0}
    assert version.lineage["base_reason"].endswith("(from the label prompts)")
    assert artifact_files(zs_home, version) == {"tailor_model.json", "head.safetensors", "metrics.json",
                                                "abstain.json", "serving.json", "TAILOR_COMPLETE.json"}
    spec = json.loads((open_registry(zs_home).artifact_dir(version) / "tailor_model.json").read_text())
    assert spec == {"method": "head", "base_model": "minilm-l6", "labels": FINANCE, "max_length": 128,
                    "pooling": "mean", "task": "classify", "format_version": 2}
    assert names_only.summary()["metrics"] is None


def test_registered_version_predicts_what_the_model_in_memory_does(names_only, finance_model):
    import tailor

    expected = finance_model.classifier.predict(TEXTS)
    for runtime in ("torch-fp32", "served"):  # served: onnx-fp32, the version's gate choice
        loaded = tailor.load_model("fin-names", runtime=runtime)
        found = loaded.predict(TEXTS)
        assert [p.label for p in found] == [p.label for p in expected]
        for got, want in zip(found, expected):
            assert got.scores == pytest.approx(want.scores, abs=1e-3)


def test_predict_cli_pre_labels_texts_for_review(names_only, tmp_path, capsys):
    import tailor
    from tailor.cli import main

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:3]) + "\n")
    assert main(["predict", "fin-names", "--file", str(texts), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["model"] == "fin-names:1"
    assert [row["text"] for row in out["predictions"]] == TEXTS[:3]
    assert [row["label"] for row in out["predictions"]] == [p.label for p in tailor.load_model("fin-names").predict(
        TEXTS[:3])]


def test_evaluating_a_zero_shot_version_matches_its_own_baseline(names_only, zs_home):
    from tailor.eval.report import format_eval_text
    from tailor.eval.run import evaluate_model

    evaluation = evaluate_model("fin-names", SAMPLE_TEST, settings=zs_home)
    zero_shot = evaluation["baseline"]["zero_shot"]
    assert zero_shot["macro_f1"] == pytest.approx(0.2513, abs=0.005)
    # the version is the zero-shot classifier of its labels, on the served onnx-fp32 runtime: the same numbers
    assert abs(evaluation["metrics"]["macro_f1"] - zero_shot["macro_f1"]) <= 0.005
    assert "zero-shot: the nearest label name in minilm-l6 embeddings, no training" in format_eval_text(evaluation)


def test_other_labels_than_the_latest_version_are_refused(names_only, zs_home):
    from tailor.train.zero_shot import run_zero_shot_job

    with pytest.raises(UsageError, match=r"^give the labels as a list, not one string \('up,down'\); parse_labels "
                                         r"splits one on commas$"):
        run_zero_shot_job("up,down", name="fin-names", settings=zs_home)
    with pytest.raises(UsageError, match=r"^model 'fin-names' \(tenant default\) has labels"):
        run_zero_shot_job(["up", "down"], name="fin-names", settings=zs_home)


def test_retraining_a_zero_shot_version_continues_from_its_rows(names_only, zs_home, tmp_path):
    from samples import write_csv
    from tailor.train.retrain import run_retrain

    data = write_csv(tmp_path / "few.csv", sample_rows(per_label=8))
    result = run_retrain("fin-names", file=data, settings=zs_home, replay=0, epochs=1, seed=0)
    assert result.version.ref == "fin-names:2"
    assert result.version.lineage["parent"] == "fin-names:1"
    assert result.method == "head"
