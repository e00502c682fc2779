"""Method contrastive: the pairs and batches it is built from, a short seeded run on real MiniLM and tweets,
and its artifact's round trips (PyTorch and ONNX runtimes, retraining from it)."""

from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from tailor.catalog import resolve_base
from tailor.models.classifier import (ClassifierSpec, TextClassifier, build_model, load_model_for_inference,
                                      load_trainable, save_classifier)
from tailor.train.batching import encode
from tailor.train.classify import fit_head
from tailor.train.config import load_preset
from tailor.train.contrastive import (balanced_batches, build_pairs, contrastive_batches, contrastive_steps,
                                      fit_contrastive, supervised_contrastive_loss)
from tailor.train.evaluate import macro_f1
from tailor.train.progress import RecordingReporter

from samples import SAMPLE_TEST, sample_rows

LABELS = ["bearish", "bullish", "neutral"]


# ------------------------------------------------------------------------------------------ pairs, batches


def test_pairs_follow_setfit_counts_and_labels():
    targets = [0, 0, 0, 1, 1, 2]  # label 2 has a single row: no positive partner for it
    pairs = build_pairs(targets, per_row=3, seed=7)
    positives = [p for p in pairs if p[2] == 1.0]
    negatives = [p for p in pairs if p[2] == 0.0]
    assert len(positives) == 3 * 5 and len(negatives) == 3 * 6
    assert all(targets[i] == targets[j] and i != j for i, j, _ in positives)
    assert all(targets[i] != targets[j] for i, j, _ in negatives)
    assert Counter(i for i, _, _ in positives) == {0: 3, 1: 3, 2: 3, 3: 3, 4: 3}
    assert Counter(i for i, _, _ in negatives) == {i: 3 for i in range(6)}
    assert build_pairs(targets, per_row=3, seed=7) == pairs
    assert build_pairs(targets, per_row=3, seed=8) != pairs
    one_label = build_pairs([1, 1, 1], per_row=2, seed=0)
    assert len(one_label) == 6 and {target for _, _, target in one_label} == {1.0}  # no negatives to draw


def test_balanced_batches_take_equal_rows_of_every_label():
    targets = [label for label in range(5) for _ in range(8)]  # 8 rows x 5 labels
    batches = balanced_batches(targets, batch_size=32, steps=4, seed=0)
    assert len(batches) == 4
    for batch in batches:
        assert len(batch) == 30 and len(set(batch)) == 30  # 6 rows of each label, no row twice
        assert Counter(targets[i] for i in batch) == {label: 6 for label in range(5)}
        same = [(i, j) for i, j in combinations(batch, 2) if targets[i] == targets[j]]
        assert len(same) == 5 * 15  # positives: C(6, 2) per label; the other C(30, 2) - 75 = 360 negatives
    # a label's rows come round in a shuffled cycle: each of its 8 rows before any of them a second time
    first_two = [i for batch in batches[:2] for i in batch if targets[i] == 0]
    assert len(set(first_two[:8])) == 8
    assert balanced_batches(targets, 32, 4, seed=0) == batches
    assert balanced_batches(targets, 32, 4, seed=1) != batches


def test_balanced_batches_cycle_through_labels_when_not_all_fit():
    targets = [label for label in range(20) for _ in range(3)]
    batches = balanced_batches(targets, batch_size=8, steps=10, seed=3)
    assert [len(b) for b in batches] == [8] * 10  # 2 rows of each of 4 labels
    assert all(sorted(Counter(targets[i] for i in b).values()) == [2, 2, 2, 2] for b in batches)
    seen = Counter(targets[i] for b in batches[:5] for i in b)
    assert sorted(seen) == list(range(20))  # five batches of four labels: every label once


def test_a_label_with_fewer_rows_than_its_share_gives_them_all():
    targets = [0, 0, 0, 0, 0, 0, 1]
    batch = balanced_batches(targets, batch_size=8, steps=1, seed=0)[0]
    assert len(batch) == 5 and Counter(targets[i] for i in batch) == {0: 4, 1: 1}


