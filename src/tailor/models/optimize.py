"""Choose each classifier version's inference runtime: build its ONNX graphs, score every runtime on the
version's validation set, and keep the fastest one that is accurate enough.

The gate (:func:`choose_runtime`): a runtime other than ``torch-fp32`` (the reference) is allowed when its
labels are not shown to agree with torch-fp32's on fewer than ``min_agreement`` (98%) of texts (the 95%
Wilson interval of its agreement on the validation rows reaches 98%) and the 95% paired-bootstrap interval of its macro-F1 difference does not lie wholly below ``-gate_points`` (0.5
points on 0..100). Without validation rows ``onnx-fp32`` (checked to match the PyTorch logits within 1e-3
when built) is allowed and int8 is not. Timings are taken warm, on the validation texts in length-sorted
batches of 32 as the server runs them, with the same thread count for every runtime.

The choice and every runtime's score, agreement, interval and speed are written to ``serving.json``::

    {"runtime": "onnx-int8", "gate_points": 0.5, "min_agreement": 0.98, "validation_rows": 179,
     "macro_f1": {"torch-fp32": 93.05, "onnx-fp32": 93.05, "onnx-int8": 91.95},
     "agreement": {"torch-fp32": 1.0, "onnx-fp32": 1.0, "onnx-int8": 0.9888},
     "delta_ci": {"torch-fp32": [0.0, 0.0], "onnx-fp32": [0.0, 0.0], "onnx-int8": [-2.71, 0.0]},
     "items_per_s": {"torch-fp32": 138.0, "onnx-fp32": 190.3, "onnx-int8": 480.2},
     "allowed": ["torch-fp32", "onnx-fp32", "onnx-int8"], "reason": "fastest runtime not shown to agree ...",
     "seconds": 6.1}
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from tailor.errors import TailorError, UsageError
from tailor.models.classifier import LORA_TARGETS, OWN_WEIGHTS_METHODS, ClassifierSpec
from tailor.models.export import EXPORT_ATTENTION
from tailor.models.runtimes import (ONNX_FILES, RECORD_FILE, RUNTIME_DIR, RUNTIMES, SharedBases, default_bases,
                                    load_runtime)
from tailor.stats import macro_f1_difference_interval

GRAPH_KINDS = ("encoder", "lora")
CONVERTER = "tailor-onnx-5"  # 3: int8 scaled per activation row; 4: LayerNorm outputs smoothed; 5: eager attention
CALIBRATION_ROWS = 256  # training texts whose activations set the int8 smoothing
TIMING_ROWS = 256  # validation rows timed per runtime (length-sorted batches of 32, as served)
TIMING_TEXTS = ["Shares rose after the company beat earnings expectations",
                "The central bank left interest rates unchanged on Wednesday"]


def quantize_int8(src: Path, dst: Path, calibration: list[tuple[np.ndarray, np.ndarray]] | None = None) -> None:
    """Rewrite ``src``'s MatMuls by weight matrices as int8 with one scale per weight column and one per
    activation row (token), and save the graph as ``dst``.

    Each such ``y = x @ W`` becomes: ``m = max|x|`` over the row's features; ``q = round(127 x / m)`` as
    uint8 with zero point 128 (``QuantizeLinear``); ``y = (q @ Wq) * (1/127) * w_scale * m`` with the int8
    product and the per-column scales in ONNX Runtime's fused ``MatMulIntegerToFloat``. MatMuls whose
    second input is not a weight (attention scores, LoRA slots) and everything else stay fp32.

    Why per row: ONNX Runtime's dynamic quantization scales each activation tensor as a whole, so a text's
    int8 inputs, and sometimes its label, depended on the other texts of its batch and on their padding.
    A row's scale depends only on that token's own features: a text gets the same answer alone or batched
    (tested to 1e-5), and finer scales keep more accuracy (MiniLM embeddings, cosine to fp32: 0.9971 per
    row against 0.9934 per tensor) at the same speed (128 against 126 ms for 32 texts on one core).

    Smoothing (SmoothQuant, Xiao et al. 2023), with ``calibration`` batches ``(input_ids, attention_mask)``:
    a LayerNorm's output has a few channels up to ten times larger than the rest, and one row scale for all
    of them leaves the others few levels. Each such input is divided per channel by
    ``s = sqrt(max|x_c| / max|W_c|)`` (maxima over the calibration tokens and over the weights reading it)
    before it is quantized, and the weights' rows are multiplied by ``s``: the product is unchanged and the
    outliers move into the weights, which are scaled per column. The calibration only sets ``s``; nothing is
    clipped, so texts unlike it are answered as exactly as without it. Measured (MiniLM fine-tuned on
    finance tweets, 2,388 test texts): label agreement with fp32 0.9879 -> 0.9916, macro-F1 66.73 -> 67.75
    (fp32 67.53); clinc150 finance intents 0.9967 -> 1.0; about 5% slower.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    matrices = {node.input[1]: numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
                for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights
                and len(weights[node.input[1]].dims) == 2}
    readers: dict[str, list[np.ndarray]] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in matrices:
            readers.setdefault(node.input[0], []).append(matrices[node.input[1]])
    smoothing = smoothing_factors(src, readers, calibration) if calibration else {}
    constants = {"q8/a_scale": np.array(1 / 127, dtype=np.float32),
                 "q8/a_zero_point": np.array(128, dtype=np.uint8), "q8/eps": np.array(1e-12, dtype=np.float32)}
    nodes, quantized_rows = [], {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in matrices:
            nodes.append(node)
            continue
        weight, x, w = weights[node.input[1]], node.input[0], matrices[node.input[1]]
        if x in smoothing:
            w = w * smoothing[x][:, None]
        scale = np.abs(w).max(axis=0) / 127
        scale[scale == 0] = 1.0
        constants[f"{weight.name}/q8"] = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        constants[f"{weight.name}/q8_scale"] = scale.astype(np.float32)
        if x not in quantized_rows:  # q, k and v read the same activations: quantize them once
            p = f"{x}/q8"
            source = x
            if x in smoothing:
                constants[f"{p}/inverse_smoothing"] = (1 / smoothing[x]).astype(np.float32)
                nodes.append(helper.make_node("Mul", [x, f"{p}/inverse_smoothing"], [f"{p}/smoothed"]))
                source = f"{p}/smoothed"
            nodes += [helper.make_node("Abs", [source], [f"{p}/abs"]),
                      helper.make_node("ReduceMax", [f"{p}/abs"], [f"{p}/rowmax0"], axes=[-1], keepdims=1),
                      helper.make_node("Max", [f"{p}/rowmax0", "q8/eps"], [f"{p}/rowmax"]),
                      helper.make_node("Div", [source, f"{p}/rowmax"], [f"{p}/unit"]),
                      helper.make_node("QuantizeLinear", [f"{p}/unit", "q8/a_scale", "q8/a_zero_point"], [f"{p}/q"])]
            quantized_rows[x] = (f"{p}/q", f"{p}/rowmax")
        q, rowmax = quantized_rows[x]
        out = node.output[0]
        nodes += [helper.make_node("MatMulIntegerToFloat", [q, f"{weight.name}/q8", "q8/a_scale",
                                                            f"{weight.name}/q8_scale", "q8/a_zero_point"],
                                   [f"{out}/q8"], domain="com.microsoft"),
                  helper.make_node("Mul", [f"{out}/q8", rowmax], [out])]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + [numpy_helper.from_array(v, k) for k, v in constants.items() if k in used])
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(dst))


