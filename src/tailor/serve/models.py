"""Which model a request names, and the loaded models the API keeps in memory.

A model id is a catalog base (``minilm-l6``) or a reference to one of the tenant's registered versions:
``credit-risk``, ``credit-risk:3``, ``credit-risk@production``, or a fine-tuned id ``ft:...``. Loaded models
stay in a least-recently-used cache of ``settings.model_cache_size`` entries, keyed by the exact version, so
a moved alias or a new version is picked up by the next request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from tailor.catalog import CATALOG, BaseModel
from tailor.errors import NotFoundError, UsageError
from tailor.registry.entities import ModelVersion
from tailor.registry.service import Registry


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
    try:
        return NamedModel(model_id, version=registry.store.resolve(tenant, model_id))
    except NotFoundError:
        raise
    except UsageError as exc:
        raise NotFoundError(f"model {model_id!r} not found ({exc})") from None


class ModelCache:
    """Loaded models by :attr:`NamedModel.cache_key`, least recently used evicted first.

    Base encoders are loaded once each and shared: a head-only version is only its linear head (a few KB)
    on top of its base's encoder, so many tenants' head versions fit in memory together (``head_size`` of
    them); full and LoRA versions are models of their own (``size`` of them).

    Args:
        registry: where versions' artifacts are.
        size: how many full or LoRA models (and chat models) stay loaded.
        head_size: how many head-only versions stay loaded.
        on_load: called with ``(kind, seconds)`` after each load (for /metrics).
    """

    def __init__(self, registry: Registry, size: int, on_load: Callable[[str, float], None] | None = None,
                 head_size: int = 10_000):
        self.registry = registry
        self.size = size
        self.head_size = head_size
        self.on_load = on_load
        self._bases: OrderedDict[tuple, object] = OrderedDict()
        self._models: OrderedDict[tuple, object] = OrderedDict()
        self._heads: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._bases) + len(self._models) + len(self._heads)

    def _get(self, key: tuple, kind: str, load: Callable[[], object], store: OrderedDict, limit: int | None):
        with self._lock:
            if key in store:
                store.move_to_end(key)
                return store[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in store:
                    return store[key]
            started = time.perf_counter()
            model = load()
            if self.on_load:
                self.on_load(kind, time.perf_counter() - started)
            with self._lock:
                store[key] = model
                while limit is not None and len(store) > limit:
                    store.popitem(last=False)
                self._loading.pop(key, None)
            return model

    def _base_encoder(self, base_name: str):
        """The shared :class:`~tailor.models.embed.TextEncoder` of a base model (loaded once, never evicted:
        there are as many as base models in use)."""
        from tailor.models.embed import TextEncoder

        return self._get(("base", base_name), "encoder", lambda: TextEncoder.from_base(base_name), self._bases, None)

    def classifier(self, named: NamedModel):
        """The loaded :class:`~tailor.models.classifier.TextClassifier` of a classification version.

        Raises:
            UsageError: the id names a base model or a version of another task.
        """
        if named.base is not None or named.task != "classify":
            what = "a base model without labels; fine-tune it first" if named.base else f"a {named.task} model"
            raise UsageError(f"model {named.id!r} is {what}: /v1/classifications needs a fine-tuned classifier")
        from tailor.models.classifier import TextClassifier, load_shared_head

        directory = self.registry.artifact_dir(named.version)
        if named.version.method == "head":
            base = self._base_encoder(named.version.base_model)
            return self._get(named.cache_key, "head", lambda: load_shared_head(directory, base.encoder, base.tokenizer),
                             self._heads, self.head_size)
        return self._get(named.cache_key, "classifier", lambda: TextClassifier.from_dir(directory), self._models,
                         self.size)

    def chat(self, named: NamedModel):
        """A :class:`~tailor.models.causal.ChatModel` for a chat base or a fine-tuned chat version (its adapter
        merged into the base weights for decoding speed).

        Raises:
            UsageError: the id names an encoder model.
        """
        if named.task != "chat":
            raise UsageError(f"model {named.id!r} is a {named.task} model: completions need a chat model "
                             "(e.g. smollm2-135m-instruct or a fine-tuned chat model)")
        from tailor.models.causal import load_chat_model

        source = named.base.id if named.base else str(self.registry.artifact_dir(named.version))
        return self._get(named.cache_key, "chat", lambda: load_chat_model(source, merge=True), self._models, self.size)

    def encoder(self, named: NamedModel):
        """A :class:`~tailor.models.embed.TextEncoder` for a base encoder or a fine-tuned classifier.

        Raises:
            UsageError: the id names a chat model.
        """
        if named.task != "classify":
            raise UsageError(f"model {named.id!r} is a {named.task} model: embeddings need an encoder "
                             "(e.g. minilm-l6 or a fine-tuned classifier)")
        from tailor.models.embed import TextEncoder

        if named.base is not None:
            return self._base_encoder(named.base.id)
        return TextEncoder.from_classifier(self.classifier(named))
