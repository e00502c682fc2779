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

    Args:
        registry: where versions' artifacts are.
        size: how many models stay loaded.
        on_load: called with ``(kind, seconds)`` after each load (for /metrics).
    """

    def __init__(self, registry: Registry, size: int, on_load: Callable[[str, float], None] | None = None):
        self.registry = registry
        self.size = size
        self.on_load = on_load
        self._loaded: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._loaded)

    def _get(self, key: tuple, kind: str, load: Callable[[], object]):
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key]
            started = time.perf_counter()
            model = load()
            if self.on_load:
                self.on_load(kind, time.perf_counter() - started)
            with self._lock:
                self._loaded[key] = model
                while len(self._loaded) > self.size:
                    self._loaded.popitem(last=False)
                self._loading.pop(key, None)
            return model

    def classifier(self, named: NamedModel):
        """The loaded :class:`~tailor.models.classifier.TextClassifier` of a classification version.

        Raises:
            UsageError: the id names a base model or a version of another task.
        """
        if named.base is not None or named.task != "classify":
            what = "a base model without labels; fine-tune it first" if named.base else f"a {named.task} model"
            raise UsageError(f"model {named.id!r} is {what}: /v1/classifications needs a fine-tuned classifier")
        from tailor.models.classifier import TextClassifier

        return self._get(named.cache_key, "classifier",
                         lambda: TextClassifier.from_dir(self.registry.artifact_dir(named.version)))

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
        return self._get(named.cache_key, "chat", lambda: load_chat_model(source, merge=True))

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
            return self._get(named.cache_key, "encoder", lambda: TextEncoder.from_base(named.base.id))
        return TextEncoder.from_classifier(self.classifier(named))
