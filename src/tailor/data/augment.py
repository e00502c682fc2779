"""Cheap text augmentation for few labelled rows: EDA's label-preserving edits (Wei & Zou 2019), without a
thesaurus.

Each new copy of a row makes ``max(1, round(rate * tokens))`` edits of one kind; a row's copies take the kinds
of :data:`OPERATIONS` in turn, starting one further along for each row:

- ``swap``: two tokens change places;
- ``delete``: tokens are dropped (at least one stays);
- ``insert``: a token of the same text is inserted at another place (EDA inserts a synonym; a repeated word
  is the closest edit that needs no word list and keeps the text's language);
- ``crop``: a contiguous span of tokens is cut out (a sub-sentence keeps most of the meaning).

Tokens are the text's whitespace-separated words when it has :data:`MIN_WORDS` or more; otherwise (Chinese,
Japanese, a text of a few words) its characters, joined back without spaces. A copy equal to its original
or to another copy is dropped, so a row may get fewer copies than asked.

Copies only ever join the training rows: validation, test and every report stay on the user's rows.
"""

from __future__ import annotations

import random
from dataclasses import replace

from tailor.data.dataset import TextDataset

OPERATIONS = ("swap", "delete", "insert", "crop")
MIN_WORDS = 4  # below this many words a text is edited character by character
MIN_TOKENS = 4  # a text of fewer tokens (characters too) is not augmented: any edit would change what it says


def augment_dataset(ds: TextDataset, copies: int, *, rate: float = 0.1, seed: int = 0) -> tuple[TextDataset, dict]:
    """``ds`` followed by up to ``copies`` edited copies of each row (same label, same source line).

    Args:
        copies: new texts per row (0 returns ``ds`` unchanged).
        rate: the share of a text's tokens each edit touches (EDA's alpha).
        seed: fixes every edit.

    Returns:
        ``(dataset, summary)``: the rows, then the copies in row order; the summary says ``copies`` (asked per
        row), ``rows_added``, ``rate`` and ``operations`` (how many copies each kind of edit made).
    """
    summary = {"copies": copies, "rate": rate, "rows_added": 0, "operations": dict.fromkeys(OPERATIONS, 0)}
    if copies <= 0:
        return ds, summary
    rng = random.Random(seed)
    texts, sources = [], []
    for row, text in enumerate(ds.texts):
        seen = {text}
        for k in range(copies):
            operation = OPERATIONS[(row + k) % len(OPERATIONS)]
            new = augment_text(text, operation, rate, rng)
            if new is None or new in seen:
                continue
            seen.add(new)
            texts.append(new)
            sources.append(row)
            summary["operations"][operation] += 1
    summary["rows_added"] = len(texts)
    copied = ds.subset(sources)
    return replace(copied, texts=ds.texts + texts, labels=ds.labels + copied.labels, lines=ds.lines + copied.lines,
                   columns={name: values + copied.columns[name] for name, values in ds.columns.items()}), summary


def augment_text(text: str, operation: str, rate: float, rng: random.Random) -> str | None:
    """One edited copy of ``text`` by ``operation`` (see the module docstring), or None when the text is too
    short to edit."""
    words = text.split()
    by_words = len(words) >= MIN_WORDS
    tokens = words if by_words else [c for c in text if not c.isspace()]
    if len(tokens) < MIN_TOKENS:
        return None
    n = max(1, round(rate * len(tokens)))
    edited = EDITS[operation](list(tokens), n, rng)
    return (" " if by_words else "").join(edited)


def _swap(tokens: list[str], n: int, rng: random.Random) -> list[str]:
    for _ in range(n):
        i, j = rng.sample(range(len(tokens)), 2)
        tokens[i], tokens[j] = tokens[j], tokens[i]
    return tokens


def _delete(tokens: list[str], n: int, rng: random.Random) -> list[str]:
    drop = set(rng.sample(range(len(tokens)), min(n, len(tokens) - 1)))
    return [t for i, t in enumerate(tokens) if i not in drop]


def _insert(tokens: list[str], n: int, rng: random.Random) -> list[str]:
    for _ in range(n):
        tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(tokens))
    return tokens


def _crop(tokens: list[str], n: int, rng: random.Random) -> list[str]:
    span = min(n, len(tokens) - 1)
    start = rng.randrange(len(tokens) - span + 1)
    return tokens[:start] + tokens[start + span:]


EDITS = {"swap": _swap, "delete": _delete, "insert": _insert, "crop": _crop}
