"""Inference runtimes and the accuracy gate: ONNX graphs match PyTorch, head and LoRA versions share their
base's session, the gate's rule and record, and versions without a record."""

import json
import shutil

import numpy as np
import pytest

from samples import SAMPLE_TEST, sample_rows
from tailor.models.classifier import TextClassifier, load_model_for_inference
from tailor.models.optimize import choose_runtime, optimize_version
from tailor.models.runtimes import RUNTIMES, default_bases, load_runtime, pad_batch, read_record
from tailor.registry.service import open_registry

RECORD_KEYS = {"runtime", "gate_points", "validation_rows", "macro_f1", "items_per_s", "allowed", "reason", "seconds"}
TEXTS = [text for text, _ in sample_rows(SAMPLE_TEST)[:40]]
LABELS = [label for _, label in sample_rows(SAMPLE_TEST)[:40]]


def _artifact(trained, method):
    return open_registry().artifact_dir(trained[method].version)


def _logits(runtime, texts=TEXTS):
    return runtime.logits(*pad_batch(runtime.encode(texts).input_ids, runtime.pad_id))


def _copy(trained, method, tmp_path):
    return shutil.copytree(_artifact(trained, method), tmp_path / method)


@pytest.mark.parametrize("method", ["full", "lora", "head"])
def test_jobs_record_the_gate_in_the_artifact_and_the_metrics(trained, method):
    record = read_record(_artifact(trained, method))
    assert set(record) == RECORD_KEYS
    assert record["gate_points"] == 0.5 and record["validation_rows"] == 6
    assert set(record["macro_f1"]) == set(record["items_per_s"]) == set(RUNTIMES)
    floor = record["macro_f1"]["torch-fp32"] - 0.5
    assert record["allowed"] == [r for r in RUNTIMES if r == "torch-fp32" or record["macro_f1"][r] >= floor]
    assert record["runtime"] == max(record["allowed"], key=record["items_per_s"].get)
    assert record["reason"] == "fastest runtime within 0.5 points of torch-fp32"
    assert trained[method].version.metrics["serving"] == record


def test_the_gate_rule_on_exact_scores():
    speeds = {"torch-fp32": 70.0, "onnx-fp32": 150.0, "onnx-int8": 480.0}
    scores = {"torch-fp32": 80.0, "onnx-fp32": 80.0, "onnx-int8": 79.5}
    assert choose_runtime(scores, speeds, 0.5, 100) == (
        "onnx-int8", ["torch-fp32", "onnx-fp32", "onnx-int8"], "fastest runtime within 0.5 points of torch-fp32")
    scores["onnx-int8"] = 79.49
    assert choose_runtime(scores, speeds, 0.5, 100)[:2] == ("onnx-fp32", ["torch-fp32", "onnx-fp32"])
    assert choose_runtime(scores, speeds, 0.5, 100, forced="onnx-int8") == (
        "onnx-int8", ["torch-fp32", "onnx-fp32"], "forced by the config (runtime=onnx-int8)")
    empty = dict.fromkeys(RUNTIMES)
    assert choose_runtime(empty, speeds, 0.5, 0) == (
        "onnx-fp32", ["torch-fp32", "onnx-fp32"], "no validation rows: int8 is not allowed without a score; "
                                                  "fastest fp32 runtime")


def test_the_gate_accepts_and_refuses_int8_on_a_real_version(trained, tmp_path):
    staged = _copy(trained, "head", tmp_path)
    accepted = optimize_version(staged, TEXTS, LABELS, gate_points=100)
    assert accepted["allowed"] == list(RUNTIMES) and accepted["validation_rows"] == 40
    assert json.loads((staged / "serving.json").read_text()) == accepted
    assert accepted["macro_f1"]["onnx-fp32"] == accepted["macro_f1"]["torch-fp32"]
    refused = optimize_version(staged, TEXTS, LABELS, gate_points=-100)
    assert refused["allowed"] == ["torch-fp32"] and refused["runtime"] == "torch-fp32"
    assert refused["macro_f1"] == accepted["macro_f1"]
    forced = optimize_version(staged, TEXTS, LABELS, runtime="onnx-int8")
    assert forced["runtime"] == "onnx-int8" and forced["reason"] == "forced by the config (runtime=onnx-int8)"
    assert load_runtime(staged, default_bases()).name == "onnx-int8"


def test_without_validation_rows_int8_is_not_allowed(trained, tmp_path):
    staged = _copy(trained, "head", tmp_path)
    record = optimize_version(staged, [], [])
    assert record["macro_f1"] == dict.fromkeys(RUNTIMES) and record["validation_rows"] == 0
    assert record["allowed"] == ["torch-fp32", "onnx-fp32"] and record["runtime"] in record["allowed"]


@pytest.mark.parametrize("method", ["full", "lora", "head"])
def test_onnx_fp32_equals_torch_and_int8_mostly_agrees(trained, method):
    artifact, bases = _artifact(trained, method), default_bases()
    torch_logits = _logits(load_runtime(artifact, bases, "torch-fp32"))
    fp32 = _logits(load_runtime(artifact, bases, "onnx-fp32"))
    int8 = _logits(load_runtime(artifact, bases, "onnx-int8"))
    assert torch_logits.shape == fp32.shape == int8.shape == (40, 3)
    assert np.abs(fp32 - torch_logits).max() <= 1e-3
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.85


