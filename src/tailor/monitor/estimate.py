"""How good a classifier is on unlabelled traffic: accuracy and macro-F1 expected from its calibrated
probabilities (confidence-based performance estimation, as NannyML's CBPE).

If a version's probabilities are calibrated (:mod:`tailor.eval.calibration`), a text answered with top
probability ``p`` is right with probability ``p``. Summed over a window of traffic, that gives the expected
confusion counts without a single label: for class ``k``, the expected true positives are the probabilities
of ``k`` on the texts predicted ``k``, the false positives what those texts leave, and the false negatives
the probabilities of ``k`` on texts predicted otherwise. Expected accuracy is the mean top probability;
expected macro-F1 averages ``2 TP / (2 TP + FP + FN)`` over the classes with any expected or predicted
mass. The estimate holds while the model stays calibrated on the traffic; under a shift that breaks the
calibration it drifts from the truth, which is why drift is watched beside it and feedback labels measure
the truth where they exist.
"""

from __future__ import annotations

import numpy as np

from tailor.eval.calibration import apply_temperature


def expected_performance(probs, temperature: float = 1.0) -> dict:
    """``{"rows", "accuracy", "macro_f1"}`` expected for ``probs`` (``(n, K)``, rescaled by ``temperature``
    first); both None for no rows."""
    probs = np.asarray(probs, dtype=float)
    if len(probs) == 0:
        return {"rows": 0, "accuracy": None, "macro_f1": None}
    if temperature != 1.0:
        probs = apply_temperature(probs, temperature)
    predicted = probs.argmax(axis=1)
    chosen = np.zeros_like(probs, dtype=bool)
    chosen[np.arange(len(probs)), predicted] = True
    tp = (probs * chosen).sum(axis=0)
    fp = ((1 - probs) * chosen).sum(axis=0)
    fn = (probs * ~chosen).sum(axis=0)
    denominator = 2 * tp + fp + fn
    present = denominator > 1e-9
    f1 = np.where(present, 2 * tp / np.maximum(denominator, 1e-12), 0.0)
    return {"rows": int(len(probs)), "accuracy": round(float(probs.max(axis=1).mean()), 4),
            "macro_f1": round(float(f1[present].mean()), 4)}
