"""Text classifiers: build one per fine-tuning method, save it in standard layouts, load it to predict.

Artifact layout of a classifier version (the directory the registry publishes)::

    tailor_model.json          what to load: method, base model, labels, max_length, pooling
    model/                     method full over the pooler: a Hugging Face directory (config.json,
                               model.safetensors, tokenizer)
    adapter/                   method lora: a PEFT adapter (adapter_config.json, adapter_model.safetensors)
                               plus the tokenizer; the classifier head is saved by PEFT as a module to save
    head.safetensors           mean-pooled methods (head, contrastive, full on a base without a trained pooler):
                               the linear head over the mean-pooled, L2-normalised embeddings (of the catalog's
                               frozen base for head, of ``encoder/`` otherwise)
    encoder/                   mean-pooled methods with weights of their own (contrastive; full with ``pooling``
                               ``mean``): a Hugging Face directory (the fine-tuned encoder, ``AutoModel``'s
                               layout, plus the tokenizer)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tailor.catalog import ResolvedBase, resolve_base
from tailor.errors import TailorError
from tailor.runtime import pick_device, setup_torch

SPEC_FILE = "tailor_model.json"
SPEC_FORMAT = 2  # 2: ``pooling`` says what every method's head reads (format 1 wrote "mean" for all)
LORA_TARGETS = ["query", "key", "value", "dense"]
# Methods whose model is build_pooled_head_model's: mean pooling, L2 normalisation and a linear head (and
# method full on a base whose catalog entry says full_pooling "mean").
POOLED_METHODS = ("head", "contrastive")
# Methods with weights of their own (not shared with other versions over the same base).
OWN_WEIGHTS_METHODS = ("full", "contrastive")


def pooling_for(method: str, base: ResolvedBase, full_pooling: str = "auto") -> str:
    """What ``method``'s head reads over ``base``: ``mean`` (the mean-pooled, L2-normalised embedding) or
    ``pooler`` (a Hugging Face sequence classifier's own head). ``full_pooling`` (``auto``: the base's catalog
    entry's) decides for method full."""
    if method in POOLED_METHODS:
        return "mean"
    if method == "full":
        return base.full_pooling if full_pooling == "auto" else full_pooling
    return "pooler"


@dataclass(frozen=True)
class ClassifierSpec:
    """The contents of ``tailor_model.json``.

    ``pooling`` is ``mean`` when the model is :func:`build_pooled_head_model`'s (a linear head over the
    mean-pooled, L2-normalised embedding; ``head.safetensors``) and ``pooler`` for a Hugging Face sequence
    classifier (``model/``, or a LoRA ``adapter/``).
    """

    method: str
    base_model: str
    labels: list[str]
    max_length: int
    pooling: str = "mean"
    task: str = "classify"
    format_version: int = SPEC_FORMAT

    @property
    def pooled(self) -> bool:
        return self.pooling == "mean"

    @property
    def weights_dir(self) -> str | None:
        """The Hugging Face directory inside the artifact holding the version's own weights and tokenizer
        (``model`` or ``encoder``), or None when its weights are the base's (head, LoRA)."""
        if self.method not in OWN_WEIGHTS_METHODS:
            return None
        return "encoder" if self.pooled else "model"

    def save(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "ClassifierSpec":
        path = directory / SPEC_FILE
        if not path.is_file():
            raise TailorError(f"{directory} is not a Tailor classifier (no {SPEC_FILE})")
        fields = json.loads(path.read_text(encoding="utf-8"))
        if fields.get("format_version", 1) < 2 and fields["method"] not in POOLED_METHODS:
            fields["pooling"] = "pooler"  # format 1 wrote "mean" whatever the head read
        return cls(**fields)


def _torch_modules():
    import torch
    from torch import nn

    return torch, nn


def mean_pool(hidden, attention_mask):
    """Average token states over real (unpadded) tokens: the sentence vector MiniLM was trained for."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def build_pooled_head_model(encoder, num_labels: int, *, frozen: bool = True):
    """``encoder`` followed by mean pooling, L2 normalisation and a linear layer.

    Args:
        frozen: the encoder's weights do not train (method head); False leaves them trainable (method
            contrastive fine-tunes them before the head is fitted).
    """
    torch, nn = _torch_modules()

    class PooledHeadClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
            for p in self.encoder.parameters():
                p.requires_grad_(not frozen)

        def get_input_embeddings(self):
            return self.encoder.get_input_embeddings()

        def embed(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return torch.nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)

        def forward(self, input_ids, attention_mask):
            return self.classifier(self.embed(input_ids, attention_mask))

    return PooledHeadClassifier()


def build_model(method: str, base: ResolvedBase, labels: Sequence[str], *, lora_r: int = 16, lora_alpha: int = 32,
                lora_dropout: float = 0.05, seed: int = 0, full_pooling: str = "auto"):
    """A fresh trainable model for ``method`` (``full``, ``lora``, ``head`` or ``contrastive``) over ``base``.

    ``head``, ``contrastive`` and ``full`` with ``full_pooling`` ``mean`` (see :func:`pooling_for`) build
    :func:`build_pooled_head_model` (its encoder frozen for ``head``, trainable otherwise). ``full`` leaves the
    token embeddings frozen where the base's catalog entry says so. ``seed`` fixes the new head's (and LoRA's)
    initial weights.
    """
    setup_torch()
    import torch

    torch.manual_seed(seed)
    from transformers import AutoModel, AutoModelForSequenceClassification

    if pooling_for(method, base, full_pooling) == "mean":
        model = build_pooled_head_model(AutoModel.from_pretrained(base.path), len(labels), frozen=method == "head")
    elif method in ("full", "lora"):
        # ignore_mismatched_sizes: a base that is itself a fine-tuned classifier gets a fresh head for these labels
        model = AutoModelForSequenceClassification.from_pretrained(
            base.path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, ignore_mismatched_sizes=True)
    else:
        raise ValueError(f"unknown method {method!r}")
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                            target_modules=LORA_TARGETS)
        return get_peft_model(model, config)
    if method == "full" and base.frozen_word_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    return model


def embed_all(model, encoded, pad_id: int, device: str, batch_size: int = 64) -> "np.ndarray":
    """Sentence embeddings of every row from ``model.embed`` (the frozen encoder), in row order."""
    import torch

    from tailor.train.batching import iter_batches

    out = None
    model.eval()
    with torch.inference_mode():
        for idx, batch in iter_batches(encoded, batch_size, pad_id, shuffle=False, device=device):
            vectors = model.embed(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(encoded), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
    return out


def forward_logits(model, batch: dict):
    """Logits for a batch from any of the three model kinds."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out if not hasattr(out, "logits") else out.logits


def save_classifier(model, tokenizer, spec: ClassifierSpec, directory: Path) -> None:
    """Write ``model`` in its method's standard layout plus ``tailor_model.json`` into ``directory``."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    if spec.method == "lora":
        model.save_pretrained(directory / "adapter")
        tokenizer.save_pretrained(directory / "adapter")
    elif not spec.pooled:
        model.save_pretrained(directory / spec.weights_dir)
        tokenizer.save_pretrained(directory / spec.weights_dir)
    else:
        if spec.weights_dir:
            model.encoder.save_pretrained(directory / spec.weights_dir)
            tokenizer.save_pretrained(directory / spec.weights_dir)
        state = {k: v.detach().contiguous() for k, v in model.classifier.state_dict().items()}
        save_file(state, str(directory / "head.safetensors"))
    spec.save(directory)


def load_model_for_inference(directory: Path, *, merge: bool = True):
    """Load the trained module and tokenizer saved in ``directory``.

    Returns:
        ``(spec, model, tokenizer)`` with the model in eval mode; LoRA adapters are merged into the base
        for speed unless ``merge`` is false.
    """
    setup_torch()
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    spec = ClassifierSpec.load(directory)
    if spec.method == "full" and not spec.pooled:
        model = AutoModelForSequenceClassification.from_pretrained(directory / "model")
        tokenizer = AutoTokenizer.from_pretrained(directory / "model")
    elif spec.method == "lora":
        from peft import PeftModel

        base = resolve_base(spec.base_model)
        backbone = AutoModelForSequenceClassification.from_pretrained(
            base.path, num_labels=len(spec.labels), id2label=dict(enumerate(spec.labels)),
            label2id={label: i for i, label in enumerate(spec.labels)})
        model = PeftModel.from_pretrained(backbone, directory / "adapter")
        if merge:
            model = model.merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(directory / "adapter")
    elif spec.method == "head":
        base = resolve_base(spec.base_model)
        model = attach_head(AutoModel.from_pretrained(base.path), directory, spec)
        tokenizer = AutoTokenizer.from_pretrained(base.path)
    elif spec.pooled and spec.weights_dir:
        model = attach_head(AutoModel.from_pretrained(directory / spec.weights_dir), directory, spec)
        tokenizer = AutoTokenizer.from_pretrained(directory / spec.weights_dir)
    else:
        raise TailorError(f"{directory}: unknown method {spec.method!r} in {SPEC_FILE}")
    model.eval()
    return spec, model, tokenizer


def load_trainable(directory: Path, labels: Sequence[str]):
    """A saved version's model, ready to train further (incremental learning): the same weights as
    :func:`load_model_for_inference` gives, but LoRA adapters stay unmerged and trainable, and the head has
    one row per label of ``labels``.

    Args:
        directory: the version's artifact directory.
        labels: the saved labels in their order, followed by any new ones (a head row is added for each, at
            the mean of the saved rows, so that before training no saved label's answer changes: the mean of
            some logits never exceeds their maximum).

    Returns:
        ``(spec, model)``: the saved spec and the trainable module (a head or contrastive version's head still
        has its training temperature folded in; see :func:`tailor.train.classify.unfold_head_temperature`).

    Raises:
        TailorError: ``labels`` does not start with the saved labels in order, or the method is unknown.
    """
    setup_torch()
    from transformers import AutoModel, AutoModelForSequenceClassification

    spec = ClassifierSpec.load(directory)
    added = list(labels[len(spec.labels):])
    if list(labels[:len(spec.labels)]) != spec.labels:
        raise TailorError(f"{directory}: labels {list(labels)} do not start with the saved labels {spec.labels}")
    if spec.pooled:
        source = directory / spec.weights_dir if spec.weights_dir else resolve_base(spec.base_model).path
        model = attach_head(AutoModel.from_pretrained(source), directory, spec)
        if spec.weights_dir:  # its encoder trains again, from its fine-tuned weights
            model.encoder.requires_grad_(True)
        model.classifier = _grown_linear(model.classifier, len(added))
    elif spec.method == "full":
        model = AutoModelForSequenceClassification.from_pretrained(directory / "model")
        if added:
            model.classifier = _grown_linear(_linear_head(model), len(added))
            _relabel(model, list(labels))
    elif spec.method == "lora":
        from peft import PeftModel

        base = resolve_base(spec.base_model)
        backbone = AutoModelForSequenceClassification.from_pretrained(
            base.path, num_labels=len(spec.labels), id2label=dict(enumerate(spec.labels)),
            label2id={label: i for i, label in enumerate(spec.labels)})
        model = PeftModel.from_pretrained(backbone, directory / "adapter", is_trainable=True)
        if added:
            # PEFT trains and saves a copy of the head (modules_to_save); both copies must grow alike
            wrapper = backbone.classifier
            wrapper.original_module = _grown_linear(wrapper.original_module, len(added))
            for adapter in wrapper.modules_to_save:
                wrapper.modules_to_save[adapter] = _grown_linear(wrapper.modules_to_save[adapter], len(added))
            _relabel(backbone, list(labels))
    else:
        raise TailorError(f"{directory}: unknown method {spec.method!r} in {SPEC_FILE}")
    if spec.method == "full" and _frozen_word_embeddings(spec):
        model.get_input_embeddings().requires_grad_(False)
    return spec, model.train()


def _frozen_word_embeddings(spec: ClassifierSpec) -> bool:
    """Whether full fine-tuning from ``spec``'s version leaves the token embeddings frozen (its base's catalog
    entry says so; an adapted base follows the catalog base it came from)."""
    from tailor.catalog import CATALOG

    name = spec.base_model
    if name.startswith("adapted:"):
        return resolve_base(name).frozen_word_embeddings
    return name in CATALOG and CATALOG[name].frozen_word_embeddings


def _linear_head(model):
    """A Hugging Face sequence classifier's head (``classifier``, one linear layer in BERT-like models)."""
    _, nn = _torch_modules()
    if not isinstance(getattr(model, "classifier", None), nn.Linear):
        raise TailorError(f"cannot add labels to a {type(model).__name__}: its head is not one linear layer")
    return model.classifier


def _relabel(model, labels: list[str]) -> None:
    model.num_labels = model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}