def smoothing_factors(src: Path, readers: dict[str, list[np.ndarray]],
                      calibration: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{activation: s}`` for every LayerNorm output in ``readers`` (activation -> the weight matrices that
    read it): ``s_c = sqrt(max|x_c| / max_W |W_c|)`` per channel ``c``, the activation maxima taken over the
    real (unpadded) tokens of the ``calibration`` batches run through the fp32 graph ``src``."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(src))
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    targets = [x for x in readers if producers.get(x) == "LayerNormalization"]
    if not targets:
        return {}
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None) for x in targets)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    # a LoRA slot graph's slots (rank and labels are its free axes) get zeros of rank 1 and one label: the
    # base's own activations
    slots = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
             for i in session.get_inputs() if i.name not in ("input_ids", "attention_mask")}
    maxima = {x: np.zeros(readers[x][0].shape[0], dtype=np.float32) for x in targets}
    for input_ids, attention_mask in calibration:
        real = attention_mask.astype(bool)
        outputs = session.run(targets, {"input_ids": input_ids, "attention_mask": attention_mask, **slots})
        for x, value in zip(targets, outputs):
            maxima[x] = np.maximum(maxima[x], np.abs(value[real]).max(axis=0))
    factors = {}
    for x in targets:
        weight_max = np.max([np.abs(w).max(axis=1) for w in readers[x]], axis=0)
        factors[x] = np.sqrt(np.maximum(maxima[x], 1e-5) / np.maximum(weight_max, 1e-5)).astype(np.float32)
    return factors


