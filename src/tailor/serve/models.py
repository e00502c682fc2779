"""Which model a request names, and the loaded models the API keeps in memory.

A model id is a catalog base (``minilm-l6``) or a reference to one of the tenant's registered versions:
``credit-risk``, ``credit-risk:3``, ``credit-risk@production``, or a fine-tuned id ``ft:...``. Loaded models
are kept by the exact version, so a moved alias or a new version is picked up by the next request.

Every model in the cache has a lifecycle state (:class:`ModelState`): ``loading`` while one thread loads it
(requests for it wait for that load rather than start another), ``ready``, ``evicted`` once the
least-recently-used rule dropped it (the next request loads it again), and ``errored`` when its load failed:
requests get the error at once (503) until ``retry_s`` have passed, then one request tries again.

A chat model loads in a background thread, once however many requests ask for it. A completion request waits
for a quick load (an onnxruntime-genai engine already built: about a second), but not for a build (the
engine of a version registered without one, of the base, or after the cache was wiped: ~40 s for SmolLM2):
as soon as the loader says a build began, or after ``chat_wait_s``, it gets 503 with ``Retry-After``
(:data:`LOADING_RETRY_S`) and a message that says how long the build has run; ``POST /v1/models/{id}/load``
waits for it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, TypeVar

from tailor.catalog import CATALOG, BaseModel
from tailor.errors import NotFoundError, TailorError, UnavailableError, UsageError
from tailor.registry.entities import ModelVersion
from tailor.registry.service import Registry
from tailor.train.progress import RecordingReporter

T = TypeVar("T")
LOADING_RETRY_S = 5  # Retry-After of a request for a chat model whose engine is being built
CHAT_WAIT_S = 10.0  # the longest a completion request waits for a chat model's load that reports no build


@dataclass(frozen=True)
class NamedModel:
    """What a model id resolved to: a catalog base or a registered version (exactly one is set)."""

    id: str
    base: BaseModel | None = None
    version: ModelVersion | None = None

    @property
    def task(self) -> str:
        return self.base.task if self.base else self.version.task

    @property
    def cache_key(self) -> tuple:
        if self.base:
            return ("base", self.base.id)
        return ("version", self.version.tenant, self.version.name, self.version.version, self.version.artifact_path)


def resolve_model(registry: Registry, tenant: str, model_id: str) -> NamedModel:
    """Resolve ``model_id`` for ``tenant``.

    Raises:
        NotFoundError: no such base or version for this tenant (also for an id no model could have).
    """
    if model_id in CATALOG:
        return NamedModel(model_id, base=CATALOG[model_id])
    return NamedModel(model_id, version=registered(model_id, lambda: registry.store.resolve(tenant, model_id)))


def registered(model_id: str, find: Callable[[], T]) -> T:
    """``find()``'s answer about the registered model ``model_id``; an id no model could have is not found.

    Raises:
        NotFoundError: what ``find`` raises, or its UsageError (a malformed reference) as not found.
    """
    try:
        return find()
    except NotFoundError:
        raise
    except UsageError as exc:
        raise NotFoundError(f"model {model_id!r} not found ({exc})") from None


class ModelState(str, Enum):
    """Where a model is in its life in the cache."""

    LOADING = "loading"
    READY = "ready"
    EVICTED = "evicted"
    ERRORED = "errored"


class ModelUnavailable(UnavailableError):
    """A model's load failed recently; the API answers 503 until it may be tried again."""


@dataclass
class CachedModel:
    """One model's entry: its state, the loaded object once ready, and what its loads cost.

    Attributes:
        pool: ``models`` (full and contrastive versions, chat models), ``heads`` (head-only and LoRA versions
            over a shared base: a few KB to a few MB each) or ``encoders`` (PyTorch encoders for /v1/embeddings).
        load_seconds: the last load's duration (also observed in ``tailor_model_load_seconds``).
        own_bytes: weights held by this entry alone (a shared base is not counted).
    """

    key: tuple
    kind: str
    pool: str
    state: ModelState = ModelState.LOADING
    model: object = None
    error: str | None = None
    load_seconds: float | None = None
    loads: int = 0
    failed_at: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    own_bytes: int = 0
    loaded: threading.Event = field(default_factory=threading.Event)
    load_started: float = field(default_factory=time.monotonic)
    building_since: float | None = None  # a chat model's loader reported a build (an engine) at this time
    noticed: threading.Event = field(default_factory=threading.Event)  # a build began, or the load ended

    def status(self) -> dict:
        """The entry as JSON (the model object itself left out)."""
        return {"state": self.state.value, "kind": self.kind, "runtime": getattr(self.model, "name", None)
                if self.kind in ("classifier", "head", "lora") else None,
                "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 3),
                "loads": self.loads, "own_bytes": self.own_bytes, "error": self.error}


