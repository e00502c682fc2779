"""``tailor models export``: a registered version as a Hugging Face directory, a PEFT adapter, ONNX
(classifiers) or GGUF (chat models, for llama.cpp and Ollama).

Every export is written into a temporary sibling of the output directory and renamed into place at the
end, so a failed export never leaves a half-written directory behind. The Hugging Face and PEFT layouts ship
the version's model card as ``README.md`` (:mod:`tailor.models.card`), as the Hub expects.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

from tailor.errors import UsageError
from tailor.models.classifier import SPEC_FILE, ClassifierSpec, load_model_for_inference
from tailor.models.conversion import publish_dir
from tailor.registry.store import DEFAULT_TENANT

FORMATS = ("hf", "peft", "onnx")
ONNX_TOLERANCE = 1e-3
ARCHIVES = {"zip": "application/zip", "tar.gz": "application/gzip"}  # archive -> its media type


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output directory {out} exists and is not empty")


def export_hf(artifact: Path, target: Path) -> None:
    """A directory that ``AutoModelForSequenceClassification.from_pretrained`` loads (LoRA merged in).

    A contrastive version, or a full one over a base without a trained pooler, has no such layout (its head
    reads mean-pooled, L2-normalised embeddings, not the pooler's): it exports its fine-tuned encoder as the Hugging Face directory ``AutoModel`` loads (a
    sentence encoder in its own right), with ``head.safetensors`` (``weight`` ``(labels, hidden)``,
    ``bias``) and ``tailor_model.json`` (the labels in logit order) beside it.

    Raises:
        UsageError: a head-only version (its weights are the base's; export it with --format onnx).
    """
    spec = ClassifierSpec.load(artifact)
    if spec.method == "head":
        raise UsageError("a head-only version has no Hugging Face sequence-classification layout (its head reads "
                         "mean-pooled embeddings); export it with --format onnx")
    if spec.weights_dir:
        shutil.copytree(artifact / spec.weights_dir, target, dirs_exist_ok=True)
        if spec.pooled:
            shutil.copy2(artifact / "head.safetensors", target / "head.safetensors")
            spec.save(target)
        return
    _, model, tokenizer = load_model_for_inference(artifact, merge=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def export_peft(artifact: Path, target: Path) -> None:
    """The LoRA adapter in PEFT's layout, its ``base_model_name_or_path`` pointing at the local base."""
    from tailor.catalog import resolve_base

    spec = ClassifierSpec.load(artifact)
    if spec.method != "lora":
        raise UsageError(f"--format peft needs a LoRA version; this one was trained with method {spec.method}")
    shutil.copytree(artifact / "adapter", target, dirs_exist_ok=True)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = resolve_base(spec.base_model).path
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def export_onnx(artifact: Path, target: Path) -> None:
    """``model.onnx`` (inputs ``input_ids``, ``attention_mask``; output ``logits``) plus the tokenizer.

    The graph is checked against the PyTorch model with ONNX Runtime before the export is accepted.
    """
    spec, model, tokenizer = load_model_for_inference(artifact, merge=True)
    export_logits_graph(model, tokenizer, target / "model.onnx")
    tokenizer.save_pretrained(target)
    spec.save(target)


# Graphs are traced with the plain attention (scores + additive mask, softmax): the SDPA path traces into a
# mask built with Where over (batch, 1, length, length) per layer, which cost 13% of a 128-token batch's time
# (MiniLM int8, one thread: 32 texts of ~128 tokens 76 -> 100 texts/s; short tweets alike or faster).
EXPORT_ATTENTION = "eager"


def sample_inputs(tokenizer) -> dict:
    """Two padded sample texts as int64 ``input_ids`` and ``attention_mask`` tensors: what graphs are traced
    and checked with."""
    return dict(tokenizer(["a short example", "a somewhat longer example sentence for the exporter"],
                          return_tensors="pt", padding=True))


def export_graph(module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                 dynamic_axes: dict) -> None:
    """Trace ``module(*args)`` into an opset-17 ONNX file at ``path`` (the TorchScript exporter, whose graphs
    ONNX Runtime's int8 quantizer handles)."""
    import torch

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant-folded shape checks, not problems
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)