def calibration_batches(tokenizer, texts: list[str] | None, max_length: int = 128) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``CALIBRATION_ROWS`` of ``texts`` (a seeded sample; default: the packaged sample sentences)
    tokenized and padded into length-sorted batches of 32, for :func:`quantize_int8`'s smoothing."""
    import random

    from tailor.models.runtimes import pad_batch

    if not texts:
        texts = default_calibration_texts()
    texts = list(texts)
    if len(texts) > CALIBRATION_ROWS:
        texts = random.Random(0).sample(texts, CALIBRATION_ROWS)
    ids = sorted(tokenizer(texts, truncation=True, max_length=max_length)["input_ids"], key=len)
    return [pad_batch(ids[i:i + 32], tokenizer.pad_token_id) for i in range(0, len(ids), 32)]


def default_calibration_texts() -> list[str]:
    """The packaged sample training sentences: what a base's shared graphs, which serve every tenant, are
    calibrated on."""
    import csv

    with open(Path(__file__).parents[1] / "sample_data" / "finance_sentiment_train.csv", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def build_own_graphs(artifact_dir: Path, calibration_texts: list[str] | None = None) -> list[Path]:
    """A full or contrastive version's own ``runtime/model.onnx`` (ids -> logits, checked against PyTorch) and
    ``runtime/model.int8.onnx`` (smoothed on ``calibration_texts``, see :func:`quantize_int8`), written into
    ``artifact_dir``."""
    from tailor.models.classifier import load_model_for_inference
    from tailor.models.export import export_logits_graph

    spec, model, tokenizer = load_model_for_inference(artifact_dir)
    out = artifact_dir / RUNTIME_DIR
    out.mkdir(exist_ok=True)
    export_logits_graph(model, tokenizer, out / ONNX_FILES["onnx-fp32"])
    quantize_int8(out / ONNX_FILES["onnx-fp32"], out / ONNX_FILES["onnx-int8"],
                  calibration_batches(tokenizer, calibration_texts, spec.max_length))
    return [out / name for name in ONNX_FILES.values()]


def export_encoder_graph(base_path: str, path: Path) -> None:
    """The base's ids -> L2-normalised mean-pooled embedding graph (exactly ``build_pooled_head_model``'s
    ``embed``), output ``embedding``, checked against PyTorch."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tailor.models.classifier import build_pooled_head_model
    from tailor.models.export import export_graph, sample_inputs, verify_graph

    pooled = build_pooled_head_model(AutoModel.from_pretrained(base_path, attn_implementation=EXPORT_ATTENTION), 1).eval()

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

    inner = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=2,
                                                               attn_implementation=EXPORT_ATTENTION).eval()
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


def base_graph_dir(cache_dir: Path, base_name: str, kind: str) -> Path:
    """Where :func:`ensure_base_graphs` keeps the base's ``kind`` graphs under ``cache_dir``."""
    return Path(cache_dir) / _cache_name(base_name) / kind


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
    out_dir = base_graph_dir(cache_dir, base.name, kind)
    files = list(ONNX_FILES.values())
    converter = f"{CONVERTER}-{kind}"
    if reuse_conversion(out_dir, lambda d: check_marker(d, weights, converter, expected_files=files),
                        progress or RecordingReporter(), base.name):
        return out_dir

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        setup_torch()
        EXPORTERS[kind](base.path, tmp / ONNX_FILES["onnx-fp32"])
        quantize_int8(tmp / ONNX_FILES["onnx-fp32"], tmp / ONNX_FILES["onnx-int8"],
                      calibration_batches(AutoTokenizer.from_pretrained(base.path), None))
        write_marker(tmp, weights, converter, files)

    return publish_dir(out_dir, build)


def build_graphs(staged_dir: Path, bases: SharedBases, calibration_texts: list[str] | None = None) -> None:
    """The graphs a version's method needs: its own (full and contrastive, which hold weights of their own;
    calibrated on ``calibration_texts``) or its base's (head: encoder, lora: slot graph)."""
    spec = ClassifierSpec.load(staged_dir)
    if spec.method in OWN_WEIGHTS_METHODS:
        build_own_graphs(staged_dir, calibration_texts)
    else:
        bases.graph_dir(spec.base_model, "encoder" if spec.method == "head" else "lora")


def predicted_labels(runtime, encoded) -> list[str]:
    """``runtime``'s label for every encoded row, in row order."""
    return [runtime.labels[i] for i in runtime.predict_logits(encoded).argmax(1)]


def compare_to_reference(targets: list[str], reference: list[str], candidate: list[str]) -> dict:
    """How ``candidate``'s labels compare with the reference runtime's on the same validation rows.

    Returns:
        ``{"agreement": share of rows with the same label (0..1, 4 decimals), "delta_ci": [low, high]}``,
        the 95% paired-bootstrap interval of candidate minus reference macro-F1, in points.
    """
    agreement = float(np.mean([a == b for a, b in zip(reference, candidate)]))
    low, high = macro_f1_difference_interval(targets, reference, candidate)
    return {"agreement": round(agreement, 4), "delta_ci": [round(100 * low, 2), round(100 * high, 2)]}


def wilson_upper(successes: int, trials: int, z: float = 1.96) -> float:
    """The upper end of the Wilson score interval (95% for ``z`` 1.96) of a proportion ``successes/trials``:
    what the true share could still be, given the sample. ``wilson_upper(88, 90)`` is 0.9939."""
    if trials == 0:
        return 1.0
    share, z2 = successes / trials, z * z
    centre = share + z2 / (2 * trials)
    spread = z * np.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials))
    return min(1.0, float((centre + spread) / (1 + z2 / trials)))


