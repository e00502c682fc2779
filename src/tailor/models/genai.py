"""The fast decode engine for chat models: the token loop on onnxruntime-genai, everything else as ChatModel.

A chat model (the ``smollm2-135m-instruct`` base or a fine-tuned version, its LoRA merged in) is built once
by onnxruntime-genai's model builder into an ONNX decoder with weight-only int8 (or int4/fp32) matrices and
cached under ``TAILOR_HOME/cache/genai/``, one directory per source and precision::

    <name>-<precision>-<key>/   model.onnx, model.onnx.data, genai_config.json, the tokenizer files,
                                engine.json (what was built from what), TAILOR_CONVERTED.json (written last)

``<key>`` hashes the source directory's path and its seal (a registry version's ``TAILOR_COMPLETE.json``, the
base's ``TAILOR_CONVERTED.json``, or the weights of a plain Hugging Face directory), so a new version gets a
new engine and an unchanged one reuses its engine; the directory is built in a temporary sibling and renamed
into place (:mod:`tailor.models.conversion`), so a crashed build never looks whole.

:class:`EngineChatModel` keeps the Hugging Face tokenizer and chat template, stop strings, usage and
incremental decoding of :class:`~tailor.models.causal.ChatModel`: prompts and token counts are identical, only
the next-token loop runs on onnxruntime-genai (about 8x faster than PyTorch on a 2-core CPU).

The builder runs in a child process: it prints progress bars, and importing it calls ``logging.basicConfig``
(``onnxruntime.quantization``), which would turn on INFO logging in the server's process.

A sealed registry version (a master key is configured, :mod:`tailor.registry.artifacts`) gets a sealed engine:
the merge and the build run in a private memory-backed workspace, every file is encrypted under the tenant's data
key into the cache (named and marked as above, the marker listing the ciphertexts), and a process that loads it
decrypts it once into a private ``/dev/shm`` directory that it keeps while it runs (removed at exit, or when the
tenant is deleted: :func:`drop_engine_views`). The plaintext engine thus lives in memory only.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from tailor.errors import TailorError, UsageError
from tailor.models import conversion
from tailor.models.causal import ADAPTER_DIR, SPEC_FILE, TOKENIZER_DIR, ChatModel, ChatSpec
from tailor.train.progress import RecordingReporter

log = logging.getLogger(__name__)

CONVERTER = "tailor.models.genai/1"  # bump when the built files change, so old engines are rebuilt
PRECISIONS = ("int8", "int4", "fp32")
DEFAULT_PRECISION = "int8"
ENGINE_FILE = "engine.json"
UNSUPPORTED_EXIT = 3  # the builder child's exit status when it has no exporter for the architecture
SEALS = ("TAILOR_COMPLETE.json", conversion.MARKER)  # a registry version's marker, a converted base's marker


class EngineUnavailable(TailorError):
    """The fast engine cannot run this model here: onnxruntime-genai is missing, or (subclass
    :class:`EngineUnsupported`) its builder has no exporter for the model's architecture."""


class EngineUnsupported(EngineUnavailable):
    """onnxruntime-genai's model builder does not support the model's architecture."""


def import_genai():
    """The ``onnxruntime_genai`` module.

    Raises:
        EngineUnavailable: it is not installed or does not load.
    """
    try:
        import onnxruntime_genai
    except ImportError as exc:
        raise EngineUnavailable(f"onnxruntime-genai is not available ({exc}): pip install onnxruntime-genai") from exc
    return onnxruntime_genai


# ----------------------------------------------------------------------------------------------- building


def source_seal(directory: Path) -> Path:
    """The file that identifies a model directory's contents: its registry or conversion marker (which lists
    every file's sha256), else its weights (a plain Hugging Face directory) or its adapter's (an unregistered
    chat version).

    Raises:
        UsageError: the directory has neither a marker nor ``*.safetensors`` weights.
    """
    directory = Path(directory)
    candidates = [directory / name for name in SEALS if (directory / name).is_file()]
    candidates += sorted(directory.glob("*.safetensors")) + sorted(directory.glob(f"{ADAPTER_DIR}/*.safetensors"))
    if not candidates:
        raise UsageError(f"{directory} has no *.safetensors weights to build an engine from")
    return candidates[0]