def test_the_supervised_contrastive_loss_has_its_closed_form():
    import torch

    embeddings = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=-1)
    labels = torch.tensor([0, 0, 1])
    t = 0.5
    s = (embeddings @ embeddings.T / t).numpy()
    # rows 0 and 1 each have one positive (the other); row 2 has none and is left out
    row0 = s[0, 1] - np.log(np.exp(s[0, 1]) + np.exp(s[0, 2]))
    row1 = s[1, 0] - np.log(np.exp(s[1, 0]) + np.exp(s[1, 2]))
    expected = -(row0 + row1) / 2
    assert float(supervised_contrastive_loss(embeddings, labels, t)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("rows, batch, steps", [(21, 16, 21), (10, 16, 20), (87, 16, 87), (145, 16, 145),
                                                (290, 16, 160), (87, 32, 44)])
def test_the_contrastive_steps_see_each_row_16_times_within_20_to_160(rows, batch, steps):
    assert contrastive_steps(rows, load_preset("default", contrastive_batch_size=batch)) == steps
    assert contrastive_steps(rows, load_preset("default", contrastive_steps=7)) == 7


def test_pairs_mode_batches_hold_the_rows_of_its_pairs():
    from tailor.train.batching import Encoded

    train = Encoded([[1, 2]] * 6, [0, 0, 0, 1, 1, 2])
    cfg = load_preset("default", contrastive_objective="pairs", contrastive_pairs_per_row=3, contrastive_batch_size=8,
                      seed=7)
    batches = contrastive_batches(train, cfg)
    pairs = build_pairs(train.targets, 3, 7)
    assert [len(b) for b in batches] == [8] * 8 + [1 * 2]  # 33 pairs, 4 a batch
    assert [tuple(b[k:k + 2]) for b in batches for k in range(0, len(b), 2)] == [p[:2] for p in pairs]


# --------------------------------------------------------------------------------------- training (real)


@pytest.fixture(scope="module")
def data():
    from transformers import AutoTokenizer

    base = resolve_base("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    ids = {label: i for i, label in enumerate(LABELS)}
    rows = sample_rows(per_label=8)
    train = encode(tokenizer, [t for t, _ in rows], 64, [ids[y] for _, y in rows])
    val = encode(tokenizer, [t for t, _ in rows[:6]], 64, [ids[y] for _, y in rows[:6]])
    test_rows = sample_rows(SAMPLE_TEST, per_label=40)
    return base, tokenizer, train, val, [t for t, _ in test_rows], np.array([ids[y] for _, y in test_rows])


CFG = dict(contrastive_steps=12, contrastive_batch_size=24, contrastive_lr=5e-5, head_epochs=100, seed=0)


@pytest.fixture(scope="module")
def trained(data):
    """A contrastive model trained for 12 steps on 8 tweets per label, and the same draw's head-only model."""
    import torch

    base, tokenizer, train, val, _, _ = data
    cfg = load_preset("default", method="contrastive", **CFG)
    common = dict(pad_id=tokenizer.pad_token_id, num_labels=3, device="cpu", reporter=RecordingReporter())
    model = build_model("contrastive", base, LABELS, seed=0)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    outcome = fit_contrastive(model, train, val, cfg, bf16=False, **common)
    changed = max(float((v - before[k]).abs().max()) for k, v in model.encoder.state_dict().items()
                  if v.dtype == torch.float32)
    head = build_model("head", base, LABELS, seed=0)
    fit_head(head, train, val, cfg, **common)
    return model, outcome, changed, head


def test_a_short_run_tunes_the_encoder_and_records_both_stages(trained):
    model, outcome, changed, _ = trained
    assert changed > 1e-4
    assert not any(p.requires_grad for p in model.encoder.parameters())  # frozen for the head stage
    stages = [row["stage"] for row in outcome.history]
    assert stages[:2] == ["contrastive", "contrastive"] and set(stages[2:]) == {"head"}
    assert [row["step"] for row in outcome.history[:2]] == [10, 12]
    assert outcome.history[1]["train_loss"] < outcome.history[0]["train_loss"]
    assert outcome.steps == 12 + 100 and outcome.stop_reason in ("completed", "early_stopping")


def test_contrastive_beats_the_frozen_head_on_the_same_draw(trained, data):
    model, _, _, head = trained
    base, tokenizer, _, _, texts, targets = data
    scores = {}
    for name, module in (("contrastive", model), ("head", head)):
        classifier = TextClassifier(module, tokenizer, ClassifierSpec(name, base.name, LABELS, 64), "cpu")
        scores[name] = macro_f1(targets, classifier.predict_proba(texts).argmax(1))
    # measured: head 0.494, contrastive 0.534 (12 contrastive steps, one core)
    assert scores["head"] == pytest.approx(0.494, abs=0.03), scores
    assert scores["contrastive"] - scores["head"] > 0.02, scores


def test_a_deadline_cuts_the_contrastive_stage_but_the_head_is_fitted(data):
    import time

    base, tokenizer, train, val, _, _ = data
    cfg = load_preset("default", method="contrastive", **{**CFG, "contrastive_steps": 50})
    model = build_model("contrastive", base, LABELS, seed=0)
    outcome = fit_contrastive(model, train, val, cfg, pad_id=tokenizer.pad_token_id, num_labels=3, device="cpu",
                              bf16=False, reporter=RecordingReporter(), deadline=time.monotonic())
    assert outcome.stop_reason == "time_budget"
    assert outcome.history[0] == {**outcome.history[0], "stage": "contrastive", "step": 1}
    assert outcome.history[1]["stage"] == "head"


# ------------------------------------------------------------------------------------------- artifacts


@pytest.fixture(scope="module")
def saved(trained, data, tmp_path_factory):
    model, _, _, _ = trained
    base, tokenizer, *_ = data
    directory = tmp_path_factory.mktemp("contrastive") / "version"
    save_classifier(model, tokenizer, ClassifierSpec("contrastive", base.name, LABELS, 64), directory)
    return directory


def test_the_artifact_holds_its_encoder_head_and_spec(saved):
    files = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    assert {"tailor_model.json", "head.safetensors", "encoder/config.json", "encoder/model.safetensors",
            "encoder/tokenizer.json", "encoder/tokenizer_config.json"} <= files
    assert not any(f.startswith(("model/", "adapter/")) for f in files)
    assert ClassifierSpec.load(saved).method == "contrastive"


def test_save_load_gives_identical_probabilities(saved, trained, data):
    model, *_ = trained
    base, tokenizer, _, _, texts, _ = data
    fresh = TextClassifier(model, tokenizer, ClassifierSpec("contrastive", base.name, LABELS, 64), "cpu")
    loaded = TextClassifier.from_dir(saved, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(texts[:40]), fresh.predict_proba(texts[:40]))


def test_onnx_runtimes_match_torch_and_the_gate_records_them(saved, data, tmp_path):
    import shutil

    from tailor.models.optimize import optimize_version
    from tailor.models.runtimes import SharedBases, load_runtime

    _, _, _, _, texts, targets = data
    staged = tmp_path / "staged"
    shutil.copytree(saved, staged)
    bases = SharedBases(tmp_path / "cache", threads=1)
    record = optimize_version(staged, texts[:60], [LABELS[i] for i in targets[:60]], bases,
                              calibration_texts=texts[60:])
    assert sorted(p.name for p in (staged / "runtime").iterdir()) == ["model.int8.onnx", "model.onnx"]
    assert not (tmp_path / "cache").exists()  # its own graph: nothing built for the shared base
    assert set(record["macro_f1"]) == {"torch-fp32", "onnx-fp32", "onnx-int8"}
    assert record["agreement"]["onnx-fp32"] == 1.0
    torch_rt = load_runtime(staged, bases, "torch-fp32")
    reference = torch_rt.predict_logits(torch_rt.encode(texts[:40]))
    fp32 = load_runtime(staged, bases, "onnx-fp32")
    np.testing.assert_allclose(fp32.predict_logits(fp32.encode(texts[:40])), reference, atol=1e-3)
    int8 = load_runtime(staged, bases, "onnx-int8")
    assert (int8.predict_logits(int8.encode(texts[:40])).argmax(1) == reference.argmax(1)).mean() >= 0.9


def test_retraining_starts_from_the_tuned_encoder_and_can_add_a_label(saved, data):
    import torch

    base, tokenizer, train, val, texts, _ = data
    _, model = load_trainable(saved, [*LABELS, "other"])
    _, reference, _ = load_model_for_inference(saved)
    assert all(p.requires_grad for p in model.encoder.parameters())
    assert model.classifier.out_features == 4
    for key, value in reference.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)
    cfg = load_preset("default", method="contrastive", **{**CFG, "contrastive_steps": 2, "head_epochs": 10})
    outcome = fit_contrastive(model, train, val, cfg, pad_id=tokenizer.pad_token_id, num_labels=4, device="cpu",
                              bf16=False, reporter=RecordingReporter())
    assert outcome.history[0]["step"] == 2 and outcome.steps == 12


def test_hf_export_is_the_tuned_encoder_with_its_head_and_reproduces_the_logits(saved, data, tmp_path):
    import json

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from tailor.models.export import export_artifact, export_formats

    _, _, _, _, texts, _ = data
    assert export_formats("classify", "contrastive") == ("hf", "onnx")
    files = export_artifact(saved, "hf", tmp_path / "hf")
    assert {"config.json", "model.safetensors", "head.safetensors", "tailor_model.json", "tokenizer.json"} <= set(files)
    out = tmp_path / "hf"
    encoder, tokenizer = AutoModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    head = load_file(str(out / "head.safetensors"))
    assert json.loads((out / "tailor_model.json").read_text())["labels"] == LABELS
    batch = tokenizer(texts[:8], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    embedding = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    logits = (embedding @ head["weight"].T + head["bias"]).numpy()
    expected = TextClassifier.from_dir(saved, device="cpu")
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), -1).numpy(),
                               expected.predict_proba(texts[:8]), atol=1e-5)


def test_the_search_space_and_the_card_name_the_method():
    import optuna

    from tailor.models.card import METHOD_TAGS, METHODS
    from tailor.train.search import suggest

    trial = optuna.trial.FixedTrial({"contrastive_lr": 3e-5, "contrastive_steps": 30, "head_lr": 0.01})
    assert suggest(trial, "contrastive") == {"contrastive_lr": 3e-5, "contrastive_steps": 30, "head_lr": 0.01}
    assert METHOD_TAGS["contrastive"] == "setfit" and METHODS["contrastive"].startswith("contrastive few-shot")
