"""Why a classifier chose its label: word-level leave-one-out occlusion, on whatever runtime serves it.

A text is split into units with character offsets (:func:`split_units`): words in space-separated scripts,
single characters in Chinese and Japanese. For ``n`` units the method builds ``n`` variants of the text,
each with one unit cut out, and scores the original and every variant in one batched call of the model's
own ``predict_proba`` (PyTorch, ONNX fp32 or int8: the numbers explain the runtime that answers). A unit's
weight for a label is ``p(label | text) - p(label | text without the unit)``: positive when the unit pushed
the model towards the label, negative when it pushed away.

Why occlusion: it needs nothing but the served model's probabilities (no gradients, so it runs on ONNX Runtime
and int8 graphs as well as on PyTorch), and a weight is a fact a reader can check by deleting the word.
Its cost is ``n + 1`` forward rows of about the text's length in one batch: a 30-token text costs a few times
its prediction, not the 50+ passes of integrated gradients (see ``bench/explain.py``).

Why single characters for Chinese: written Chinese has no spaces and most words are one or two characters;
without a segmenter (which would be a dependency and a second model to trust) a character is the smallest
unit a reader sees, its removal changes one or two tokens of either base model's tokenizer (BERT's splits
every Han character; XLM-R's pieces are one to a few characters), and the weights of a two-character word's
characters can be read together.

Long texts: at most ``max_units`` (default 64) units are explained. A text with more is explained in
``max_units`` spans of consecutive units (sizes differ by at most one; a span's ``token`` is the text it
covers, spaces included), so the whole text stays covered and the cost stays bounded at ``max_units + 1``
rows. Punctuation, symbols and emoji are never units: they stay in every variant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

MAX_UNITS = 64

# Han ideographs (with extension A and compatibility forms), kana: one unit per character
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# a word: letters/digits (not CJK), with inner apostrophes, hyphens, dots or commas kept inside it (don't,
# e-mail, 3.5, 1,200)
_LETTER = rf"(?:(?![{_CJK}])[^\W_])"
_UNIT = re.compile(rf"[{_CJK}]|{_LETTER}+(?:['’\-.,]{_LETTER}+)*")


@dataclass(frozen=True)
class Unit:
    """A piece of a text that an explanation weighs: ``text[start:end] == token``."""

    token: str
    start: int
    end: int


def split_units(text: str, max_units: int = MAX_UNITS) -> list[Unit]:
    """The units of ``text`` in order (see the module docstring), at most ``max_units`` of them.

    Args:
        max_units: a text with more units is cut into this many spans of consecutive units.

    Raises:
        ValueError: ``max_units`` is below 1.
    """
    if max_units < 1:
        raise ValueError(f"max_units must be at least 1, not {max_units}")
    units = [Unit(m.group(), m.start(), m.end()) for m in _UNIT.finditer(text)]
    if len(units) <= max_units:
        return units
    spans = np.array_split(np.arange(len(units)), max_units)
    return [Unit(text[units[s[0]].start:units[s[-1]].end], units[s[0]].start, units[s[-1]].end) for s in spans]


def without(text: str, units: Sequence[Unit]) -> str:
    """``text`` with ``units`` cut out (everything else, spaces and punctuation included, kept)."""
    out = text
    for unit in sorted(units, key=lambda u: u.start, reverse=True):
        out = out[:unit.start] + out[unit.end:]
    return out


def weights(units: Sequence[Unit], original: np.ndarray, variants: np.ndarray, column: int) -> list[dict]:
    """``[{"token", "start", "end", "weight"}]`` in text order: the drop of ``column``'s probability from
    ``original`` (``(C,)``) to each unit's variant (row ``i`` of ``variants`` lacks unit ``i``), 6 decimals."""
    drops = np.round(float(original[column]) - variants[:, column].astype(np.float64), 6).tolist()
    return [{"token": u.token, "start": u.start, "end": u.end, "weight": w} for u, w in zip(units, drops)]


@dataclass(frozen=True)
class Explanation:
    """One text's explanation.

    Attributes:
        label: the label explained: the most probable one for the original text.
        probs: the original text's probabilities (``(C,)``, label order), from the same call as the variants.
        tokens: the units' weights for ``label`` (see :func:`weights`).
        by_label: every label's weights (``{label: tokens}``), or None when only ``label`` was asked for.
    """

    label: str
    probs: np.ndarray
    tokens: list[dict]
    by_label: dict[str, list[dict]] | None = None


class OcclusionPlan:
    """The texts to score for explaining ``texts``: each original followed by its one-unit-less variants.

    Score :attr:`texts` in one call of any scorer (``predict_proba``, a runtime, the server's micro-batcher),
    then turn the probabilities into explanations with :meth:`explain`.

    Args:
        texts: the texts to explain.
        max_units: units per text at most (see :func:`split_units`).
    """

    def __init__(self, texts: Sequence[str], max_units: int = MAX_UNITS):
        self.units = [split_units(text, max_units) for text in texts]
        self.texts: list[str] = []
        self.originals: list[int] = []
        for text, units in zip(texts, self.units):
            self.originals.append(len(self.texts))
            self.texts.append(text)
            self.texts.extend(without(text, [unit]) for unit in units)

    def explain(self, labels: Sequence[str], probs: np.ndarray, all_labels: bool = False) -> list[Explanation]:
        """One :class:`Explanation` per text from ``probs``, the scores of :attr:`texts` (``(len(texts), C)``).

        Args:
            all_labels: also weigh every unit for every label (``by_label``).
        """
        probs = np.asarray(probs)
        out = []
        for units, at in zip(self.units, self.originals):
            original, variants = probs[at], probs[at + 1:at + 1 + len(units)]
            best = int(original.argmax())
            by_label = ({label: weights(units, original, variants, c) for c, label in enumerate(labels)}
                        if all_labels else None)
            tokens = by_label[labels[best]] if by_label else weights(units, original, variants, best)
            out.append(Explanation(labels[best], original, tokens, by_label))
        return out


def explain_texts(predict_proba: Callable[[list[str]], np.ndarray], labels: Sequence[str], texts: Sequence[str],
                  *, all_labels: bool = False, max_units: int = MAX_UNITS) -> list[Explanation]:
    """Explain ``texts`` with one call of ``predict_proba`` (originals and every variant together).

    Args:
        predict_proba: texts -> probabilities ``(n, len(labels))``, e.g. ``TextClassifier.predict_proba``
            (which batches its rows by length on its runtime).
        labels: the classifier's labels in column order.
        all_labels: also weigh every unit for every label.
        max_units: units per text at most (see :func:`split_units`).

    Returns:
        One :class:`Explanation` per text, in order.
    """
    plan = OcclusionPlan(texts, max_units)
    return plan.explain(labels, predict_proba(plan.texts), all_labels)


def strongest_first(tokens: Sequence[dict]) -> list[dict]:
    """``tokens`` ordered by the size of their weight, largest first (ties in text order)."""
    return sorted(tokens, key=lambda t: -abs(t["weight"]))