def items_per_second(runtime, encoded, threads: int) -> float:
    """Texts per second over up to ``TIMING_ROWS`` of the encoded rows (the fallback texts cycled when there
    are none), in length-sorted batches of 32 as the server runs them, with ``threads`` threads for every
    runtime (PyTorch's set to match ONNX Runtime's sessions): one warm-up pass, then the best of two."""
    import torch

    from tailor.runtime import setup_torch

    setup_torch()
    sample = _timing_rows(runtime, encoded)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runtime.predict_logits(sample)
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            runtime.predict_logits(sample)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return round(len(sample) / best, 1)


def _timing_rows(runtime, encoded):
    from tailor.train.batching import Encoded

    if len(encoded) == 0:
        encoded = runtime.encode([TIMING_TEXTS[i % len(TIMING_TEXTS)] for i in range(32)])
    return Encoded(encoded.input_ids[:TIMING_ROWS], encoded.targets[:TIMING_ROWS])


def choose_runtime(macro_f1: dict, items_per_s: dict, gate_points: float, validation_rows: int,
                   forced: str = "auto", comparisons: dict | None = None,
                   min_agreement: float = 0.98, shared: bool = False) -> tuple[str, list[str], str]:
    """The gate: ``(chosen runtime, allowed runtimes, reason)``.

    torch-fp32 is always allowed. With validation rows, another runtime is allowed when
    - the data do not show its labels agreeing with torch-fp32's on fewer than ``min_agreement`` of texts:
      the upper end of the 95% Wilson interval of its agreement on the rows (:func:`wilson_upper`) is at
      least ``min_agreement`` (88 of 90 rows, 97.8%, passes at 0.98; 170 of 180, 94.4%, does not), and
    - the data do not show it losing more than ``gate_points`` macro-F1 points: the upper end of the 95%
      paired-bootstrap interval of its difference to torch-fp32 (``comparisons[name]["delta_ci"]``) is
      at least ``-gate_points``.
    On a small split, two rows that flip (1.1 points of 179) are noise the interval covers, not evidence of a
    loss; a runtime that changes many labels, or loses consistently, is refused. Without validation rows
    only ``onnx-fp32`` (checked against PyTorch when built) is allowed. The fastest allowed runtime is
    chosen unless ``forced`` names one; for a version over a ``shared`` base (head, LoRA) the fastest allowed
    ONNX runtime, since those run on the base's one session (a head is KB, a LoRA adapter a few MB, and head
    tenants share each pass) where torch-fp32 would hold a merged copy of the model per version (52 MB for
    MiniLM, and 0.29x one model's throughput across 50 LoRA tenants).
    """
    if validation_rows == 0:
        allowed = ["torch-fp32", "onnx-fp32"]
        why = "no validation rows: int8 is not allowed without a score; fastest fp32 runtime"
    else:
        def passes(name: str) -> bool:
            found = comparisons[name]
            agreed = round(found["agreement"] * validation_rows)
            return (wilson_upper(agreed, validation_rows) >= min_agreement - 1e-9
                    and found["delta_ci"][1] >= -gate_points - 1e-9)

        allowed = [name for name in RUNTIMES if name == "torch-fp32" or passes(name)]
        why = (f"fastest runtime not shown to agree with torch-fp32 on fewer than {100 * min_agreement:g}% of "
               f"labels nor to lose more than {gate_points:g} macro-F1 points")
    if forced != "auto":
        return forced, allowed, f"forced by the config (runtime={forced})"
    onnx = [name for name in allowed if name != "torch-fp32"]
    if shared and onnx:
        return max(onnx, key=lambda name: items_per_s[name]), allowed, why.replace(
            "fastest runtime", "fastest runtime on the shared base graph", 1)
    return max(allowed, key=lambda name: items_per_s[name]), allowed, why


