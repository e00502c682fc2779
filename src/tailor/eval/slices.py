"""Scores per slice of the test rows (a column such as region, gender or hospital department), and how far apart.

Each slice gets its row count, accuracy with a Wilson 95% interval, macro-F1, and for a binary task the
positive rate (the share of rows predicted as the positive class) and the true positive rate. A slice with
fewer than ``min_rows`` rows (:data:`MIN_SLICE_ROWS` by default) is flagged ``too_small``: it is shown, but
left out of every gap, because its accuracy is too uncertain to judge (with 29 rows its interval spans
about 35 points).

* ``gap``: the best judgeable slice's accuracy minus this slice's (0 for the best; None when too small).
* ``largest_gap``: the best judgeable accuracy minus the worst (None with fewer than two judgeable slices).
* ``equal_opportunity``: binary tasks only, the largest difference in true positive rate (recall of the
  positive class) between judgeable slices that hold positive rows (Hardt et al., 2016).

The positive class of a binary task is the label the user names, else the test labels' minority class (on
a tie, the later label in sorted order); the result says which (``positive_label``, ``positive_label_from``).
A task with more than two labels has no positive class: ``positive_rate``, ``true_positive_rate`` and
``equal_opportunity`` are None.

Macro-F1 of a slice averages the F1 of the labels that occur in that slice (as gold or predicted label), as
scikit-learn does when it is given no label list; a label absent from a slice is not scored as 0 there.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from tailor.errors import UsageError

MIN_SLICE_ROWS = 30
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval
EMPTY_VALUE = "(empty)"  # how a row without a value in the slice column is grouped


def round4(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (it stays inside [0, 1] and is sound for small
    ``n`` and proportions near 0 or 1, unlike the normal approximation).

    Raises:
        ValueError: ``n`` is not positive or ``correct`` is outside ``0..n``.
    """
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"a proportion needs 0 <= correct <= n and n > 0, got {correct}/{n}")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def positive_class(y_true: Sequence[str], labels: Sequence[str], positive_label: str | None = None
                   ) -> tuple[str | None, str | None]:
    """The positive class of a binary task and where it came from.

    Returns:
        ``(label, "given")`` for ``positive_label``; ``(label, "minority")`` for the test labels' minority class
        (on a tie, the later label in sorted order); ``(None, None)`` for a task with more than two labels.

    Raises:
        UsageError: ``positive_label`` is not one of ``labels``, or is given for a task with more than two labels.
    """
    if positive_label is not None and positive_label not in labels:
        raise UsageError(f"positive label {positive_label!r} is not a label of the model "
                         f"({', '.join(map(str, labels))})")
    if len(labels) != 2:
        if positive_label is not None:
            raise UsageError(f"a positive label applies to a binary task; this model has {len(labels)} labels")
        return None, None
    if positive_label is not None:
        return positive_label, "given"
    counts = Counter(y_true)
    return min(sorted(labels), key=lambda label: (counts[label], -sorted(labels).index(label))), "minority"


def _f1_scores(y_true: Sequence[str], y_pred: Sequence[str]) -> list[float]:
    """Per-label F1 over the labels present as gold or predicted (0 for a label never got right)."""
    scores = []
    for label in sorted(set(y_true) | set(y_pred)):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == p == label)
        predicted = sum(1 for p in y_pred if p == label)
        actual = sum(1 for t in y_true if t == label)
        scores.append(2 * tp / (predicted + actual))
    return scores


def slice_scores(column: str | None, value: str, y_true: Sequence[str], y_pred: Sequence[str],
                 positive: str | None, min_rows: int = MIN_SLICE_ROWS) -> dict:
    """One slice's row: ``{"column", "value", "n", "accuracy", "accuracy_ci", "macro_f1", "positive_rate",
    "true_positive_rate", "gap" (None until :func:`add_gaps`), "too_small"}``, floats rounded to 4 decimals."""
    n = len(y_true)
    correct = sum(1 for t, p in zip(y_true, y_pred) if t == p)
    low, high = wilson_interval(correct, n)
    f1 = _f1_scores(y_true, y_pred)
    positives = sum(1 for t in y_true if t == positive)
    hits = sum(1 for t, p in zip(y_true, y_pred) if t == p == positive)
    return {"column": column, "value": value, "n": n, "accuracy": round4(correct / n),
            "accuracy_ci": [round4(low), round4(high)], "macro_f1": round4(sum(f1) / len(f1)),
            "positive_rate": None if positive is None else round4(sum(1 for p in y_pred if p == positive) / n),
            "true_positive_rate": round4(hits / positives) if positive is not None and positives else None,
            "gap": None, "too_small": n < min_rows}


