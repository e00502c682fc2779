"""A dataset's fingerprint for drift checks: what its texts look like, to compare served texts with later.

Two parts:

- :func:`text_features`: one text's cheap facts (its length in characters, its main script, and, given the
  tokenizer's ids, how many of its tokens are the unknown token). Serving records them for every classified
  text, stored or not, so the length, script and unknown-token figures of a window need no stored input.
- :func:`fingerprint`: a training set's sample of texts (for the embedding test, which needs texts) with
  the same facts, written beside a version's weights (:data:`FINGERPRINT_FILE`).

The main script (:func:`tailor.data.language.main_script`) stands in for the language.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from tailor.data.language import main_script

FINGERPRINT_FILE = "fingerprint.json"
SAMPLE_TEXTS = 1000  # texts kept for the embedding test: enough for a stable reference, small on disk


def text_features(text: str, unknown_tokens: int | None = None) -> dict:
    """``{"chars", "script"}`` of one text, with ``"unknown_tokens"`` when the count is given."""
    features = {"chars": len(text), "script": main_script(text)}
    if unknown_tokens is not None:
        features["unknown_tokens"] = int(unknown_tokens)
    return features


def count_unknown(tokenizer, texts: Sequence[str], max_length: int = 512) -> tuple[list[int], list[int]]:
    """``(unknown tokens per text, tokens per text)`` under ``tokenizer`` (a Hugging Face tokenizer)."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    unk = tokenizer.unk_token_id
    return [row.count(unk) if unk is not None else 0 for row in ids], [len(row) for row in ids]


def script_shares(scripts: Sequence[str | None]) -> dict[str, float]:
    """Each main script's share of ``scripts`` (texts without letters counted as ``none``), sorted by name."""
    counts = Counter(script or "none" for script in scripts)
    total = sum(counts.values())
    return {script: round(count / total, 4) for script, count in sorted(counts.items())} if total else {}


def fingerprint(texts: Sequence[str], tokenizer=None, *, max_length: int = 512, sample: int = SAMPLE_TEXTS,
                seed: int = 0) -> dict:
    """A training set's fingerprint: a random sample of up to ``sample`` texts, in random order (a prefix of it
    is a random sample too), with their lengths and main scripts, and the unknown-token rate over the sample (``None`` without a tokenizer).

    Returns:
        ``{"texts": [...], "chars": [...], "scripts": {script: share}, "unknown_token_rate": r,
        "rows": len(texts)}``.
    """
    # in random order, always: a file sorted by label must not give a reference that starts with a few labels
    chosen = random.Random(seed).sample(list(texts), min(len(texts), sample))
    rate = None
    if tokenizer is not None and chosen:
        unknown, tokens = count_unknown(tokenizer, chosen, max_length)
        rate = round(sum(unknown) / max(1, sum(tokens)), 6)
    return {"texts": chosen, "chars": [len(t) for t in chosen],
            "scripts": script_shares([main_script(t) for t in chosen]), "unknown_token_rate": rate,
            "rows": len(texts)}


def load_fingerprint(directory) -> dict | None:
    """The fingerprint written beside a version's weights in ``directory``, or None (trained before
    fingerprints were kept)."""
    import json
    from pathlib import Path

    path = Path(directory) / FINGERPRINT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