def test_head_versions_share_the_base_session(trained, tmp_path):
    from safetensors.numpy import load_file, save_file

    first = _artifact(trained, "head")
    second = _copy(trained, "head", tmp_path)
    head = load_file(str(second / "head.safetensors"))
    reversed_head = {"weight": head["weight"][::-1].copy(), "bias": head["bias"][::-1].copy()}
    save_file(reversed_head, str(second / "head.safetensors"))
    bases = default_bases()
    a, b = load_runtime(first, bases, "onnx-int8"), load_runtime(second, bases, "onnx-int8")
    assert a.session is b.session
    assert a.own_bytes == b.own_bytes == (3 * 384 + 3) * 4
    np.testing.assert_allclose(_logits(b), _logits(a)[:, ::-1], atol=1e-5)
    on_torch = [load_runtime(directory, bases, "torch-fp32") for directory in (first, second)]
    assert on_torch[0].module.encoder is on_torch[1].module.encoder
    assert on_torch[0].own_bytes == (3 * 384 + 3) * 4


def test_lora_versions_share_the_base_session_and_match_their_merged_models(trained, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    first = _artifact(trained, "lora")
    second = _copy(trained, "lora", tmp_path)
    path = second / "adapter" / "adapter_model.safetensors"
    state = load_file(str(path))
    generator = torch.Generator().manual_seed(1)
    save_file({k: v + 0.02 * torch.randn(v.shape, generator=generator) for k, v in state.items()}, str(path))
    bases = default_bases()
    a, b = load_runtime(first, bases, "onnx-fp32"), load_runtime(second, bases, "onnx-fp32")
    assert a.session is b.session
    # rank 16 on 36 encoder Linears and the pooler (A and B), plus the 3-label head, as float32
    per_layer = 4 * 16 * (384 + 384) + 2 * 16 * (384 + 1536)
    assert a.own_bytes == b.own_bytes == 4 * (6 * per_layer + 16 * (384 + 384) + 384 * 3 + 3)
    for runtime, directory in ((a, first), (b, second)):
        _, merged, tokenizer = load_model_for_inference(directory, merge=True)
        enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
        with torch.inference_mode():
            expected = merged(**enc).logits.numpy()
        got = runtime.logits(enc["input_ids"].numpy(), enc["attention_mask"].numpy())
        assert np.abs(got - expected).max() <= 1e-3
    assert np.abs(_logits(a) - _logits(b)).max() > 1e-2


def test_a_version_without_a_record_loads_on_torch(trained, tmp_path):
    staged = _copy(trained, "head", tmp_path)
    (staged / "serving.json").unlink()
    assert read_record(staged) is None
    assert load_runtime(staged, default_bases()).name == "torch-fp32"
    assert TextClassifier.from_dir(staged, runtime="served").runtime is None


@pytest.mark.parametrize("method", ["full", "head"])
def test_text_classifier_runs_on_the_served_runtime(trained, method):
    artifact = _artifact(trained, method)
    served = TextClassifier.from_dir(artifact, runtime="onnx-int8")
    runtime = load_runtime(artifact, default_bases(), "onnx-int8")
    assert served.runtime.name == "onnx-int8" and served.device == "cpu"
    assert [p.label for p in served.predict(TEXTS)] == [served.labels[i] for i in _logits(runtime).argmax(1)]
    assert served.model is not None and served.spec.method == method


def test_a_version_whose_graphs_fail_is_recorded_on_torch(trained, tmp_path, monkeypatch):
    import tailor.models.optimize as optimize
    from tailor.errors import TailorError

    def fail(staged_dir, bases):
        (staged_dir / "runtime").mkdir()
        raise TailorError("no graph for this architecture")

    monkeypatch.setattr(optimize, "build_graphs", fail)
    staged = _copy(trained, "head", tmp_path)
    record = optimize_version(staged, TEXTS[:6], LABELS[:6])
    assert (record["runtime"], record["allowed"]) == ("torch-fp32", ["torch-fp32"])
    assert record["reason"] == "no ONNX graphs (TailorError: no graph for this architecture)"
    assert record["macro_f1"]["onnx-int8"] is None and record["items_per_s"]["onnx-fp32"] is None
    assert not (staged / "runtime").exists()


def test_the_job_log_line():
    from tailor.models.optimize import describe_record

    record = {"runtime": "onnx-int8", "reason": "fastest runtime within 0.5 points of torch-fp32",
              "macro_f1": {"torch-fp32": 81.12, "onnx-fp32": 81.12, "onnx-int8": 80.9}}
    assert describe_record(record) == "serving runtime: onnx-int8 (macro-F1 80.90 vs 81.12 fp32)"
    record["macro_f1"] = dict.fromkeys(RUNTIMES)
    record["runtime"], record["reason"] = "onnx-fp32", "no validation rows"
    assert describe_record(record) == "serving runtime: onnx-fp32 (no validation rows)"
