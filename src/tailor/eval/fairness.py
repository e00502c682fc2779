"""A version's bias report on labelled rows: the slices of a column (:mod:`tailor.eval.slices`), the slices the
finder picks out (:mod:`tailor.eval.slice_finder`) and the counterfactual check (:mod:`tailor.eval.counterfactual`),
in the shape stored as ``metrics["fairness"]``; and how it reads in a terminal and in the HTML report.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from tailor import html
from tailor.data.dataset import TextDataset
from tailor.eval.counterfactual import Swapper, counterfactual_check, format_counterfactual_text
from tailor.eval.slice_finder import find_worst_slices, format_worst_text
from tailor.eval.slices import MIN_SLICE_ROWS, format_slices_text, positive_class, score_slices


def fairness_report(labels: Sequence[str], predictions: Sequence[str], rows: TextDataset, *, data: str,
                    predict: Callable[[list[str]], list[str]], slice_column: str | None = None,
                    positive_label: str | None = None, swapper: Swapper | None = None) -> dict:
    """The bias report of a classifier's ``predictions`` on ``rows``.

    Args:
        labels: the model's label set.
        predictions: the predicted label of each row.
        rows: the scored rows; with ``slice_column``, ``rows.columns`` holds that column.
        data: the file's sha256, to tell which data the report is about.
        predict: labels of a list of texts, for the counterfactual check's swapped texts (one batched call).
        slice_column: the column to slice by, or None (then only the finder runs).
        positive_label: the positive class of a binary task (default: the test labels' minority class).
        swapper: run the counterfactual check with these terms; None skips it.

    Returns:
        ``{"data", "created_at", "slice_column", "metric": "accuracy", "min_rows", "positive_label",
        "positive_label_from", "largest_gap", "equal_opportunity", "slices", "worst_slices", "counterfactual"}``
        (``slices`` empty and the gaps None without a slice column; ``counterfactual`` None without a swapper).

    Raises:
        UsageError: a bad ``positive_label``.
    """
    positive, source = positive_class(rows.labels, labels, positive_label)
    sliced = (score_slices(rows.labels, predictions, labels, rows.columns[slice_column], column=slice_column,
                           positive_label=positive_label) if slice_column else None)
    return {
        "data": data, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "slice_column": slice_column, "metric": "accuracy", "min_rows": MIN_SLICE_ROWS,
        "positive_label": positive, "positive_label_from": source,
        "largest_gap": sliced["largest_gap"] if sliced else None,
        "equal_opportunity": sliced["equal_opportunity"] if sliced else None,
        "slices": sliced["slices"] if sliced else [],
        "worst_slices": find_worst_slices(rows.texts, rows.labels, predictions, positive),
        "counterfactual": (counterfactual_check(rows.texts, predictions, predict, swapper, rows.lines)
                           if swapper is not None else None),
    }


def evaluate_fairness(labels: Sequence[str], predict: Callable[[list[str]], list[str]], ds: TextDataset, *,
                      slice_column: str | None = None, positive_label: str | None = None,
                      swapper: Swapper | None = None) -> tuple[dict, dict]:
    """Predict ``ds``'s scorable rows with ``predict`` and build their bias report (as the API does).

    Returns:
        ``({"rows", "accuracy", "macro_f1"}, the report of :func:`fairness_report`)``.

    Raises:
        DataError: no row has a text and a label the model knows.
        UsageError: a bad ``positive_label``.
    """
    from tailor.eval.metrics import classification_metrics
    from tailor.eval.run import scorable_rows

    rows, _ = scorable_rows(ds, labels)
    positive_class(rows.labels, labels, positive_label)  # refuse a bad positive label before predicting
    predictions = predict(rows.texts)
    metrics = classification_metrics(rows.labels, predictions, labels, None)
    report = fairness_report(labels, predictions, rows, data=ds.source.sha256 if ds.source else "dataset",
                             predict=predict, slice_column=slice_column, positive_label=positive_label,
                             swapper=swapper)
    return {"rows": len(rows), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}, report


def label_predictor(classifier) -> Callable[[list[str]], list[str]]:
    """The predicted labels of a list of texts by ``classifier`` (a TextClassifier), in one batched call."""
    def predict(texts: list[str]) -> list[str]:
        return [classifier.labels[i] for i in classifier.predict_proba(texts).argmax(1)]

    return predict


def keeps_evidence(stored: dict | None) -> bool:
    """True when a stored report holds a slice table or a counterfactual check: a run of the finder alone
    must not replace it (the release gate reads it)."""
    return bool(stored) and (stored.get("slice_column") is not None or stored.get("counterfactual") is not None)


def _sliced_view(report: dict) -> dict:
    return {key: report[key] for key in ("slice_column", "min_rows", "largest_gap", "equal_opportunity", "slices",
                                         "positive_label", "positive_label_from")}


def format_fairness_text(report: dict) -> str:
    """The slice table (when there is a slice column), the finder's worst slices and the counterfactual summary."""
    parts = [format_slices_text(_sliced_view(report))] if report["slice_column"] else []
    parts.append(format_worst_text(report["worst_slices"]))
    if report["counterfactual"] is not None:
        parts.append(format_counterfactual_text(report["counterfactual"]))
    return "\n".join(parts)


def _slice_rows(slices: list[dict]) -> list[tuple]:
    return [(s["column"], s["value"], s["n"], s["accuracy"], f"[{s['accuracy_ci'][0]:.3f}, {s['accuracy_ci'][1]:.3f}]",
             s["macro_f1"], "—" if s["positive_rate"] is None else s["positive_rate"],
             "too small" if s["too_small"] else s["gap"]) for s in slices]


def fairness_section(report: dict) -> str:
    """The report's "Bias and slices" section for the evaluation page."""
    header = ["column", "value", "rows", "accuracy", "95% interval", "macro-F1", "positive rate"]
    parts = []
    if report["slice_column"]:
        gap, eo = report["largest_gap"], report["equal_opportunity"]
        parts += [html.paragraph(
            f"Slices of {report['slice_column']!r}; a slice under {report['min_rows']} rows is too small to judge "
            "and left out of the gaps. Largest accuracy gap between slices: "
            + ("not judged" if gap is None else f"{gap:.4f}")
            + ("" if report["positive_label"] is None else
               f"; positive class {report['positive_label']!r} ({report['positive_label_from']}), equal opportunity "
               "difference (largest gap in true positive rate): " + ("not judged" if eo is None else f"{eo:.4f}"))
            + "."), html.table(header + ["gap to best"], _slice_rows(report["slices"]))]
    worst = report["worst_slices"]
    parts.append(html.paragraph("Where the model does worst (found without a slice column: text length, script, "
                                "frequent words), compared with the other rows; * marks a slice whose 95% interval "
                                "lies below the other rows' accuracy.", "muted"))
    parts.append(html.table(header + ["gap to the rest"],
                            [(("* " if s["significant"] else "") + row[0],) + row[1:]
                             for s, row in zip(worst, _slice_rows(worst))])
                 if worst else html.paragraph("No slice does worse than the rest of the rows.", "ok"))
    counterfactual = report["counterfactual"]
    if counterfactual is not None:
        parts.append(html.paragraph(format_counterfactual_text(counterfactual).splitlines()[0]))
        parts.append(html.table(["line", "text", "swapped", "predicted", "after the swap"],
                                [(e["line"], e["text"], e["swapped"], e["predicted"], e["swapped_predicted"])
                                 for e in counterfactual["examples"]]) if counterfactual["examples"] else "")
    return html.section("Bias and slices", *parts)