def export_logits_graph(model, tokenizer, path: Path) -> None:
    """``model`` (any classifier kind) as a graph from ``input_ids`` and ``attention_mask`` (dynamic batch and
    sequence axes) to ``logits``, checked against the model. The model is switched to ``EXPORT_ATTENTION``
    first (see there).

    Raises:
        UsageError: the graph's logits differ from the model's by more than ``ONNX_TOLERANCE``.
    """
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
            return out if isinstance(out, torch.Tensor) else out.logits

    for module in (model, getattr(model, "encoder", None)):  # a pooled head model's encoder is inside it
        if hasattr(module, "set_attn_implementation"):
            module.set_attn_implementation(EXPORT_ATTENTION)
    wrapper = LogitsOnly(model).eval()
    sample = sample_inputs(tokenizer)
    args = (sample["input_ids"], sample["attention_mask"])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"}}
    export_graph(wrapper, args, path, ["input_ids", "attention_mask"], ["logits"], axes)
    with torch.inference_mode():
        expected = wrapper(*args).numpy()
    verify_graph(path, {k: v.numpy() for k, v in zip(("input_ids", "attention_mask"), args)}, expected)


def verify_graph(path: Path, feeds: dict, expected, output: str = "logits") -> float:
    """The largest absolute difference between the graph's ``output`` on ``feeds`` and ``expected``.

    Raises:
        UsageError: it exceeds ``ONNX_TOLERANCE``.
    """
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([output], {k: np.asarray(v) for k, v in feeds.items()})[0]
    diff = float(np.abs(got - expected).max())
    if diff > ONNX_TOLERANCE:
        raise UsageError(f"the ONNX graph differs from the model by {diff:.2e} (> {ONNX_TOLERANCE}); export refused")
    return diff


EXPORTERS = {"hf": export_hf, "peft": export_peft, "onnx": export_onnx}


def _exporters_for(artifact: Path) -> dict:
    """The exporters of the artifact's task: a chat version exports as merged weights, its adapter, or a
    llama.cpp GGUF file."""
    spec = Path(artifact) / SPEC_FILE
    task = json.loads(spec.read_text(encoding="utf-8")).get("task", "classify") if spec.is_file() else "classify"
    if task == "chat":
        from tailor.models.causal import export_chat_adapter, export_chat_merged
        from tailor.models.gguf_export import export_chat_gguf

        return {"hf": export_chat_merged, "peft": export_chat_adapter, "gguf": export_chat_gguf}
    return EXPORTERS


def export_artifact(artifact: Path, fmt: str, out: str | Path, card: str | None = None) -> list[str]:
    """Export the model in ``artifact`` as ``fmt`` into ``out``; returns the file names written.

    Args:
        card: the version's model card, written as ``README.md`` (replacing any the exporter wrote) when
            ``fmt`` is one of :data:`tailor.models.card.CARD_FORMATS`.
    """
    from tailor.models.card import CARD_FILE, CARD_FORMATS

    exporters = _exporters_for(artifact)
    if fmt not in exporters:
        raise UsageError(f"unknown export format {fmt!r} for this model; formats are: {', '.join(exporters)}")
    out = Path(out).expanduser().resolve()
    _check_out_dir(out)

    def build(tmp: Path) -> None:
        exporters[fmt](artifact, tmp)
        if card is not None and fmt in CARD_FORMATS:
            (tmp / CARD_FILE).write_text(card, encoding="utf-8")

    publish_dir(out, build)  # readable by all (0755/0644), like a cp
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def export_card(store, version, fmt: str) -> str | None:
    """The model card an export of ``version`` as ``fmt`` ships (see :func:`export_artifact`), else None."""
    from tailor.models.card import CARD_FORMATS, version_card

    return version_card(store, version, export=fmt) if fmt in CARD_FORMATS else None


def export_version(ref: str, fmt: str, out: str | Path, *, tenant: str = DEFAULT_TENANT) -> dict:
    """Export the registered version ``ref`` (with its model card as ``README.md`` in the ``hf`` and ``peft``
    layouts); returns ``{"model", "format", "path", "files"}``."""
    from tailor.registry.service import open_registry

    registry = open_registry()
    version = registry.store.resolve(tenant, ref)
    files = export_artifact(registry.artifact_dir(version), fmt, out, card=export_card(registry.store, version, fmt))
    return {"model": version.ref, "format": fmt, "path": str(Path(out).expanduser().resolve()), "files": files}