def engine_dir_for(directory: Path, cache_root: Path, precision: str) -> Path:
    """Where the engine of ``directory`` at ``precision`` is cached: named after the directory (a registry
    version's after its model, ``<name>-<id[:8]>``), keyed by its resolved path and its seal's sha256."""
    directory = _on_disk(Path(directory).resolve())
    seal = source_seal(directory)
    digest = hashlib.sha256(f"{directory}\n{conversion.sha256_file(seal)}".encode()).hexdigest()
    name = f"{directory.parent.name}-{directory.name[:8]}" if seal.name == SEALS[0] else directory.name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "model"
    return Path(cache_root).expanduser().resolve() / f"{slug}-{precision}-{digest[:16]}"


def _on_disk(directory: Path) -> Path:
    """A sealed version's on-disk artifact for its plaintext view (so the engine's name and key stay the same in
    every process), any other directory as it is."""
    from tailor.registry.artifacts import sealed_view_of

    view = sealed_view_of(directory)
    return view.origin if view is not None else directory


def check_engine(engine_dir: Path, source: Path, precision: str, *, full: bool = False) -> str | None:
    """Why ``engine_dir`` is not a complete ``precision`` engine of the model directory ``source``, or None when
    it is (``full`` re-hashes every file)."""
    return conversion.check_marker(engine_dir, source_seal(source), _converter(precision), full=full)


