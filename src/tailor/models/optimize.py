"""Choose each classifier version's inference runtime: build its ONNX graphs, score every runtime on the
version's validation set, and keep the fastest one that is accurate enough.

The gate: a runtime other than ``torch-fp32`` (the reference) is allowed only when its macro-F1 on the
validation rows is at least torch-fp32's minus ``gate_points``. Macro-F1 is in points, 0..100, so the
default 0.5 points is 0.005 on sklearn's 0..1 scale. Without validation rows ``onnx-fp32`` (checked to
match the PyTorch logits within 1e-3 when built) is allowed and int8 is not.

The choice and every runtime's score and speed are written to the version's ``serving.json``::

    {"runtime": "onnx-int8", "gate_points": 0.5, "validation_rows": 183,
     "macro_f1": {"torch-fp32": 81.12, "onnx-fp32": 81.12, "onnx-int8": 80.9},
     "items_per_s": {"torch-fp32": 70.1, "onnx-fp32": 150.3, "onnx-int8": 480.2},
     "allowed": ["torch-fp32", "onnx-fp32", "onnx-int8"],
     "reason": "fastest runtime within 0.5 points of torch-fp32", "seconds": 6.1}
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from tailor.errors import TailorError, UsageError
from tailor.models.classifier import LORA_TARGETS, ClassifierSpec
from tailor.models.runtimes import (ONNX_FILES, RECORD_FILE, RUNTIME_DIR, RUNTIMES, SharedBases, default_bases,
                                    load_runtime, pad_batch)

GRAPH_KINDS = ("encoder", "lora")
CONVERTER = "tailor-onnx-2"
TIMING_ROWS = 32
TIMING_TEXTS = ["Shares rose after the company beat earnings expectations",
                "The central bank left interest rates unchanged on Wednesday"]


def quantize_int8(src: Path, dst: Path) -> None:
    """ONNX Runtime dynamic int8 quantization of ``src``'s weight initializers: signed int8 weights with one
    scale per output channel, activations quantized per batch at run time. MatMuls whose second input is not
    a weight (attention scores, LoRA slots) stay fp32.

    Per-channel scales cost no measurable speed here and keep more labels: on the quickstart data's 90
    validation rows per-tensor int8 lost 3.4 (head) and 6.6 (full) macro-F1 points, per-channel none.
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process goes to the root logger: not for users
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)


def build_full_graphs(artifact_dir: Path) -> list[Path]:
    """A full version's own ``runtime/model.onnx`` (ids -> logits, checked against PyTorch) and
    ``runtime/model.int8.onnx``, written into ``artifact_dir``."""
    from tailor.models.classifier import load_model_for_inference
    from tailor.models.export import export_logits_graph

    _, model, tokenizer = load_model_for_inference(artifact_dir)
    out = artifact_dir / RUNTIME_DIR
    out.mkdir(exist_ok=True)
    export_logits_graph(model, tokenizer, out / ONNX_FILES["onnx-fp32"])
    quantize_int8(out / ONNX_FILES["onnx-fp32"], out / ONNX_FILES["onnx-int8"])
    return [out / name for name in ONNX_FILES.values()]


def export_encoder_graph(base_path: str, path: Path) -> None:
    """The base's ids -> L2-normalised mean-pooled embedding graph (exactly ``build_pooled_head_model``'s
    ``embed``), output ``embedding``, checked against PyTorch."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tailor.models.classifier import build_pooled_head_model
    from tailor.models.export import export_graph, sample_inputs, verify_graph

    pooled = build_pooled_head_model(AutoModel.from_pretrained(base_path), 1).eval()

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pooled = pooled

        def forward(self, input_ids, attention_mask):
            return self.pooled.embed(input_ids, attention_mask)

    sample = sample_inputs(AutoTokenizer.from_pretrained(base_path))
    args = (sample["input_ids"], sample["attention_mask"])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "embedding": {0: "batch"}}
    export_graph(Embed().eval(), args, path, ["input_ids", "attention_mask"], ["embedding"], axes)
    with torch.inference_mode():
        expected = Embed()(*args).numpy()
    verify_graph(path, {"input_ids": args[0].numpy(), "attention_mask": args[1].numpy()}, expected, "embedding")


def lora_slot_model(base_path: str):
    """The base's sequence classifier with LoRA slots, for export.

    Every ``Linear`` named in ``LORA_TARGETS`` computes ``W x + b + (x @ down) @ up`` and the classifier
    computes ``x @ weight_t + bias``, where ``down``, ``up``, ``weight_t`` and ``bias`` are arguments of
    ``forward(input_ids, attention_mask, *slots)`` (in ``slot_names`` order), so one graph serves every LoRA
    version of the base, whatever its rank or label count.

    Returns:
        ``(module, slot_names)``.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    inner = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=2).eval()
    if not isinstance(getattr(inner, "classifier", None), torch.nn.Linear):
        raise TailorError(f"{type(inner).__name__} has no single Linear classifier: no LoRA slot graph for it")

    class Slotted(torch.nn.Module):
        def __init__(self, base, head: bool):
            super().__init__()
            self.base = base
            self.head = head
            self.slots: tuple = ()

        def forward(self, x):
            if self.head:
                weight_t, bias = self.slots
                return torch.matmul(x, weight_t) + bias
            down, up = self.slots
            return self.base(x) + torch.matmul(torch.matmul(x, down), up)

    targets = [name for name, module in inner.named_modules()
               if isinstance(module, torch.nn.Linear) and name.rpartition(".")[2] in LORA_TARGETS]
    wrapped = []
    for name in targets + ["classifier"]:
        parent_name, _, child = name.rpartition(".")
        parent = inner.get_submodule(parent_name) if parent_name else inner
        slot = Slotted(getattr(parent, child), head=name == "classifier")
        setattr(parent, child, slot)
        wrapped.append(slot)
    slot_names = [f"{name}.{part}" for name in targets for part in ("lora_down", "lora_up")]
    slot_names += ["classifier.weight_t", "classifier.bias"]

    class SlotGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, *slots):
            for k, module in enumerate(wrapped):
                module.slots = slots[2 * k:2 * k + 2]
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    return SlotGraph().eval(), slot_names


