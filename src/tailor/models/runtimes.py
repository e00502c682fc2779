"""Classification inference runtimes behind one interface: PyTorch eager (the reference), ONNX Runtime fp32
and ONNX Runtime int8 (see :func:`tailor.models.optimize.quantize_int8`).

Where each version's graphs live (see :mod:`tailor.models.optimize`, which builds them)::

    full   <artifact>/runtime/model.onnx, model.int8.onnx        its own graph: ids -> logits
    contrastive  the same, from its own encoder/ and head: ids -> logits
    head   <cache>/<base>/encoder/model.onnx, model.int8.onnx    the base's graph: ids -> pooled embedding;
                                                                 the version's head (a few KB) runs in numpy
    lora   <cache>/<base>/lora/model.onnx, model.int8.onnx       the base's graph with LoRA "slots": every
                                                                 LoRA target Linear computes W x + (x D) U,
                                                                 D and U graph inputs; the version is its
                                                                 D/U arrays and head (about 1 MB)

Head and LoRA versions over one base share one session per (base, runtime) through :class:`SharedBases`,
so a hundred such versions cost their own few KB (head) or MB (LoRA) each, not a copy of the base.

Sessions run single-threaded and a batch's forward passes run side by side, one per core (``lanes``):
MiniLM's graph is hundreds of small operators, and two cores splitting each operator waited on each other
(finance tweets, 32 per call, onnx-int8: 1 thread 286 texts/s, 2 threads 324, 2 passes at once on 1 thread
each about 400).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from tailor.errors import TailorError
from tailor.models.classifier import ClassifierSpec

RUNTIMES = ("torch-fp32", "onnx-fp32", "onnx-int8")
ONNX_FILES = {"onnx-fp32": "model.onnx", "onnx-int8": "model.int8.onnx"}
RUNTIME_DIR = "runtime"
RECORD_FILE = "serving.json"


class ClassifierRuntime:
    """One loaded classifier version on one runtime.

    Attributes:
        name: the runtime, one of ``RUNTIMES``.
        labels: class names, in logit column order.
        tokenizer: the Hugging Face fast tokenizer.
        max_length: texts are truncated to this many tokens.
        pad_id: the id right-padding uses.
        own_bytes: bytes of weights this version holds that are not shared with other versions.
        spec: the version's :class:`ClassifierSpec`.
    """

    lanes = 1  # forward passes run at once (see run_passes)

    def __init__(self, name: str, spec: ClassifierSpec, tokenizer, own_bytes: int):
        self.name = name
        self.spec = spec
        self.labels = list(spec.labels)
        self.tokenizer = tokenizer
        self.max_length = spec.max_length
        self.pad_id = tokenizer.pad_token_id
        self.own_bytes = int(own_bytes)

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """``(B, L)`` int64 arrays, right-padded with ``pad_id`` -> ``(B, C)`` float32 logits. Thread-safe."""
        raise NotImplementedError

    def encode(self, texts):
        """The texts' token ids, truncated to ``max_length`` and unpadded: an ``Encoded``."""
        from tailor.train.batching import encode

        return encode(self.tokenizer, texts, self.max_length)

    def predict_logits(self, encoded, batch_size: int = 32) -> np.ndarray:
        """Logits for every row of ``encoded`` (length-sorted, padded batches), in row order."""
        from tailor.train.batching import length_grouped_batches

        out = np.zeros((len(encoded), len(self.labels)), dtype=np.float32)
        lengths = [len(row) for row in encoded.input_ids]
        passes = length_grouped_batches(lengths, batch_size, shuffle=False)
        padded = [pad_batch([encoded.input_ids[i] for i in rows], self.pad_id) for rows in passes]
        for rows, logits in zip(passes, run_passes(self.logits, padded, self.lanes)):
            out[rows] = logits
        return out


_LANE_POOLS: dict[tuple, ThreadPoolExecutor] = {}
_LANE_LOCK = threading.Lock()


def run_passes(forward: Callable, padded: list[tuple[np.ndarray, np.ndarray]], lanes: int,
               cores: list[int] | None = None) -> list[np.ndarray]:
    """``forward(input_ids, attention_mask)`` of every padded pass, in order, up to ``lanes`` at once on a
    process-wide pool of threads (pinned to ``cores`` when given). ONNX Runtime releases the GIL while it
    runs, so single-threaded sessions fill the cores side by side."""
    if lanes <= 1 or len(padded) <= 1:
        return [forward(*batch) for batch in padded]
    key = (lanes, tuple(cores or ()))
    with _LANE_LOCK:
        if key not in _LANE_POOLS:
            from tailor.runtime import pin_current_thread

            _LANE_POOLS[key] = ThreadPoolExecutor(lanes, thread_name_prefix="tailor-lane",
                                                  initializer=pin_current_thread, initargs=(cores,))
        pool = _LANE_POOLS[key]
    return list(pool.map(lambda batch: forward(*batch), padded))