def export_formats(task: str, method: str) -> tuple[str, ...]:
    """The formats a version of ``task`` trained with ``method`` exports as: a classifier as ONNX, as a Hugging
    Face directory unless it is head-only (a contrastive version's is its encoder and head, see
    :func:`export_hf`), as a PEFT adapter when LoRA; a chat version as merged weights, its adapter or GGUF."""
    if task == "chat":
        return ("hf", "peft", "gguf")
    refused = {"hf"} if method == "head" else set()
    if method != "lora":
        refused.add("peft")
    return tuple(fmt for fmt in FORMATS if fmt not in refused)


def exports_cache_dir(home: Path) -> Path:
    """The storage root's folder of built export archives (``<home>/cache/exports``)."""
    return Path(home) / "cache" / "exports"


def export_archive(artifact: Path, fmt: str, archive: str, cache_dir: Path, folder: str,
                   card: str | None = None) -> Path:
    """The export of ``artifact`` as ``fmt`` packed into one ``archive`` (``zip`` or ``tar.gz``) file whose
    entries sit under ``folder/``; built once into ``cache_dir`` (a version's artifact never changes) and
    returned from there afterwards.

    The archive is built under a temporary name in ``cache_dir`` and renamed into place last, so a reader
    never gets a half-written one, and a failed export leaves nothing behind.

    Args:
        card: the model card it ships (see :func:`export_artifact`). The card follows the version's metrics,
            which later evaluations extend, so an archive with a card is cached under the card's digest
            (``hf-<digest>.zip``): a changed card builds a new archive and the stale one is removed.

    Raises:
        UsageError: an unknown ``archive`` or format, or what the format's exporter refuses.
    """
    from tailor.models.card import CARD_FORMATS

    if archive not in ARCHIVES:
        raise UsageError(f"unknown archive {archive!r}; archives are: {', '.join(ARCHIVES)}")
    card = card if fmt in CARD_FORMATS else None
    stamp = f"-{hashlib.sha256(card.encode()).hexdigest()[:16]}" if card is not None else ""
    target = Path(cache_dir) / f"{fmt}{stamp}.{archive}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{fmt}.", dir=target.parent))
    try:
        os.replace(_build_archive(artifact, fmt, archive, work, folder, card), target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in (*target.parent.glob(f"{fmt}-*.{archive}"), target.parent / f"{fmt}.{archive}"):
        if stale != target:
            stale.unlink(missing_ok=True)  # an archive with an older card (or none, from before cards)
    return target


def private_export_archive(artifact: Path, fmt: str, archive: str, folder: str, card: str | None = None) -> Path:
    """The export of ``artifact`` packed as :func:`export_archive` packs it, but built in a new private
    memory-backed workspace and not cached: what a sealed version's download serves (its plaintext never
    reaches the disk). The caller removes the archive's folder (``path.parent``) once it is sent.

    Raises:
        UsageError: as :func:`export_archive` (the workspace is removed then).
    """
    from tailor.models.card import CARD_FORMATS
    from tailor.security.crypto import private_workspace_path

    if archive not in ARCHIVES:
        raise UsageError(f"unknown archive {archive!r}; archives are: {', '.join(ARCHIVES)}")
    work = private_workspace_path()
    try:
        return _build_archive(artifact, fmt, archive, work, folder, card if fmt in CARD_FORMATS else None)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _build_archive(artifact: Path, fmt: str, archive: str, work: Path, folder: str, card: str | None) -> Path:
    """Export ``artifact`` into ``work/folder``, pack it as ``work/<fmt>.<archive>`` and remove the folder;
    returns the archive."""
    export_artifact(artifact, fmt, work / folder, card=card)
    packed = work / f"{fmt}.{archive}"
    _pack(work / folder, packed, archive)
    shutil.rmtree(work / folder)
    return packed


def _pack(directory: Path, out: Path, archive: str) -> None:
    """Pack ``directory`` (as its own name, files in sorted order) into ``out``. Compression is light: the
    weights, most of the bytes, hardly compress, and a strong level would cost minutes on a large model."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    if archive == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as packed:
            for path in files:
                packed.write(path, path.relative_to(directory.parent).as_posix())
        return
    with tarfile.open(out, "w:gz", compresslevel=1) as packed:
        for path in files:
            packed.add(path, path.relative_to(directory.parent).as_posix(), recursive=False)