def _grown_linear(layer, extra: int):
    """``layer`` with ``extra`` more output rows, each the mean of its rows (weights and bias); ``layer``
    itself when ``extra`` is 0."""
    torch, nn = _torch_modules()
    if not extra:
        return layer
    grown = nn.Linear(layer.in_features, layer.out_features + extra, bias=layer.bias is not None,
                      dtype=layer.weight.dtype, device=layer.weight.device)
    with torch.no_grad():
        grown.weight[:layer.out_features] = layer.weight
        grown.weight[layer.out_features:] = layer.weight.mean(0)
        if layer.bias is not None:
            grown.bias[:layer.out_features] = layer.bias
            grown.bias[layer.out_features:] = layer.bias.mean()
    return grown


def attach_head(encoder, directory: Path, spec: ClassifierSpec):
    """A head or contrastive version's model: its saved linear head on top of ``encoder`` (frozen; for a
    head version the base's, which may be shared by many versions since only the head differs; for a
    contrastive version its own ``encoder/``)."""
    from safetensors.torch import load_file

    model = build_pooled_head_model(encoder, len(spec.labels))
    model.classifier.load_state_dict(load_file(str(directory / "head.safetensors")))
    return model.eval()


def load_shared_head(directory: Path, encoder, tokenizer, device: str = "auto") -> "TextClassifier":
    """A head-only version over an already loaded ``encoder`` and its ``tokenizer``: only the head (a few KB)
    is read, so each further tenant's head version costs almost no memory.

    Raises:
        TailorError: the version is not head-only.
    """
    spec = ClassifierSpec.load(Path(directory))
    if spec.method != "head":
        raise TailorError(f"{directory}: a {spec.method} version has weights of its own; load it with from_dir")
    return TextClassifier(attach_head(encoder, Path(directory), spec), tokenizer, spec, device)