def _converter(precision: str) -> str:
    from importlib.metadata import version

    return f"{CONVERTER} onnxruntime-genai/{version('onnxruntime-genai')} {precision}"


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown engine precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def build_engine(hf_dir: Path, out_dir: Path, precision: str = DEFAULT_PRECISION, *,
                 source: Path | None = None) -> Path:
    """Build the onnxruntime-genai engine of a Hugging Face causal-LM directory into ``out_dir``.

    The builder runs silently in a child process, into a temporary sibling of ``out_dir`` that is sealed with
    the conversion marker and renamed into place (replacing an older ``out_dir``).

    Args:
        hf_dir: a Hugging Face causal-LM directory with its tokenizer.
        out_dir: the engine directory to publish.
        precision: ``int8`` (weight-only int8 matrices), ``int4`` or ``fp32``.
        source: the model directory the engine stands for, whose :func:`source_seal` the marker is checked
            against later (default ``hf_dir``; a chat version's artifact when ``hf_dir`` is its merged copy).

    Returns:
        ``out_dir``.

    Raises:
        EngineUnavailable: onnxruntime-genai is not installed.
        EngineUnsupported: the builder has no exporter for the model's architecture.
        TailorError: the builder failed (with the end of its output).
    """
    _check_precision(precision)
    import_genai()
    hf_dir = Path(hf_dir).resolve()
    source = Path(source).resolve() if source is not None else hf_dir
    seal = source_seal(source)

    def build(tmp: Path) -> None:
        started = time.monotonic()
        run_builder(hf_dir, tmp, precision)
        record = {"source": str(source), "seal": str(seal), "precision": precision,
                  "converter": _converter(precision), "build_seconds": round(time.monotonic() - started, 1)}
        (tmp / ENGINE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        conversion.write_marker(tmp, seal, _converter(precision), sorted(p.name for p in tmp.iterdir() if p.is_file()))

    return conversion.publish_dir(out_dir, build)


def run_builder(hf_dir: Path, out_dir: Path, precision: str) -> None:
    """Run onnxruntime-genai's model builder on ``hf_dir`` into ``out_dir`` in a child process, its output
    captured.

    Raises:
        EngineUnsupported: the builder has no exporter for the architecture.
        TailorError: the builder failed.
    """
    command = [sys.executable, "-m", "tailor.models.genai", str(hf_dir), str(out_dir), precision]
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    if done.returncode == UNSUPPORTED_EXIT:
        raise EngineUnsupported(f"onnxruntime-genai cannot build this model: {why}")
    if done.returncode != 0:
        raise TailorError(f"building the onnxruntime-genai engine of {hf_dir} failed: {why}")


def _builder_main(argv: list[str]) -> int:
    """The child process of :func:`run_builder`: ``HF_DIR OUT_DIR PRECISION``; its last line of standard error
    says why it failed."""
    hf_dir, out_dir, precision = argv
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    with tempfile.TemporaryDirectory(prefix="tailor-genai-build-") as cache:
        try:
            options = parse_extra_options(None, hf_dir, out_dir, precision, "cpu", cache, [])
            create_model(None, hf_dir, out_dir, precision, "cpu", cache, **options)
        except NotImplementedError:
            config = json.loads((Path(hf_dir) / "config.json").read_text(encoding="utf-8"))
            print(f"its builder has no exporter for {'/'.join(config.get('architectures') or ['this model'])}",
                  file=sys.stderr)
            return UNSUPPORTED_EXIT
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
            print(f"{type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1
    return 0


def ensure_engine(source: str | Path, cache_root: Path, precision: str = DEFAULT_PRECISION,
                  progress=None) -> Path:
    """The engine directory of a chat model, built on first use and reused while its source is unchanged.

    Args:
        source: a catalog id (``smollm2-135m-instruct``: built from the de-quantized base), a Hugging Face
            causal-LM directory, or a chat version's artifact directory (its LoRA merged into the base first).
        cache_root: where engines live (``settings.home / "cache" / "genai"``).
        precision: as :func:`build_engine`.
        progress: a Reporter that hears about a build.

    Returns:
        The engine directory, ready for :func:`load_engine`.

    Raises:
        EngineUnavailable / EngineUnsupported / TailorError: as :func:`build_engine`.
    """
    from tailor.catalog import CATALOG, resolve_base

    _check_precision(precision)
    progress = progress or RecordingReporter()
    directory = Path(resolve_base(source, progress=progress).path if str(source) in CATALOG else source)
    directory = directory.expanduser().resolve()
    from tailor.registry.artifacts import sealed_view_of

    sealed = sealed_view_of(directory)
    source_dir = sealed.origin if sealed is not None else directory
    out_dir = engine_dir_for(directory, cache_root, precision)
    if conversion.reuse_conversion(out_dir, lambda d: check_engine(d, source_dir, precision), progress, out_dir.name):
        return _engine_view(out_dir, sealed) if sealed is not None else out_dir
    import_genai()
    progress.message(f"building the {precision} onnxruntime-genai engine of {directory.name} into {out_dir} (once)",
                     source=str(directory))
    started = time.monotonic()
    if sealed is not None:
        built = _build_sealed(directory, out_dir, precision, sealed)
    elif (directory / SPEC_FILE).is_file():
        built = _build_merged(directory, out_dir, precision)
    else:
        built = build_engine(directory, out_dir, precision)
    progress.message(f"engine {out_dir.name} ready in {time.monotonic() - started:.1f}s")
    return built


def _build_merged(artifact: Path, out_dir: Path, precision: str, *, work_dir: Path | None = None,
                  source: Path | None = None) -> Path:
    """Merge a chat version's LoRA into its base in a temporary directory (beside ``out_dir``, or in
    ``work_dir``), and build that (its marker checked against ``source``, default ``artifact``)."""
    from tailor.models.causal import export_chat_merged

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # named like publish_dir's temporaries, so remove_stale_builds also clears one a crash left behind
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.merge.", dir=work_dir or out_dir.parent) as tmp:
        export_chat_merged(artifact, Path(tmp) / "merged")
        return build_engine(Path(tmp) / "merged", out_dir, precision, source=source or artifact)


# ----------------------------------------------------------------------------------------------- sealed engines

_engine_views: dict[Path, Path] = {}  # sealed engine in the cache -> its plaintext copy in this process
_engine_views_lock = threading.Lock()
_engine_views_pid = os.getpid()  # a forked child must not remove its parent's copies at exit


def _build_sealed(view: Path, out_dir: Path, precision: str, sealed) -> Path:
    """Build a sealed version's engine in a private workspace (the merged weights and the engine never reach the
    disk), publish it encrypted as ``out_dir``, and keep the plaintext build as this process's copy."""
    from tailor.security.crypto import private_workspace_path, seal_tree

    sealed.keyring.data_key(sealed.tenant)
    workspace = private_workspace_path()
    try:
        plain = _build_merged(view, workspace / "engine", precision, work_dir=workspace, source=sealed.origin)
        marker = json.loads((plain / conversion.MARKER).read_text(encoding="utf-8"))

        def seal(tmp: Path) -> None:
            seal_tree(sealed.keyring, sealed.tenant, plain, tmp, marker["files"])
            conversion.write_marker(tmp, source_seal(sealed.origin), marker["converter"], marker["files"])

        conversion.publish_dir(out_dir, seal)
    except BaseException:
        shutil.rmtree(workspace, ignore_errors=True)
        raise
    with _engine_views_lock:
        old = _engine_views.pop(out_dir, None)
        _engine_views[out_dir] = plain
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)
    return plain


def _engine_view(out_dir: Path, sealed) -> Path:
    """This process's plaintext copy of the sealed engine ``out_dir``, decrypted on first use."""
    from tailor.security.crypto import open_tree, private_workspace_path

    with _engine_views_lock:
        known = _engine_views.get(out_dir)
        if known is not None and (known / conversion.MARKER).is_file():
            return known
        workspace = private_workspace_path()
        plain = workspace / "engine"
        plain.mkdir()
        try:
            open_tree(sealed.keyring, sealed.tenant, out_dir, plain,
                      json.loads((out_dir / conversion.MARKER).read_text(encoding="utf-8"))["files"],
                      f"engine {out_dir.name}")
            shutil.copyfile(out_dir / conversion.MARKER, plain / conversion.MARKER)
        except BaseException:
            shutil.rmtree(workspace, ignore_errors=True)
            raise
        _engine_views[out_dir] = plain
        return plain


def release_engine(engine_dir: Path) -> None:
    """Remove this process's plaintext copy of a sealed engine that ``engine_dir`` (from :func:`ensure_engine`)
    names, when it is one: a process that only built the engine need not keep it in memory."""
    engine_dir = Path(engine_dir)
    with _engine_views_lock:
        doomed = [d for d, plain in _engine_views.items() if plain == engine_dir]
    drop_engine_views(doomed)


def drop_engine_views(engine_dirs) -> int:
    """Remove this process's plaintext copies of the sealed engines ``engine_dirs``; returns how many there were."""
    wanted = {Path(d).resolve() for d in engine_dirs}
    with _engine_views_lock:
        doomed = [d for d in _engine_views if d in wanted]
        for engine_dir in doomed:
            shutil.rmtree(_engine_views.pop(engine_dir).parent, ignore_errors=True)
    return len(doomed)


@atexit.register
def _drop_all_engine_views() -> None:
    if os.getpid() == _engine_views_pid:
        drop_engine_views(list(_engine_views))


# ----------------------------------------------------------------------------------------------- decoding


def load_engine(engine_dir: Path):
    """The ``onnxruntime_genai.Model`` in ``engine_dir``, its ONNX Runtime session on all usable cores."""
    from tailor.runtime import usable_cores

    og = import_genai()
    config = og.Config(str(engine_dir))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": usable_cores()}}}}))
    return og.Model(config)


def engine_config(engine_dir: Path) -> dict:
    """The ``model`` section of the engine's ``genai_config.json``."""
    return json.loads((Path(engine_dir) / "genai_config.json").read_text(encoding="utf-8"))["model"]


class EngineChatModel(ChatModel):
    """A :class:`~tailor.models.causal.ChatModel` whose tokens come from onnxruntime-genai.

    Prompts, the chat template, stop strings, usage and streaming are ChatModel's; ``model`` is None.

    Attributes:
        engine: the ``onnxruntime_genai.Model``.
        engine_dir: the engine's cache directory.
        precision: the engine's weight precision.
    """

    def __init__(self, engine, tokenizer, engine_dir: Path, *, name: str, precision: str,
                 system_prompt: str | None = None):
        config = engine_config(engine_dir)
        super().__init__(None, tokenizer, name=name, device="cpu", max_length=int(config["context_length"]),
                         system_prompt=system_prompt)
        self.engine = engine
        self.engine_dir = Path(engine_dir)
        self.precision = precision
        self._vocab_size = int(config["vocab_size"])
        eos = config.get("eos_token_id")
        self._engine_end_ids = set(eos if isinstance(eos, list) else [eos]) - {None}

    def _end_ids(self) -> set[int]:
        return ({self.tokenizer.eos_token_id} | self._engine_end_ids) - {None}

    def _sample_tokens(self, prompt: list[int], max_tokens: int, temperature: float, top_p: float,
                       generator) -> Iterator[int]:
        """Token ids one at a time from an onnxruntime-genai generator: greedy when ``temperature`` is 0, else
        nucleus sampling (no top-k cut) seeded from ``generator``'s seed."""
        import numpy as np

        og = import_genai()
        params = og.GeneratorParams(self.engine)
        params.set_search_options(**self._search_options(len(prompt), max_tokens, temperature, top_p, generator))
        decoder = og.Generator(self.engine, params)
        decoder.append_tokens(np.asarray(prompt, dtype=np.int32))
        while not decoder.is_done():
            decoder.generate_next_token()
            yield int(decoder.get_next_tokens()[0])

    def _search_options(self, prompt_tokens: int, max_tokens: int, temperature: float, top_p: float,
                        generator) -> dict:
        """onnxruntime-genai search options; ``top_k`` is the vocabulary (its ``top_k=0`` also ignores ``top_p``)
        and the seed is the torch generator's (-1, a random seed, without one)."""
        options = {"max_length": min(prompt_tokens + max_tokens, self.max_length), "batch_size": 1}
        if temperature <= 0:
            return {**options, "do_sample": False}
        seed = generator.initial_seed() % 2**31 if generator is not None else -1
        return {**options, "do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": self._vocab_size,
                "random_seed": seed}


# ----------------------------------------------------------------------------------------------- loading


def load_fast_chat_model(ref_or_dir: str, settings=None, tenant: str = "default",
                         precision: str = DEFAULT_PRECISION, progress=None) -> ChatModel:
    """Load a chat model that decodes on onnxruntime-genai, building its engine on first use.

    Args:
        ref_or_dir: as :func:`tailor.models.causal.load_chat_model`: a catalog id, a directory (a Hugging Face
            causal LM or a chat version's artifact) or ``name``/``name:3``/``name@alias``.
        settings: whose storage root holds the registry and the engine cache (default: the global settings).
        tenant: the tenant whose registry reference is resolved.
        precision: the engine's weight precision (``int8``, ``int4`` or ``fp32``).
        progress: a Reporter that hears about a first build (and a catalog base's one-time conversion) before
            it starts; it hears nothing when the engine is already built.

    Returns:
        An :class:`EngineChatModel`; the PyTorch :class:`ChatModel` (adapter merged), with a logged warning,
        when onnxruntime-genai is not installed or cannot build the model's architecture.

    Raises:
        NotFoundError: an unknown reference.
        UsageError: not a chat model, or an unknown precision.
        TailorError: building the engine failed for another reason.
    """
    from tailor.models.causal import load_chat_model, load_chat_tokenizer, resolve_chat_source
    from tailor.settings import get_settings

    _check_precision(precision)
    settings = settings or get_settings()
    directory, name, version = resolve_chat_source(ref_or_dir, tenant, settings, progress)
    try:
        engine_dir = ensure_engine(directory, settings.home / "cache" / "genai", precision, progress)
        engine = load_engine(engine_dir)
    except EngineUnavailable as exc:
        log.warning("decoding %s with PyTorch (slower): %s", name, exc)
        return load_chat_model(str(ref_or_dir), tenant=tenant, settings=settings, device="cpu", merge=True)
    spec = ChatSpec.load(directory) if (directory / SPEC_FILE).is_file() else None
    tokenizer = load_chat_tokenizer(directory / TOKENIZER_DIR if spec else directory)
    chat = EngineChatModel(engine, tokenizer, engine_dir, name=name, precision=precision,
                           system_prompt=spec.system_prompt if spec else None)
    chat.version = version
    return chat


if __name__ == "__main__":
    sys.exit(_builder_main(sys.argv[1:]))
