"""The label-free estimate on a synthetic calibrated case: labels drawn from the probabilities themselves, so
the expected accuracy and macro-F1 must match what the drawn labels give."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tailor.eval.calibration import apply_temperature
from tailor.monitor.estimate import expected_performance


def _calibrated_traffic(n: int, k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=(n, k)) + np.linspace(0, 1.5, k)  # uneven classes
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, np.array([rng.choice(k, p=p) for p in probs])


def test_the_estimate_matches_the_truth_on_calibrated_probabilities():
    probs, truth = _calibrated_traffic(20_000)
    estimate = expected_performance(probs)
    predicted = probs.argmax(axis=1)
    assert estimate["rows"] == 20_000
    assert estimate["accuracy"] == pytest.approx((predicted == truth).mean(), abs=0.01)
    assert estimate["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"), abs=0.01)


def test_the_recorded_temperature_corrects_an_overconfident_model():
    probs, truth = _calibrated_traffic(20_000, seed=1)
    sharpened = apply_temperature(probs, 1 / 2.0)             # what an over-confident model reports
    accuracy = (probs.argmax(axis=1) == truth).mean()
    assert expected_performance(sharpened)["accuracy"] > accuracy + 0.08
    assert expected_performance(sharpened, temperature=2.0)["accuracy"] == pytest.approx(accuracy, abs=0.01)


def test_no_traffic_gives_an_empty_estimate():
    assert expected_performance(np.zeros((0, 3))) == {"rows": 0, "accuracy": None, "macro_f1": None}