@dataclass(frozen=True)
class Prediction:
    """One text's predicted label, its probability and every label's probability.

    With an abstain threshold, a text whose top probability is below it gets ``label`` None, ``abstained``
    true and the ``reason``; ``score`` (the top probability) and ``scores`` are still given.
    """

    label: str | None
    score: float
    scores: dict[str, float]
    abstained: bool = False
    reason: str | None = None


def predictions_from_probs(labels: Sequence[str], probs, abstain_threshold: float | None = None) -> list[Prediction]:
    """One :class:`Prediction` per row of ``probs`` (``(n, len(labels))``, columns in ``labels`` order):
    the most probable label and every label's probability, rounded to 6 decimals.

    Args:
        abstain_threshold: None answers every row; a probability (0..1) leaves rows whose top probability is
            below it unanswered (see :class:`Prediction`).
    """
    probs = np.asarray(probs, dtype=np.float64)
    best = probs.argmax(axis=1).tolist()
    tops = probs.max(axis=1).tolist()
    out = []
    # rounded in one numpy call: a per-value round() was 1 ms of the event loop per 32 texts of 30 labels
    for b, top, row in zip(best, tops, np.round(probs, 6).tolist()):
        scores = dict(zip(labels, row))
        if abstain_threshold is not None and top < abstain_threshold:
            out.append(Prediction(None, round(top, 6), scores, True, _abstain_reason(top, abstain_threshold)))
        else:
            out.append(Prediction(labels[b], round(top, 6), scores))
    return out