def export_lora_graph(base_path: str, path: Path) -> None:
    """The base's LoRA slot graph (see :func:`lora_slot_model`), checked against PyTorch with random rank-4
    slots and a 3-label head."""
    import torch
    from transformers import AutoTokenizer

    from tailor.models.export import export_graph, sample_inputs, verify_graph

    model, slot_names = lora_slot_model(base_path)
    generator = torch.Generator().manual_seed(0)
    slots = []
    for name in slot_names:
        if name == "classifier.weight_t":
            shape = (model.inner.config.hidden_size, 3)
        elif name == "classifier.bias":
            shape = (3,)
        else:
            linear = model.inner.get_submodule(name.rpartition(".")[0]).base
            shape = (linear.in_features, 4) if name.endswith("lora_down") else (4, linear.out_features)
        slots.append(torch.randn(shape, generator=generator) * 0.05)
    sample = sample_inputs(AutoTokenizer.from_pretrained(base_path))
    args = (sample["input_ids"], sample["attention_mask"], *slots)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "labels"}, "classifier.weight_t": {1: "labels"}, "classifier.bias": {0: "labels"}}
    for k, name in enumerate(slot_names[:-2]):
        axes[name] = {1: f"rank{k // 2}"} if name.endswith("lora_down") else {0: f"rank{k // 2}"}
    names = ["input_ids", "attention_mask", *slot_names]
    export_graph(model, args, path, names, ["logits"], axes)
    with torch.inference_mode():
        expected = model(*args).numpy()
    verify_graph(path, {name: value.numpy() for name, value in zip(names, args)}, expected)


EXPORTERS = {"encoder": export_encoder_graph, "lora": export_lora_graph}


def _weights_file(base_path: str) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (Path(base_path) / name).is_file():
            return Path(base_path) / name
    raise TailorError(f"base {base_path} has no local weights file to build ONNX graphs from")