def pad_batch(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to their longest: ``(input_ids, attention_mask)`` as int64 arrays."""
    width = max(len(r) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, row in enumerate(rows):
        input_ids[k, :len(row)] = row
        mask[k, :len(row)] = 1
    return input_ids, mask


class TorchRuntime(ClassifierRuntime):
    """PyTorch eager on CPU: ``module(input_ids=..., attention_mask=...)`` gives logits (or an output with
    ``.logits``)."""

    def __init__(self, spec: ClassifierSpec, tokenizer, module, own_bytes: int):
        super().__init__("torch-fp32", spec, tokenizer, own_bytes)
        self.module = module.eval()

    def logits(self, input_ids, attention_mask):
        import torch

        with torch.inference_mode():
            out = self.module(input_ids=torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)),
                              attention_mask=torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64)))
        return (out if isinstance(out, torch.Tensor) else out.logits).float().numpy()


class OnnxRuntime(ClassifierRuntime):
    """An ONNX Runtime session plus this version's own inputs (LoRA arrays, head weights) fed with each run.

    Args:
        session: the (possibly shared, single-threaded) ``InferenceSession``.
        lanes: how many forward passes may run at once (the cores the version's math may use).
        feeds: extra inputs fed with every run (a LoRA version's arrays; empty for others).
        head: ``(weight (C, H), bias (C,))`` applied in numpy to the session's output (head versions), or None
            when the session outputs logits.
    """

    def __init__(self, name: str, spec: ClassifierSpec, tokenizer, session, *, feeds: dict | None = None,
                 head: tuple[np.ndarray, np.ndarray] | None = None, own_bytes: int = 0, lanes: int = 1):
        super().__init__(name, spec, tokenizer, own_bytes)
        self.session = session
        self.lanes = max(1, int(lanes))
        self.feeds = feeds or {}
        self.head = head
        self.output = session.get_outputs()[0].name

    @property
    def batch_key(self) -> tuple | None:
        """Versions with equal keys may share one forward pass: head versions over the same base session
        (and truncation length) run the encoder once for all their texts, then each applies its own head.
        None: the version batches only with itself."""
        return ("features", id(self.session), self.max_length) if self.head is not None else None

    def features(self, input_ids, attention_mask) -> np.ndarray:
        """The session's output: logits, or for a head version the pooled embeddings its head reads."""
        feeds = {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64), **self.feeds}
        return self.session.run([self.output], feeds)[0]

    def apply_head(self, features: np.ndarray) -> np.ndarray:
        """Logits from :meth:`features` (the head in numpy for a head version)."""
        if self.head is None:
            return features
        weight, bias = self.head
        return (features @ weight.T + bias).astype(np.float32)

    def logits(self, input_ids, attention_mask):
        return self.apply_head(self.features(input_ids, attention_mask))


def open_session(path: Path):
    """An ONNX Runtime CPU session on the calling thread (no thread pool to spin or oversubscribe: parallel
    work comes from passes side by side, see :func:`run_passes`), with all graph optimizations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class SharedBases:
    """Base encoders shared by head-only and LoRA versions: one per (base, graph kind, runtime), loaded once
    on first use (thread-safe). Construct one per process.

    Args:
        cache_dir: where the bases' graphs are built, one marker-sealed directory per base and kind
            (``<home>/cache/onnx`` by default, see :func:`default_bases`).
        threads: how many forward passes the versions over these bases run at once (see :func:`run_passes`).
    """

    def __init__(self, cache_dir: Path, threads: int):
        self.cache_dir = Path(cache_dir)
        self.threads = threads
        self._loaded: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def _once(self, key: tuple, load: Callable[[], object]):
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._loaded:
                value = load()
                with self._lock:
                    self._loaded[key] = value
        return self._loaded[key]

    def tokenizer(self, base_name: str):
        """The base's tokenizer."""
        from transformers import AutoTokenizer

        from tailor.catalog import resolve_base

        return self._once(("tokenizer", base_name), lambda: AutoTokenizer.from_pretrained(resolve_base(base_name).path))

    def torch_encoder(self, base_name: str):
        """The base's PyTorch encoder (``AutoModel``, eval mode): what head versions run on under torch-fp32."""
        from transformers import AutoModel

        from tailor.catalog import resolve_base
        from tailor.runtime import setup_torch

        def load():
            setup_torch()
            return AutoModel.from_pretrained(resolve_base(base_name).path).eval()

        return self._once(("torch", base_name), load)

    def graph_dir(self, base_name: str, kind: str) -> Path:
        """The base's sealed graph directory for ``kind`` (``encoder`` or ``lora``), built on first use."""
        from tailor.models.optimize import ensure_base_graphs

        return self._once(("graphs", base_name, kind), lambda: ensure_base_graphs(base_name, kind, self.cache_dir))

    def session(self, base_name: str, kind: str, runtime: str):
        """The shared ONNX Runtime session of the base's ``kind`` graph on ``runtime``."""
        return self._once(("session", base_name, kind, runtime),
                          lambda: open_session(self.graph_dir(base_name, kind) / ONNX_FILES[runtime]))


_DEFAULT_BASES: dict[Path, SharedBases] = {}
_DEFAULT_LOCK = threading.Lock()


def onnx_cache_dir(home: Path) -> Path:
    """The storage root's folder of shared base graphs (``<home>/cache/onnx``)."""
    return Path(home) / "cache" / "onnx"


def default_bases(home: Path | None = None) -> SharedBases:
    """This process's :class:`SharedBases` over ``<home>/cache/onnx`` (one per storage root; default: the
    settings' home)."""
    from tailor.runtime import usable_cores
    from tailor.settings import get_settings

    cache_dir = onnx_cache_dir(Path(home or get_settings().home))
    with _DEFAULT_LOCK:
        if cache_dir not in _DEFAULT_BASES:
            _DEFAULT_BASES[cache_dir] = SharedBases(cache_dir, usable_cores())
        return _DEFAULT_BASES[cache_dir]


def forget_default_bases() -> None:
    """Drop this process's :func:`default_bases` (their encoders are freed once no version uses them), for a
    process that moves between storage roots, such as the test suite (one root per test)."""
    with _DEFAULT_LOCK:
        _DEFAULT_BASES.clear()


def read_record(artifact_dir: Path) -> dict | None:
    """The version's gate record (``serving.json``), or None for a version published before it existed."""
    path = Path(artifact_dir) / RECORD_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_runtime(artifact_dir: Path, bases: SharedBases, runtime: str | None = None,
                 threads: int | None = None) -> ClassifierRuntime:
    """The version in ``artifact_dir`` on ``runtime``.

    Args:
        runtime: one of ``RUNTIMES``; default: the one its gate record chose (``torch-fp32`` for a version
            published without a record).
        threads: forward passes the version runs at once (default: ``bases.threads``).

    Raises:
        TailorError: an unknown runtime, or a version that lacks that runtime's graph.
    """
    artifact_dir = Path(artifact_dir)
    spec = ClassifierSpec.load(artifact_dir)
    if runtime is None:
        record = read_record(artifact_dir)
        runtime = record["runtime"] if record else "torch-fp32"
    if runtime not in RUNTIMES:
        raise TailorError(f"unknown runtime {runtime!r}; runtimes are: {', '.join(RUNTIMES)}")
    if runtime == "torch-fp32":
        return _load_torch(artifact_dir, spec, bases)
    loaders = {"full": _load_own_onnx, "contrastive": _load_own_onnx, "head": _load_head_onnx,
               "lora": _load_lora_onnx}
    if spec.method not in loaders:
        raise TailorError(f"{artifact_dir}: unknown method {spec.method!r}")
    return loaders[spec.method](artifact_dir, spec, bases, runtime, threads or bases.threads)


def _param_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _load_torch(artifact_dir: Path, spec: ClassifierSpec, bases: SharedBases) -> TorchRuntime:
    from tailor.models.classifier import attach_head, load_model_for_inference

    if spec.method == "head":
        module = attach_head(bases.torch_encoder(spec.base_model), artifact_dir, spec)
        return TorchRuntime(spec, bases.tokenizer(spec.base_model), module, _param_bytes(module.classifier))
    _, module, tokenizer = load_model_for_inference(artifact_dir, merge=True)
    return TorchRuntime(spec, tokenizer, module, _param_bytes(module))


def _load_own_onnx(artifact_dir, spec, bases, runtime, threads) -> OnnxRuntime:
    """A version with its own graph (full, contrastive), its tokenizer from its own weights' directory."""
    from transformers import AutoTokenizer

    path = artifact_dir / RUNTIME_DIR / ONNX_FILES[runtime]
    if not path.is_file():
        raise TailorError(f"{artifact_dir}: no {RUNTIME_DIR}/{path.name}; this version was published without "
                          f"ONNX graphs, load it on torch-fp32")
    tokenizer = AutoTokenizer.from_pretrained(artifact_dir / spec.weights_dir)
    return OnnxRuntime(runtime, spec, tokenizer, open_session(path),
                       own_bytes=path.stat().st_size, lanes=threads)


def load_head_arrays(artifact_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A head version's ``(weight (C, H), bias (C,))`` as float32 numpy."""
    from safetensors.numpy import load_file

    state = load_file(str(Path(artifact_dir) / "head.safetensors"))
    return state["weight"].astype(np.float32), state["bias"].astype(np.float32)


def _load_head_onnx(artifact_dir, spec, bases, runtime, threads) -> OnnxRuntime:
    weight, bias = load_head_arrays(artifact_dir)
    return OnnxRuntime(runtime, spec, bases.tokenizer(spec.base_model),
                       bases.session(spec.base_model, "encoder", runtime), head=(weight, bias),
                       own_bytes=weight.nbytes + bias.nbytes, lanes=threads)


def _load_lora_onnx(artifact_dir, spec, bases, runtime, threads) -> OnnxRuntime:
    session = bases.session(spec.base_model, "lora", runtime)
    slots = {i.name: i.shape for i in session.get_inputs() if i.name not in ("input_ids", "attention_mask")}
    feeds = lora_feeds(artifact_dir / "adapter", slots)
    # the adapter's tokenizer is its base's (LoRA leaves the vocabulary alone): share the base's loaded one,
    # a tokenizer per version would cost more memory than the adapter itself
    return OnnxRuntime(runtime, spec, bases.tokenizer(spec.base_model), session, feeds=feeds,
                       own_bytes=sum(a.nbytes for a in feeds.values()), lanes=threads)


LORA_PREFIX = "base_model.model."
HEAD_SLOTS = ("classifier.weight_t", "classifier.bias")


def lora_feeds(adapter_dir: Path, slots: dict[str, list]) -> dict[str, np.ndarray]:
    """A PEFT LoRA adapter as the inputs of a base's LoRA slot graph.

    Args:
        slots: the graph's slot inputs and their shapes (``[in, "rank"]`` for a ``lora_down``, ``["rank", out]``
            for a ``lora_up``).

    Returns:
        For each target ``<module>``: ``<module>.lora_down`` = A^T ``(in, r)`` and ``<module>.lora_up`` =
        scaling * B^T ``(r, out)``, so the graph adds ``(x @ down) @ up``; a slot the adapter leaves unused
        gets a rank-1 zero pair (an exact no-op). The head (saved by PEFT as a module to save) feeds
        ``classifier.weight_t`` ``(H, C)`` and ``classifier.bias`` ``(C,)``.

    Raises:
        TailorError: an adapter the slot graph cannot express (DoRA, rsLoRA, per-module ranks, LoRA on a module
            without a slot) or one without a saved classifier head.
    """
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("use_rslora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise TailorError(f"{adapter_dir}: DoRA, rsLoRA and per-module ranks have no ONNX slot graph")
    scaling = config["lora_alpha"] / config["r"]
    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    state = {key.removeprefix(LORA_PREFIX): value for key, value in saved.items()}
    if "classifier.weight" not in state:
        raise TailorError(f"{adapter_dir}: the adapter has no saved classifier head")
    unknown = {k.rsplit(".lora_", 1)[0] for k in state if ".lora_" in k} - {s.rpartition(".")[0] for s in slots}
    if unknown:
        raise TailorError(f"{adapter_dir}: LoRA on modules the slot graph lacks: {', '.join(sorted(unknown))}")
    feeds = {"classifier.weight_t": state["classifier.weight"].T, "classifier.bias": state["classifier.bias"]}
    for slot, shape in slots.items():
        module, _, part = slot.rpartition(".")
        if part == "lora_down":
            a = state.get(f"{module}.lora_A.weight")
            feeds[slot] = a.T if a is not None else np.zeros((shape[0], 1))
        elif part == "lora_up":
            b = state.get(f"{module}.lora_B.weight")
            feeds[slot] = b.T * scaling if b is not None else np.zeros((1, shape[1]))
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in feeds.items()}
