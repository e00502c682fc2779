"""Exports load in plain transformers / PEFT / ONNX Runtime and reproduce the version's predictions."""

import numpy as np
import pytest

import tailor
from tailor.errors import UsageError
from tailor.models.export import export_version

TEXTS = ["$TSLA falls 8% after delivery miss", "Upgrade: analysts lift target on $NVDA", "Markets open at 9:30"]


def _tailor_proba(ref):
    return tailor.load_model(ref, runtime="torch-fp32").predict_proba(TEXTS)  # exports are fp32


def _hf_proba(directory):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    with torch.inference_mode():
        logits = model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits
    return torch.softmax(logits, -1).numpy(), model.config.id2label


@pytest.mark.parametrize("method", ["full", "lora"])
def test_hf_export_loads_with_plain_transformers(trained, tmp_path, method):
    out = tmp_path / "hf"
    result = export_version(f"small-{method}", "hf", out)
    assert result["files"] == ["README.md", "config.json", "model.safetensors", "tokenizer.json",
                               "tokenizer_config.json"]  # README.md: the model card (tests/models/test_models_card.py)
    proba, id2label = _hf_proba(out)
    assert id2label == {0: "bearish", 1: "bullish", 2: "neutral"}
    np.testing.assert_allclose(proba, _tailor_proba(f"small-{method}"), atol=1e-4)


def test_peft_export_loads_with_peft(trained, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "peft"
    result = export_version("small-lora", "peft", out)
    assert result["files"] == ["README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                               "tokenizer_config.json"]
    import json

    base_path = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=3)
    model = PeftModel.from_pretrained(base, out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        proba = torch.softmax(model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits, -1).numpy()
    np.testing.assert_allclose(proba, _tailor_proba("small-lora"), atol=1e-4)


@pytest.mark.parametrize("method", ["full", "head"])
def test_onnx_export_runs_in_onnxruntime(trained, tmp_path, method):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    out = tmp_path / "onnx"
    result = export_version(f"small-{method}", "onnx", out)
    assert result["files"] == ["model.onnx", "tailor_model.json", "tokenizer.json", "tokenizer_config.json"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    enc = AutoTokenizer.from_pretrained(out)(TEXTS, return_tensors="np", padding=True)
    logits = session.run(["logits"], {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})[0]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(proba, _tailor_proba(f"small-{method}"), atol=1e-4)


def test_unsupported_exports_are_refused_and_leave_nothing(trained, tmp_path):
    with pytest.raises(UsageError, match="^--format peft needs a LoRA version; this one was trained with method full$"):
        export_version("small-full", "peft", tmp_path / "x")
    with pytest.raises(UsageError, match="head-only version has no Hugging Face"):
        export_version("small-head", "hf", tmp_path / "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not empty"):
        export_version("small-full", "hf", tmp_path / "busy")


def test_an_export_is_readable_by_everyone_like_a_copy(trained, tmp_path):
    out = tmp_path / "shared"
    out.mkdir(mode=0o700)  # an empty directory is replaced, taking the export's modes
    export_version("small-head", "onnx", out)
    assert oct(out.stat().st_mode & 0o777) == "0o755"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {
        name: "0o644" for name in ("model.onnx", "tailor_model.json", "tokenizer.json", "tokenizer_config.json")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]  # no temporary directory left behind
