"""Is an explanation faithful? ERASER's comprehensiveness against random removal.

Comprehensiveness (DeYoung et al., ERASER, 2020) is how much the predicted label's probability drops when the
explanation's ``k`` most important units are removed from the text: ``p(label | text) - p(label | text
without them)``. An explanation that names what the model really used makes that drop large; the same
measure with ``k`` units drawn at random (``draws`` seeded draws per text, averaged) is what an explanation
that knew nothing would get. Their ratio is the figure reported: far above 1 for a faithful explanation.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np

from tailor.models.explain import Explanation, Unit, without

DEFAULT_K = 3
DEFAULT_DRAWS = 3
RANDOM_FLOOR = 1e-4  # a random drop below this counts as this much, so the ratio stays a finite number


def comprehensiveness(predict_proba: Callable[[list[str]], np.ndarray], labels: Sequence[str],
                      texts: Sequence[str], explanations: Sequence[Explanation], *, k: int = DEFAULT_K,
                      draws: int = DEFAULT_DRAWS, seed: int = 0) -> dict:
    """Comprehensiveness of ``explanations`` of ``texts`` and of random removal, in one scoring call.

    Texts with ``k`` units or fewer are left out (removing all of a text says nothing about which part
    mattered).

    Args:
        predict_proba: texts -> probabilities ``(n, len(labels))``: the model that was explained.
        labels: its labels in column order.
        explanations: one per text (:func:`tailor.models.explain.explain_texts`); the label explained and
            the original probabilities are taken from them.
        k: units removed per text.
        draws: random draws of ``k`` units per text.
        seed: seeds the random draws.

    Returns:
        ``{"k", "texts", "comprehensiveness", "random", "ratio"}``: the mean drop of the explained label's
        probability with the top-``k`` units removed, with ``k`` random units removed (averaged over the
        draws, then the texts), and their ratio (the random drop floored at 1e-4); 4 decimals (ratio 2).
        With no text left, the means are 0.0 and the ratio 0.0.

    Raises:
        ValueError: ``k`` or ``draws`` below 1, or a different number of texts and explanations.
    """
    if k < 1 or draws < 1:
        raise ValueError(f"k and draws must be at least 1 (got k={k}, draws={draws})")
    if len(texts) != len(explanations):
        raise ValueError(f"{len(texts)} texts but {len(explanations)} explanations")
    rng = random.Random(seed)
    variants, measured = [], []
    for text, explanation in zip(texts, explanations):
        units = [Unit(t["token"], t["start"], t["end"]) for t in explanation.tokens]
        if len(units) <= k:
            continue
        top = sorted(range(len(units)), key=lambda i: -explanation.tokens[i]["weight"])[:k]
        variants.append(without(text, [units[i] for i in top]))
        variants.extend(without(text, rng.sample(units, k)) for _ in range(draws))
        measured.append(explanation)
    if not measured:
        return {"k": k, "texts": 0, "comprehensiveness": 0.0, "random": 0.0, "ratio": 0.0}
    probs = np.asarray(predict_proba(variants)).reshape(len(measured), draws + 1, len(labels))
    columns = [list(labels).index(e.label) for e in measured]
    before = np.array([float(e.probs[c]) for e, c in zip(measured, columns)])
    after = probs[np.arange(len(measured)), :, columns]  # (texts, 1 + draws): the explained label's column
    top_drop = float(np.mean(before - after[:, 0]))
    random_drop = float(np.mean(before[:, None] - after[:, 1:]))
    return {"k": k, "texts": len(measured), "comprehensiveness": round(top_drop, 4), "random": round(random_drop, 4),
            "ratio": round(top_drop / max(random_drop, RANDOM_FLOOR), 2)}
