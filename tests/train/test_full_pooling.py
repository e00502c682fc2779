"""Method full over the mean-pooled embedding (``full_pooling``; me5-small's default, whose pooler was never
trained): the head fitted first, then everything trains; saved as ``encoder/`` + ``head.safetensors``; it
serves, exports and retrains like any version. Run here on minilm-l6 (fast) with ``full_pooling="mean"``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tailor
from tailor.catalog import CATALOG, resolve_base
from tailor.models.classifier import ClassifierSpec, build_model, pooling_for
from tailor.models.export import export_version
from tailor.registry.service import open_registry

TEXTS = ["$TSLA falls 8% after delivery miss", "Upgrade: analysts lift target on $NVDA", "Markets open at 9:30"]


@pytest.fixture(scope="module")
def pooled(session_home, small_train_csv, small_test_csv):
    return tailor.fine_tune(small_train_csv, eval_file=small_test_csv, name="pooled-full", method="full",
                            full_pooling="mean", epochs=2, batch_size=8, seed=0)


def test_the_catalog_says_which_bases_mean_pool_for_full():
    assert (CATALOG["me5-small"].full_pooling, CATALOG["me5-small"].frozen_word_embeddings) == ("mean", True)
    assert (CATALOG["minilm-l6"].full_pooling, CATALOG["minilm-l6"].frozen_word_embeddings) == ("pooler", False)
    minilm = resolve_base("minilm-l6")
    assert [pooling_for(m, minilm) for m in ("full", "lora", "head", "contrastive")] == [
        "pooler", "pooler", "mean", "mean"]
    assert pooling_for("full", minilm, "mean") == "mean" and pooling_for("lora", minilm, "mean") == "pooler"


def test_frozen_word_embeddings_leave_the_rest_trainable():
    from dataclasses import replace

    base = replace(resolve_base("minilm-l6"), frozen_word_embeddings=True)
    model = build_model("full", base, ["a", "b"], full_pooling="mean")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["encoder.embeddings.word_embeddings.weight"]
    hf = build_model("full", base, ["a", "b"])
    assert [name for name, p in hf.named_parameters() if not p.requires_grad] == [
        "bert.embeddings.word_embeddings.weight"]


def test_a_pooled_full_version_holds_its_encoder_and_head(pooled):
    directory = open_registry().artifact_dir(pooled.version)
    assert (directory / "encoder" / "model.safetensors").is_file() and (directory / "head.safetensors").is_file()
    assert not (directory / "model").exists()
    spec = json.loads((directory / "tailor_model.json").read_text())
    assert {k: spec[k] for k in ("method", "pooling", "format_version")} == {
        "method": "full", "pooling": "mean", "format_version": 2}
    assert pooled.version.lineage["pooling"] == "mean"
    assert pooled.metrics["macro_f1"] > pooled.baseline["macro_f1"] + 0.2
    served = tailor.load_model("pooled-full").predict_proba(TEXTS)
    torch_fp32 = tailor.load_model("pooled-full", runtime="torch-fp32").predict_proba(TEXTS)
    np.testing.assert_allclose(served, torch_fp32, atol=0.05)  # int8 or fp32 ONNX, as the gate chose


def test_a_pooled_full_version_exports_its_encoder_and_head(pooled, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    out = tmp_path / "hf"
    result = export_version("pooled-full", "hf", out)
    assert result["files"] == ["README.md", "config.json", "head.safetensors", "model.safetensors",
                               "tailor_model.json", "tokenizer.json", "tokenizer_config.json"]
    assert "mean-pooled, L2-normalised embedding" in (out / "README.md").read_text()
    encoder, tokenizer = AutoModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    head = load_file(str(out / "head.safetensors"))
    batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    embedding = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    proba = torch.softmax(embedding @ head["weight"].T + head["bias"], -1).numpy()
    expected = tailor.load_model("pooled-full", runtime="torch-fp32").predict_proba(TEXTS)
    np.testing.assert_allclose(proba, expected, atol=1e-4)


def test_a_pooled_full_version_retrains_from_its_own_weights(pooled, small_train_csv):
    from tailor.train.retrain import run_retrain

    again = run_retrain("pooled-full", file=small_train_csv, feedback=False, epochs=1, batch_size=8, seed=0)
    directory = open_registry().artifact_dir(again.version)
    assert again.version.lineage["parent"] == pooled.version.ref
    assert ClassifierSpec.load(directory).pooling == "mean" and (directory / "encoder").is_dir()
    assert again.metrics["macro_f1"] > again.baseline["macro_f1"] + 0.1


def test_a_format_1_full_spec_reads_as_the_pooler(tmp_path):
    (tmp_path / "tailor_model.json").write_text(json.dumps({
        "method": "full", "base_model": "minilm-l6", "labels": ["a", "b"], "max_length": 128, "pooling": "mean",
        "task": "classify", "format_version": 1}))
    spec = ClassifierSpec.load(tmp_path)
    assert (spec.pooling, spec.pooled, spec.weights_dir) == ("pooler", False, "model")