def _cache_name(base_name: str) -> str:
    """A directory name for a base: the catalog id as is, a path or hub name made safe."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base_name).strip("-.") or "base"


def ensure_base_graphs(base_name: str, kind: str, cache_dir: Path, progress=None) -> Path:
    """The sealed directory ``<cache_dir>/<base>/<kind>`` holding the base's ``model.onnx`` and
    ``model.int8.onnx`` for ``kind`` (``encoder`` or ``lora``), built on first use and rebuilt when its marker
    does not match the base's weights.

    Raises:
        TailorError: an unknown kind, or a base without local weights.
    """
    from tailor.catalog import resolve_base
    from tailor.models.conversion import check_marker, publish_dir, reuse_conversion, write_marker
    from tailor.runtime import setup_torch
    from tailor.train.progress import RecordingReporter

    if kind not in EXPORTERS:
        raise TailorError(f"unknown graph kind {kind!r}; kinds are: {', '.join(GRAPH_KINDS)}")
    base = resolve_base(base_name)
    weights = _weights_file(base.path)
    out_dir = Path(cache_dir) / _cache_name(base.name) / kind
    files = list(ONNX_FILES.values())
    converter = f"{CONVERTER}-{kind}"
    if reuse_conversion(out_dir, lambda d: check_marker(d, weights, converter, expected_files=files),
                        progress or RecordingReporter(), base.name):
        return out_dir

    def build(tmp: Path) -> None:
        setup_torch()
        EXPORTERS[kind](base.path, tmp / ONNX_FILES["onnx-fp32"])
        quantize_int8(tmp / ONNX_FILES["onnx-fp32"], tmp / ONNX_FILES["onnx-int8"])
        write_marker(tmp, weights, converter, files)

    return publish_dir(out_dir, build)


def build_graphs(staged_dir: Path, bases: SharedBases) -> None:
    """The graphs a version's method needs: its own (full) or its base's (head: encoder, lora: slot graph)."""
    spec = ClassifierSpec.load(staged_dir)
    if spec.method == "full":
        build_full_graphs(staged_dir)
    else:
        bases.graph_dir(spec.base_model, "encoder" if spec.method == "head" else "lora")


def macro_f1_points(runtime, encoded, targets: list[str]) -> float:
    """Macro-F1 of ``runtime`` on the encoded rows, in points (0..100), 2 decimals."""
    from tailor.train.evaluate import macro_f1

    predictions = [runtime.labels[i] for i in runtime.predict_logits(encoded).argmax(1)]
    return round(100 * macro_f1(targets, predictions), 2)


def items_per_second(runtime, texts: list[str], rows: int = TIMING_ROWS) -> float:
    """Texts per second at batch ``rows`` (the texts cycled to fill it): best of two runs after a warm-up."""
    from tailor.runtime import setup_torch

    setup_torch()
    pool = texts or TIMING_TEXTS
    batch = pad_batch(runtime.encode([pool[i % len(pool)] for i in range(rows)]).input_ids, runtime.pad_id)
    runtime.logits(batch[0][:2], batch[1][:2])
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        runtime.logits(*batch)
        best = min(best, time.perf_counter() - started)
    return round(rows / best, 1)


def choose_runtime(macro_f1: dict, items_per_s: dict, gate_points: float, validation_rows: int,
                   forced: str = "auto") -> tuple[str, list[str], str]:
    """The gate: ``(chosen runtime, allowed runtimes, reason)``.

    torch-fp32 is always allowed; another runtime is allowed when its macro-F1 (points) is at least
    torch-fp32's minus ``gate_points``, or, without validation rows, when it is onnx-fp32. The fastest
    allowed runtime is chosen unless ``forced`` names one.
    """
    if validation_rows == 0:
        allowed = ["torch-fp32", "onnx-fp32"]
        why = "no validation rows: int8 is not allowed without a score; fastest fp32 runtime"
    else:
        floor = macro_f1["torch-fp32"] - gate_points
        allowed = [name for name in RUNTIMES if name == "torch-fp32" or macro_f1[name] >= floor - 1e-9]
        why = f"fastest runtime within {gate_points:g} points of torch-fp32"
    if forced != "auto":
        return forced, allowed, f"forced by the config (runtime={forced})"
    return max(allowed, key=lambda name: items_per_s[name]), allowed, why


def optimize_version(staged_dir: Path, texts: list[str], labels: list[str], bases: SharedBases | None = None, *,
                     gate_points: float = 0.5, runtime: str = "auto") -> dict:
    """Build the version's graphs, score and time every runtime, choose one, and write ``serving.json``.

    Args:
        staged_dir: the version's (staged, not yet published) artifact directory.
        texts / labels: the job's validation rows.
        bases: shared base graphs and sessions (default: this process's, see :func:`default_bases`).
        gate_points: how far below torch-fp32's macro-F1 (in points, 0..100) a faster runtime may score.
        runtime: ``auto`` (the gate chooses) or one of ``RUNTIMES`` (forced; still scored and recorded).

    Returns:
        The record written to ``serving.json`` (see the module docstring). A version whose graphs cannot be
        built (an architecture the exporter or the LoRA slot graph does not handle) is recorded on torch-fp32,
        the failure in ``reason``, rather than failing its job.

    Raises:
        UsageError: an unknown ``runtime``.
    """
    if runtime != "auto" and runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; runtimes are: auto, {', '.join(RUNTIMES)}")
    started = time.monotonic()
    staged_dir = Path(staged_dir)
    bases = bases or default_bases()
    try:
        build_graphs(staged_dir, bases)
        built = RUNTIMES
    except Exception as exc:  # noqa: BLE001 - a graph that cannot be built must not cost the trained version
        built, failure = RUNTIMES[:1], f"{type(exc).__name__}: {exc}"
        shutil.rmtree(staged_dir / RUNTIME_DIR, ignore_errors=True)
    scores, speeds = dict.fromkeys(RUNTIMES), dict.fromkeys(RUNTIMES)
    for name in built:
        loaded = load_runtime(staged_dir, bases, name)
        scores[name] = macro_f1_points(loaded, loaded.encode(texts), list(labels)) if texts else None
        speeds[name] = items_per_second(loaded, list(texts))
    if built == RUNTIMES:
        chosen, allowed, reason = choose_runtime(scores, speeds, gate_points, len(texts), runtime)
    else:
        chosen, allowed, reason = "torch-fp32", ["torch-fp32"], f"no ONNX graphs ({failure[:300]})"
    record = {"runtime": chosen, "gate_points": gate_points, "validation_rows": len(texts), "macro_f1": scores,
              "items_per_s": speeds, "allowed": allowed, "reason": reason,
              "seconds": round(time.monotonic() - started, 2)}
    (staged_dir / RECORD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record


def describe_record(record: dict) -> str:
    """One line for the job's log: ``serving runtime: onnx-int8 (macro-F1 80.90 vs 81.12 fp32)``."""
    scores = record["macro_f1"]
    if scores.get("torch-fp32") is None:
        return f"serving runtime: {record['runtime']} ({record['reason']})"
    return (f"serving runtime: {record['runtime']} (macro-F1 {scores[record['runtime']]:.2f} vs "
            f"{scores['torch-fp32']:.2f} fp32)")