def _abstain_reason(top: float, threshold: float) -> str:
    """``top probability 0.315 is below the abstain threshold 0.550`` (more digits where 3 would look equal)."""
    digits = 3 if f"{top:.3f}" != f"{threshold:.3f}" else 6
    return f"top probability {top:.{digits}f} is below the abstain threshold {threshold:.{digits}f}"


class TextClassifier:
    """A loaded classifier that predicts labels for texts.

    Texts are sorted by length and batched with dynamic padding; results come back in input order. It runs
    its PyTorch ``model``, or, when built with :meth:`from_dir` and a ``runtime``, a
    :class:`~tailor.models.runtimes.ClassifierRuntime` (``model`` is then loaded from ``directory`` on first
    use).
    """

    def __init__(self, model, tokenizer, spec: ClassifierSpec, device: str = "auto", *, runtime=None,
                 directory: Path | None = None):
        self._model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.labels = list(spec.labels)
        self.runtime = runtime
        self.directory = directory
        self.device = pick_device(device) if runtime is None else "cpu"
        if model is not None:
            model.to(self.device)

    @property
    def model(self):
        """The PyTorch module (read from ``directory`` on first use when the classifier runs on ONNX Runtime)."""
        if self._model is None:
            _, self._model, _ = load_model_for_inference(self.directory)
        return self._model

    @classmethod
    def from_dir(cls, directory: Path | str, device: str = "auto", runtime: str | None = None,
                 bases=None) -> "TextClassifier":
        """Load a classifier artifact directory (see the module docstring for its layout).

        Args:
            runtime: None runs the PyTorch model on ``device``; ``served`` runs on the runtime the version's
                gate record chose (what the server uses; torch-fp32 without a record); or one of
                :data:`~tailor.models.runtimes.RUNTIMES`.
            bases: the :class:`~tailor.models.runtimes.SharedBases` head and LoRA versions run on (default:
                this process's, under the settings' home).
        """
        directory = Path(directory)
        if runtime is not None:
            from tailor.models.runtimes import default_bases, load_runtime

            loaded = load_runtime(directory, bases or default_bases(), None if runtime == "served" else runtime)
            if loaded.name != "torch-fp32":
                return cls(None, loaded.tokenizer, loaded.spec, runtime=loaded, directory=directory)
        spec, model, tokenizer = load_model_for_inference(directory)
        return cls(model, tokenizer, spec, device, directory=directory)

    def encode(self, texts: Sequence[str]):
        """The texts' token ids (truncated to the model's length, unpadded): an ``Encoded``."""
        from tailor.train.batching import encode

        return encode(self.tokenizer, texts, self.spec.max_length)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64):
        """Class probabilities, shape ``(len(texts), len(labels))``, columns in ``labels`` order."""
        return self._proba(self.encode(texts), batch_size)

    def predict(self, texts: Sequence[str], batch_size: int = 64, *,
                abstain_threshold: float | None = None) -> list[Prediction]:
        """The most probable label of each text, with its probability and the full distribution.

        Args:
            abstain_threshold: leave texts whose top probability is below it unanswered (``label`` None,
                ``abstained`` true); a registered version's suggestion is
                :func:`tailor.eval.abstain.recorded_threshold`. None (default) answers every text.
        """
        return self.predict_encoded(self.encode(texts), batch_size, abstain_threshold=abstain_threshold)

    def predict_encoded(self, encoded, batch_size: int = 64, *,
                        abstain_threshold: float | None = None) -> list[Prediction]:
        """:meth:`predict` for texts already encoded with :meth:`encode` (the API counts their tokens too)."""
        return predictions_from_probs(self.labels, self._proba(encoded, batch_size), abstain_threshold)

    def _proba(self, encoded, batch_size: int):
        import torch

        from tailor.train.evaluate import predict_logits

        if self.runtime is not None:
            logits = self.runtime.predict_logits(encoded, batch_size)
        else:
            logits = predict_logits(self.model, encoded, self.tokenizer.pad_token_id, batch_size=batch_size,
                                    device=self.device)
        return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