class ModelCache:
    """Loaded models by :attr:`NamedModel.cache_key` with an explicit lifecycle (see the module docstring).

    Head-only and LoRA versions run on their base's shared weights (:class:`~tailor.models.runtimes.SharedBases`,
    loaded once per base and runtime): each such version holds only its head or adapter, so many tenants'
    versions fit together (``head_size`` of them). Full and contrastive versions (a contrastive one has its own
    fine-tuned encoder) and chat models are models of their own (``size`` of them). Each pool drops its least
    recently used model first.

    Args:
        registry: where versions' artifacts are.
        size: how many full classifiers, chat models and embedding encoders stay loaded.
        head_size: how many head-only and LoRA versions stay loaded.
        cache_dir: where shared base graphs are built once (``<home>/cache/onnx``, as training builds them).
        cores: the cores model math runs on: loads run pinned to them, so the threads a runtime starts
            stay there.
        on_load / on_evict / on_error: called with ``(kind, seconds)``, ``(kind,)`` and ``(kind,)`` (for /metrics).
        retry_s: how long a failed load is answered from memory before it is tried again.
        chat_loader: ``(source, progress) -> ChatModel`` for chat models, ``progress`` a Reporter that hears
            about a build before it starts (default: the PyTorch loader; the app passes
            :func:`tailor.models.genai.load_fast_chat_model`).
        chat_wait_s: the longest a completion request waits for a chat model's load that reports no build.
    """

    def __init__(self, registry: Registry, size: int, *, head_size: int = 10_000, cache_dir=None,
                 cores: list[int] | None = None, on_load: Callable[[str, float], None] | None = None,
                 on_evict: Callable[[str], None] | None = None, on_error: Callable[[str], None] | None = None,
                 retry_s: float = 10.0, chat_loader: Callable[[str, object], object] | None = None,
                 chat_wait_s: float = CHAT_WAIT_S):
        self.registry = registry
        self.limits = {"models": size, "heads": head_size, "encoders": size}
        self.cache_dir = cache_dir
        self.cores = cores
        self.on_load, self.on_evict, self.on_error = on_load, on_evict, on_error
        self.retry_s = retry_s
        self.chat_loader = chat_loader
        self.chat_wait_s = chat_wait_s
        self._entries: dict[tuple, CachedModel] = {}
        self._lru: dict[str, OrderedDict[tuple, None]] = {pool: OrderedDict() for pool in self.limits}
        self._lock = threading.Lock()
        self._bases = None

    def __len__(self) -> int:
        """Models ready in memory."""
        return sum(1 for e in list(self._entries.values()) if e.state is ModelState.READY)

    def counts(self) -> dict[tuple[str, str], int]:
        """``(kind, state) -> number of models``, for /metrics."""
        out: dict[tuple[str, str], int] = {}
        for entry in list(self._entries.values()):
            out[(entry.kind, entry.state.value)] = out.get((entry.kind, entry.state.value), 0) + 1
        return out

    @staticmethod
    def key_of(named: NamedModel) -> tuple:
        """The cache key the model serves under: a base encoder serves embeddings, everything else itself."""
        return ("encoder", named.base.id) if named.base is not None and named.task == "classify" else named.cache_key

    def status(self, key: tuple) -> dict:
        """The lifecycle of the model ``key``: ``not_loaded`` when the cache has never held it."""
        entry = self._entries.get(key)
        return entry.status() if entry else {"state": "not_loaded", "kind": None, "runtime": None,
                                             "load_seconds": None, "loads": 0, "own_bytes": 0, "error": None}

    @property
    def bases(self):
        """The shared base encoders of head-only and LoRA versions (created on first use)."""
        if self._bases is None:
            from tailor.models.runtimes import SharedBases

            with self._lock:
                if self._bases is None:
                    self._bases = SharedBases(self.cache_dir, self._threads())
        return self._bases

    def ready(self, key: tuple):
        """The model ``key`` if it is loaded and ready (counted as used), else None; never loads, never blocks
        on IO, so a request may call it from the event loop and skip the thread pool."""
        with self._lock:
            entry = self._entries.get(key)
            return self._touch(entry) if entry is not None and entry.state is ModelState.READY else None

    def _touch(self, entry: CachedModel):
        """Count a use of the ready ``entry`` (the caller holds the lock); returns its model."""
        entry.last_used = time.monotonic()
        self._lru[entry.pool].move_to_end(entry.key)
        return entry.model

    def _threads(self) -> int:
        from tailor.runtime import usable_cores

        return len(self.cores) if self.cores else usable_cores()

    def _usable(self, entry: CachedModel | None) -> bool:
        """True when ``entry`` is ready; raises its error while a failed load is within ``retry_s`` (the
        caller holds the lock); False when it must be (or is being) loaded.

        Raises:
            ModelUnavailable: the entry's last load failed less than ``retry_s`` ago.
        """
        if entry is not None and entry.state is ModelState.READY:
            return True
        if entry is not None and entry.state is ModelState.ERRORED and time.monotonic() - entry.failed_at < self.retry_s:
            raise ModelUnavailable(entry.error, self._retry_after(entry))
        return False

    def _get(self, key: tuple, kind: str, pool: str, load: Callable[[], object]):
        """The ready model ``key``, loading it in this thread if no other thread is."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if self._usable(entry):
                    return self._touch(entry)
                if entry is None or entry.state is not ModelState.LOADING:
                    entry = self._entries[key] = CachedModel(key, kind, pool, loads=entry.loads if entry else 0)
                    break
            entry.loaded.wait()  # another thread is loading it: use its result
        return self._load(entry, load)

    def _load(self, entry: CachedModel, load: Callable[[], object]):
        from tailor.runtime import usable_core_ids
        from tailor.runtime import pin_current_thread

        started = time.perf_counter()
        before = usable_core_ids()  # the calling thread's cores, restored after the load
        try:
            pin_current_thread(self.cores)
            model = load()
        except Exception as exc:
            with self._lock:
                entry.state, entry.failed_at = ModelState.ERRORED, time.monotonic()
                entry.error = f"the model could not be loaded: {exc}"
                entry.loaded.set()
            if self.on_error:
                self.on_error(entry.kind)
            if isinstance(exc, TailorError):
                raise
            raise ModelUnavailable(entry.error, int(self.retry_s)) from exc
        finally:
            pin_current_thread(before)
        seconds = time.perf_counter() - started
        evicted = []
        with self._lock:
            entry.model, entry.state, entry.error = model, ModelState.READY, None
            entry.load_seconds, entry.loads = seconds, entry.loads + 1
            entry.own_bytes = int(getattr(model, "own_bytes", 0) or 0)
            lru = self._lru[entry.pool]
            lru[entry.key] = None
            while len(lru) > self.limits[entry.pool]:
                old = self._entries[lru.popitem(last=False)[0]]
                old.state, old.model = ModelState.EVICTED, None
                evicted.append(old.kind)
            entry.loaded.set()
        if self.on_load:
            self.on_load(entry.kind, seconds)
        for kind in evicted:
            if self.on_evict:
                self.on_evict(kind)
        return model

    def _retry_after(self, entry: CachedModel) -> int:
        return max(1, int(self.retry_s - (time.monotonic() - entry.failed_at) + 0.999))

    def classifier(self, named: NamedModel):
        """The loaded :class:`~tailor.models.runtimes.ClassifierRuntime` of a classification version, on the
        runtime its accuracy gate chose.

        Raises:
            UsageError: the id names a base model or a version of another task.
        """
        if named.base is not None or named.task != "classify":
            what = "a base model without labels; fine-tune it first" if named.base else f"a {named.task} model"
            raise UsageError(f"model {named.id!r} is {what}: /v1/classifications needs a fine-tuned classifier")
        from tailor.models.runtimes import load_runtime

        directory = self.registry.artifact_dir(named.version)
        shared = named.version.method in ("head", "lora")
        return self._get(named.cache_key, named.version.method if shared else "classifier",
                         "heads" if shared else "models",
                         lambda: load_runtime(directory, self.bases, threads=self._threads()))

    def chat(self, named: NamedModel, *, wait: bool = True):
        """A :class:`~tailor.models.causal.ChatModel` for a chat base or a fine-tuned chat version, loaded in a
        background thread the first time (see the module docstring).

        Args:
            wait: wait for the load however long it takes (``POST /load``); False (the completion routes)
                waits only while the load is quick: a build, or more than :attr:`chat_wait_s`, answers 503.

        Raises:
            UsageError: the id names an encoder model.
            ModelUnavailable: the model is still being built or loaded (without ``wait``; Retry-After
                :data:`LOADING_RETRY_S`), or its load failed within ``retry_s``.
        """
        if named.task != "chat":
            raise UsageError(f"model {named.id!r} is a {named.task} model: completions need a chat model "
                             "(e.g. smollm2-135m-instruct or a fine-tuned chat model)")
        source = named.base.id if named.base else str(self.registry.artifact_dir(named.version))
        while True:
            with self._lock:
                entry = self._entries.get(named.cache_key)
                if self._usable(entry):
                    return self._touch(entry)
                if entry is None or entry.state is not ModelState.LOADING:
                    entry = self._start_chat_load(named.cache_key, source, entry.loads if entry else 0)
            if wait:
                entry.loaded.wait()
            else:
                entry.noticed.wait(self.chat_wait_s)
            with self._lock:
                if entry.state is ModelState.READY:
                    return self._touch(entry)
                if entry.state is ModelState.ERRORED:
                    raise ModelUnavailable(entry.error, self._retry_after(entry))
                if entry.state is ModelState.LOADING:
                    raise ModelUnavailable(self._loading_message(named, entry), LOADING_RETRY_S)
            # evicted as soon as it was loaded (a cache of size 0): load it again

    def _start_chat_load(self, key: tuple, source: str, loads: int) -> CachedModel:
        """A new ``loading`` entry whose model a background thread loads (the caller holds the lock)."""
        entry = self._entries[key] = CachedModel(key, "chat", "models", loads=loads)
        progress = _BuildProgress(entry)

        def run() -> None:
            try:
                self._load(entry, lambda: self._load_chat(source, progress))
            except Exception:  # noqa: BLE001 - recorded in the entry (errored), which requests report
                pass
            finally:
                entry.noticed.set()

        threading.Thread(target=run, name="tailor-chat-load", daemon=True).start()
        return entry

    @staticmethod
    def _loading_message(named: NamedModel, entry: CachedModel) -> str:
        if entry.building_since is None:
            return (f"model {named.id!r} is still loading ({time.monotonic() - entry.load_started:.0f} s so far); "
                    f"retry after {LOADING_RETRY_S} s")
        return (f"model {named.id!r} is not ready yet: its onnxruntime-genai serving engine is being built (a "
                f"one-time step, {time.monotonic() - entry.building_since:.0f} s so far); retry after "
                f"{LOADING_RETRY_S} s")

    def _load_chat(self, source: str, progress):
        if self.chat_loader is not None:
            return self.chat_loader(source, progress)
        from tailor.models.causal import load_chat_model

        return load_chat_model(source, merge=True)

    def encoder(self, named: NamedModel):
        """A :class:`~tailor.models.embed.TextEncoder` (PyTorch) for a base encoder or a fine-tuned classifier.

        Raises:
            UsageError: the id names a chat model.
        """
        if named.task != "classify":
            raise UsageError(f"model {named.id!r} is a {named.task} model: embeddings need an encoder "
                             "(e.g. minilm-l6 or a fine-tuned classifier)")
        from tailor.models.classifier import TextClassifier
        from tailor.models.embed import TextEncoder

        if named.base is not None:
            return self._get(self.key_of(named), "encoder", "encoders",
                             lambda: TextEncoder.from_base(named.base.id))
        directory = self.registry.artifact_dir(named.version)
        return self._get(("encoder", *named.cache_key), "encoder", "encoders",
                         lambda: TextEncoder.from_classifier(TextClassifier.from_dir(directory)))


class _BuildProgress(RecordingReporter):
    """Hears a chat model's loader: its first message means a build began (nothing is said when the engine is
    already built), which the entry records and which ends the wait of the requests for it."""

    def __init__(self, entry: CachedModel):
        super().__init__()
        self.entry = entry

    def message(self, text: str, **data) -> None:
        super().message(text, **data)
        if self.entry.building_since is None:
            self.entry.building_since = time.monotonic()
        self.entry.noticed.set()
