"""Temperature scaling: the fitted temperature undoes a known over-confidence, never changes a label, and is
left at 1.0 on too few rows."""

import numpy as np
import pytest

from tailor.eval.calibration import (MIN_ROWS, apply_temperature, calibrate, describe_calibration,
                                     expected_calibration_error, fit_temperature, mean_confidence)


def _overconfident(n: int, k: int = 4, true_temperature: float = 2.5, seed: int = 0):
    """Rows whose labels are drawn from calibrated probabilities, reported sharpened by ``true_temperature``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, k))
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(k, p=p) for p in calibrated])
    return apply_temperature(calibrated, 1 / true_temperature), calibrated, targets


def test_the_fitted_temperature_recovers_a_known_overconfidence():
    reported, calibrated, targets = _overconfident(4000)
    temperature = fit_temperature(reported, targets)
    assert temperature == pytest.approx(2.5, rel=0.08)
    assert np.abs(apply_temperature(reported, temperature) - calibrated).max() < 0.05
    assert expected_calibration_error(calibrated, targets) < 0.03 < expected_calibration_error(reported, targets)


def test_calibration_keeps_every_label_and_records_its_effect():
    reported, _, targets = _overconfident(600, seed=1)
    targets[:5] = -1                                        # labels the classifier does not know: left out
    record = calibrate(reported, targets)
    assert set(record) == {"temperature", "rows", "fitted", "capped", "accuracy_bound", "ece_before", "ece_after",
                           "nll_before", "nll_after"}
    assert record["capped"] is False  # plenty of mistakes: the likelihood's temperature stands
    assert record["fitted"] is True and record["rows"] == 595 and record["temperature"] > 1.5
    assert record["ece_after"] < record["ece_before"] and record["nll_after"] < record["nll_before"]
    scaled = apply_temperature(reported, record["temperature"])
    assert (scaled.argmax(axis=1) == reported.argmax(axis=1)).all()
    assert describe_calibration(record).startswith(f"calibration: temperature {record['temperature']:.2f}, expected "
                                                   f"calibration error {record['ece_before']:.3f} -> ")


def test_too_few_rows_leave_the_temperature_at_one():
    reported, _, targets = _overconfident(MIN_ROWS - 1)
    assert calibrate(reported, targets) == {"temperature": 1.0, "rows": MIN_ROWS - 1, "fitted": False}
    assert describe_calibration(calibrate(reported, targets)) == (
        f"calibration: temperature 1.0 (only {MIN_ROWS - 1} labelled validation rows, {MIN_ROWS} needed)")


def test_rows_without_mistakes_cannot_make_the_answers_certain():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(8), size=80)
    probs[np.arange(80), np.arange(80) % 8] += 1.0          # under-confident but always right
    probs /= probs.sum(axis=1, keepdims=True)
    targets = np.arange(80) % 8
    assert fit_temperature(probs, targets) == pytest.approx(0.05, rel=0.01)  # the likelihood alone: certainty
    record = calibrate(probs, targets)
    assert record["capped"] is True and record["accuracy_bound"] == round(81 / 82, 4)
    assert mean_confidence(probs, record["temperature"]) == pytest.approx(81 / 82, abs=1e-4)
    assert 0.05 < record["temperature"] < 1.0  # sharper than reported, not certain
