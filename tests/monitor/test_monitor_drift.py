"""Input drift: the statistics on constructed samples, and the verdict on real texts embedded by the real
MiniLM encoder: a different source is drift, a resample of the training source is not."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tailor.data.fingerprint import fingerprint, script_shares, text_features
from tailor.monitor.drift import (
    PERMUTATIONS, EmbeddingCache, domain_classifier, drift_section, language_drift, length_drift,
    mmd_permutation_test, unknown_token_drift,
)
from tailor.monitor.records import PredictionRecord

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def _texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def _records(texts: list[str], stored: bool = True) -> list[PredictionRecord]:
    return [PredictionRecord(id=f"pred-{i}", tenant="acme", kind="classification", model="m", model_name="m",
                             version=1, prompt_tokens=10, input={"text": t} if stored else None,
                             features=text_features(t, unknown_tokens=0)) for i, t in enumerate(texts)]


def test_mmd_permutation_test_finds_a_shift_and_not_a_resample():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 8))
    shifted = rng.normal(loc=0.5, size=(100, 8))
    statistic, p_value = mmd_permutation_test(shifted, reference)
    assert statistic > 0 and p_value == 1 / (1 + PERMUTATIONS)  # no relabelling comes close
    same = [mmd_permutation_test(rng.normal(size=(100, 8)), reference, seed=s)[1] for s in range(5)]
    assert min(same) > 0.01


def test_domain_classifier_auc_is_half_for_one_source_and_near_one_for_two():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(300, 8))
    auc_same, _ = domain_classifier(rng.normal(size=(100, 8)), reference)
    auc_shifted, novelty = domain_classifier(rng.normal(loc=1.5, size=(100, 8)), reference)
    assert 0.35 < auc_same < 0.65 and auc_shifted > 0.95
    assert novelty.shape == (100,) and novelty.mean() > 0.8


def test_length_language_and_unknown_tokens_compare_with_training():
    longer = length_drift([100] * 40, [20] * 50)
    assert longer.pop("p_value") < 1e-20
    assert longer == {"texts": 40, "mean_chars": 100.0, "training_mean_chars": 20.0, "ks": 1.0, "drifted": True}
    assert length_drift([20, 21] * 20, [20, 21] * 25)["drifted"] is False
    assert length_drift([100] * 10, [20] * 50)["ks"] is None  # too few texts to judge
    chinese = language_drift(["cjk"] * 30 + ["latin"] * 10, {"latin": 1.0})
    assert chinese == {"served": {"cjk": 0.75, "latin": 0.25}, "training": {"latin": 1.0}, "distance": 0.75,
                       "drifted": True}
    assert language_drift(["latin"] * 39 + [None], {"latin": 1.0})["drifted"] is False
    assert unknown_token_drift(50, 1000, 40, 0.001) == {"rate": 0.05, "training_rate": 0.001, "drifted": True}
    assert unknown_token_drift(5, 1000, 40, 0.001)["drifted"] is False


def test_fingerprint_samples_texts_and_counts_scripts():
    texts = [f"text number {i}" for i in range(1500)] + ["中文文本"] * 10
    sampled = fingerprint(texts, sample=1000, seed=3)
    assert sampled["rows"] == 1510 and len(sampled["texts"]) == 1000 and len(set(sampled["texts"])) > 900
    assert sampled["chars"] == [len(t) for t in sampled["texts"]] and sampled["unknown_token_rate"] is None
    assert fingerprint(texts, sample=1000, seed=3)["texts"] == sampled["texts"]  # seeded
    assert script_shares(["latin", "cjk", None, "latin"]) == {"cjk": 0.25, "latin": 0.5, "none": 0.25}


def test_a_version_without_fingerprint_says_so():
    section = drift_section(_records(["a text"] * 40), None, None)
    assert section["verdict"] == "insufficient_data"
    assert "no training fingerprint" in section["reasons"][0]


@pytest.fixture(scope="module")
def minilm_embed():
    from tailor.models.embed import TextEncoder

    encoder = TextEncoder.from_base("minilm-l6")
    return EmbeddingCache().embedder(("minilm-l6",), lambda texts: encoder.embed(texts)[0])


def test_another_source_is_drift_and_a_resample_is_not(minilm_embed):
    rng = np.random.default_rng(0)
    training = _texts(DATASETS / "clinc150" / "finance_train.csv")
    reference = fingerprint(training, sample=500)
    same_source = list(rng.choice(_texts(DATASETS / "clinc150" / "finance_test.csv"), 150, replace=False))
    other_source = list(rng.choice(_texts(DATASETS / "sms_spam" / "test.csv"), 150, replace=False))

    calm = drift_section(_records(same_source), reference, minilm_embed)
    assert calm["verdict"] == "no_drift" and calm["reasons"] == []
    assert calm["embedding"]["p_value"] > 0.01 and calm["embedding"]["domain_auc"] < 0.65

    shifted = drift_section(_records(other_source), reference, minilm_embed)
    assert shifted["verdict"] == "drift"
    assert shifted["embedding"]["p_value"] == round(1 / (1 + PERMUTATIONS), 6)
    assert shifted["embedding"]["domain_auc"] > 0.95
    assert shifted["reasons"][0].startswith("embeddings: served texts told apart from training texts with AUC")
    assert len(shifted["novel_examples"]) == 5
    assert {e["prediction_id"] for e in shifted["novel_examples"]} <= {f"pred-{i}" for i in range(150)}

    # unstored traffic: the features still judge length and language, the embedding test says what it needs
    unstored = drift_section(_records(other_source, stored=False), reference, minilm_embed)
    assert unstored["embedding"]["skipped"].startswith("0 stored texts in the window; the embedding test needs 30")
    assert unstored["length"]["texts"] == 150 and unstored["novel_examples"] == []


def test_the_fingerprint_is_in_random_order_so_any_prefix_is_a_sample():
    by_label = [f"{label} text {i}" for label in ("a", "b", "c", "d") for i in range(100)]  # a file sorted by label
    sampled = fingerprint(by_label, sample=1000)
    assert sorted(sampled["texts"]) == sorted(by_label)  # all of them, as there are fewer than the sample
    assert {t.split()[0] for t in sampled["texts"][:40]} == {"a", "b", "c", "d"}