def optimize_version(staged_dir: Path, texts: list[str], labels: list[str], bases: SharedBases | None = None, *,
                     gate_points: float = 0.5, min_agreement: float = 0.98, runtime: str = "auto",
                     calibration_texts: list[str] | None = None) -> dict:
    """Build the version's graphs, score and time every runtime, choose one, and write ``serving.json``.

    Args:
        staged_dir: the version's (staged, not yet published) artifact directory.
        texts / labels: the job's validation rows.
        bases: shared base graphs and sessions (default: this process's, see :func:`default_bases`).
        gate_points / min_agreement: the gate's tolerances (see :func:`choose_runtime`).
        runtime: ``auto`` (the gate chooses) or one of ``RUNTIMES`` (forced; still scored and recorded).
        calibration_texts: the training texts a full version's int8 graph is smoothed on (default: the
            packaged sample sentences; see :func:`quantize_int8`).

    Returns:
        The record written to ``serving.json`` (see the module docstring). A version whose graphs cannot be
        built (an architecture the exporter or the LoRA slot graph does not handle) is recorded on torch-fp32,
        the failure in ``reason``, rather than failing its job.

    Raises:
        UsageError: an unknown ``runtime``.
    """
    from sklearn.metrics import f1_score

    if runtime != "auto" and runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; runtimes are: auto, {', '.join(RUNTIMES)}")
    started = time.monotonic()
    staged_dir = Path(staged_dir)
    bases = bases or default_bases()
    try:
        build_graphs(staged_dir, bases, calibration_texts)
        built = RUNTIMES
    except Exception as exc:  # noqa: BLE001 - a graph that cannot be built must not cost the trained version
        built, failure = RUNTIMES[:1], f"{type(exc).__name__}: {exc}"
        shutil.rmtree(staged_dir / RUNTIME_DIR, ignore_errors=True)
    labels = list(labels)
    scores, speeds, comparisons = dict.fromkeys(RUNTIMES), dict.fromkeys(RUNTIMES), dict.fromkeys(RUNTIMES)
    predictions = {}
    for name in built:
        loaded = load_runtime(staged_dir, bases, name)
        encoded = loaded.encode(texts)
        if texts:
            predictions[name] = predicted_labels(loaded, encoded)
            scores[name] = round(100 * f1_score(labels, predictions[name], average="macro", zero_division=0), 2)
            comparisons[name] = compare_to_reference(labels, predictions["torch-fp32"], predictions[name])
        speeds[name] = items_per_second(loaded, encoded, bases.threads)
    if built == RUNTIMES:
        chosen, allowed, reason = choose_runtime(scores, speeds, gate_points, len(texts), runtime, comparisons,
                                                 min_agreement,
                                                 shared=ClassifierSpec.load(staged_dir).method not in OWN_WEIGHTS_METHODS)
    else:
        chosen, allowed, reason = "torch-fp32", ["torch-fp32"], f"no ONNX graphs ({failure[:300]})"
    record = {"runtime": chosen, "gate_points": gate_points, "min_agreement": min_agreement,
              "validation_rows": len(texts), "macro_f1": scores,
              "agreement": {k: v and v["agreement"] for k, v in comparisons.items()},
              "delta_ci": {k: v and v["delta_ci"] for k, v in comparisons.items()},
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