def _spread(values: list[float]) -> float | None:
    return round4(max(values) - min(values)) if len(values) >= 2 else None


def add_gaps(slices: list[dict]) -> tuple[float | None, float | None]:
    """Fill in each judgeable slice's ``gap`` to the best judgeable slice (in place).

    Returns:
        ``(largest_gap, equal_opportunity)`` over the judgeable slices (see the module docstring).
    """
    judged = [s for s in slices if not s["too_small"]]
    if not judged:
        return None, None
    best = max(s["accuracy"] for s in judged)
    for s in judged:
        s["gap"] = round4(best - s["accuracy"])
    rates = [s["true_positive_rate"] for s in judged if s["true_positive_rate"] is not None]
    return _spread([s["accuracy"] for s in judged]), _spread(rates)


def score_slices(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], values: Sequence[str], *,
                 column: str, positive_label: str | None = None, min_rows: int = MIN_SLICE_ROWS) -> dict:
    """Score every slice of ``column`` (one value per row in ``values``).

    Args:
        y_true / y_pred: gold and predicted labels, one per row.
        labels: the model's label set.
        values: the slice column's value of each row (an empty value is grouped as ``(empty)``).
        positive_label: the positive class of a binary task (default: the minority class of ``y_true``).
        min_rows: slices with fewer rows are ``too_small`` and left out of the gaps.

    Returns:
        ``{"slice_column", "metric": "accuracy", "min_rows", "positive_label", "positive_label_from",
        "largest_gap", "equal_opportunity", "slices": [slice rows, largest first, then by value]}``.

    Raises:
        UsageError: a bad ``positive_label`` (see :func:`positive_class`).
        ValueError: the lists differ in length or are empty.
    """
    if not len(y_true) == len(y_pred) == len(values) or not len(y_true):
        raise ValueError(f"{len(y_true)} labels, {len(y_pred)} predictions and {len(values)} slice values: "
                         "give one of each per row, at least one row")
    positive, source = positive_class(y_true, labels, positive_label)
    rows: dict[str, list[int]] = {}
    for i, value in enumerate(values):
        rows.setdefault(value.strip() or EMPTY_VALUE, []).append(i)
    slices = [slice_scores(column, value, [y_true[i] for i in idx], [y_pred[i] for i in idx], positive, min_rows)
              for value, idx in sorted(rows.items(), key=lambda item: (-len(item[1]), item[0]))]
    largest_gap, equal_opportunity = add_gaps(slices)
    return {"slice_column": column, "metric": "accuracy", "min_rows": min_rows, "positive_label": positive,
            "positive_label_from": source, "largest_gap": largest_gap, "equal_opportunity": equal_opportunity,
            "slices": slices}


def format_slices_text(report: dict) -> str:
    """The slice table for a terminal: one line per slice, then the largest gap and equal opportunity."""
    lines = [f"slices of {report['slice_column']!r} (min {report['min_rows']} rows to judge):",
             f"  {'value':<20}{'n':>6}  {'accuracy':>8}  {'95% CI':<15}{'macro-F1':>8}  {'pos.rate':>8}  {'gap':>6}"]
    for s in report["slices"]:
        low, high = s["accuracy_ci"]
        rate = "-" if s["positive_rate"] is None else f"{s['positive_rate']:.3f}"
        gap = "too small" if s["too_small"] else f"{s['gap']:.3f}"
        lines.append(f"  {str(s['value'])[:19]:<20}{s['n']:>6}  {s['accuracy']:>8.3f}  "
                     f"{f'[{low:.3f}, {high:.3f}]':<15}{s['macro_f1']:>8.3f}  {rate:>8}  {gap:>6}")
    gap = report["largest_gap"]
    lines.append("largest gap: " + ("not judged (fewer than two slices large enough)" if gap is None else f"{gap:.4f}"))
    if report["positive_label"] is not None:
        eo = report["equal_opportunity"]
        lines.append(f"positive class: {report['positive_label']} ({report['positive_label_from']}); "
                     "equal opportunity difference: " + ("not judged" if eo is None else f"{eo:.4f}"))
    return "\n".join(lines)
