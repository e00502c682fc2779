"""An evaluation as a self-contained HTML page and as a short terminal summary.

Both take the same ``evaluation`` dict: ``model`` (a version ref such as ``credit-risk:3``), ``data`` (the
file evaluated on), ``metrics`` (:func:`tailor.eval.metrics.classification_metrics`), ``baseline``
(:func:`tailor.eval.metrics.majority_baseline`), ``base_model`` and optionally ``created_at``.
"""

from __future__ import annotations

from tailor import html
from tailor.eval.metrics import HEADLINE_KEYS, compare

METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1",
                "roc_auc": "ROC-AUC", "ece": "ECE (lower is better)", "log_loss": "log loss"}
TOP_CONFUSIONS = 10
WORST_CLASSES = 5


def headline_rows(evaluation: dict) -> list[tuple[str, float, float | None, float | None]]:
    """``(name, model value, baseline value, delta)`` for each headline metric the evaluation has.

    Accuracy, macro-F1 and weighted-F1 always appear, with the majority baseline and the delta; ROC-AUC, ECE
    and log loss appear when computed, without a baseline.
    """
    metrics, baseline = evaluation["metrics"], evaluation["baseline"]
    delta = compare(metrics, baseline)
    rows = [(METRIC_NAMES[key], metrics[key], baseline[key], delta[key]) for key in HEADLINE_KEYS]
    rows += [(METRIC_NAMES[key], metrics[key], None, None)
             for key in ("roc_auc", "ece", "log_loss") if metrics.get(key) is not None]
    return rows


def classes_by_f1(metrics: dict) -> list[tuple[str, dict]]:
    """``(label, scores)`` pairs from ``per_class``, worst F1 first; ties in label order."""
    return sorted(metrics["per_class"].items(), key=lambda item: item[1]["f1"])


def confused_pairs(metrics: dict, top: int = TOP_CONFUSIONS) -> list[tuple[str, str, int, float]]:
    """The ``top`` largest off-diagonal confusion-matrix cells.

    Returns:
        ``(true label, predicted label, count, share of the true label's rows)``, largest count first,
        ties in matrix order; cells with a count of 0 are left out.
    """
    labels, matrix = metrics["confusion_matrix"]["labels"], metrics["confusion_matrix"]["matrix"]
    cells = [(labels[i], labels[j], count, round(count / sum(row), 4))
             for i, row in enumerate(matrix) for j, count in enumerate(row) if i != j and count]
    return sorted(cells, key=lambda cell: -cell[2])[:top]


def _subtitle(evaluation: dict) -> str:
    parts = [f"data {evaluation['data']}", f"{evaluation['metrics']['n']} rows",
             f"base model {evaluation['base_model']}"]
    if evaluation.get("created_at"):
        parts.append(f"evaluated {evaluation['created_at']}")
    return " · ".join(parts)


def _optional(value: float | None, fmt: str = "{:.4f}") -> str:
    return "—" if value is None else fmt.format(value)


def render_eval_html(evaluation: dict) -> str:
    """The evaluation as a complete HTML page (every user string escaped).

    Sections: headline numbers beside the majority baseline and the delta, the confusion-matrix heat map,
    per-class F1 bars (worst on top), the per-class table (in label order) and the most confused pairs.

    Args:
        evaluation: see the module docstring.

    Returns:
        The HTML document.
    """
    metrics = evaluation["metrics"]
    matrix = metrics["confusion_matrix"]
    headline = html.table(["metric", "model", "majority baseline", "delta"],
                          [(name, value, _optional(base), _optional(delta, "{:+.4f}"))
                           for name, value, base, delta in headline_rows(evaluation)])
    baseline_note = f"The majority baseline predicts {evaluation['baseline']['label']!r} for every row."
    f1_bars = html.bar_chart([(label, s["f1"]) for label, s in classes_by_f1(metrics)], max_value=1.0)
    per_class = html.table(["label", "precision", "recall", "F1", "support"],
                           [(label, s["precision"], s["recall"], s["f1"], s["support"])
                            for label, s in metrics["per_class"].items()])
    pairs = confused_pairs(metrics)
    confusions = (html.table(["true label", "predicted", "count", "share of true label"], pairs) if pairs
                  else html.paragraph("No row was misclassified.", "ok"))
    sections = [
        html.section("Headline", headline, html.paragraph(baseline_note, "muted")),
        html.section("Confusion matrix", html.paragraph("Rows are true labels, columns predicted labels.", "muted"),
                     html.heatmap(matrix["matrix"], matrix["labels"])),
        html.section("Per-class F1", f1_bars),
        html.section("Per-class metrics", per_class),
        html.section("Most confused pairs", confusions),
    ]
    return html.page(f"Evaluation of {evaluation['model']}", sections, subtitle=_subtitle(evaluation))


def format_eval_text(evaluation: dict) -> str:
    """A terminal summary of at most 20 lines: headline numbers vs the baseline and the worst classes.

    Args:
        evaluation: see the module docstring.

    Returns:
        The summary, lines joined by newlines, no trailing newline.
    """
    lines = [f"{evaluation['model']} on {evaluation['data']} ({evaluation['metrics']['n']} rows)",
             f"{'metric':<22}{'model':>8}{'baseline':>10}{'delta':>9}"]
    for name, value, base, delta in headline_rows(evaluation):
        extra = "" if base is None else f"{base:>10.4f}{delta:>+9.4f}"
        lines.append(f"{name:<22}{value:>8.4f}{extra}")
    lines.append(f"baseline: always {evaluation['baseline']['label']!r}")
    lines.append("worst classes by F1:")
    lines += [f"  {label[:30]:<30} F1 {s['f1']:.4f}  P {s['precision']:.4f}  R {s['recall']:.4f}  n={s['support']}"
              for label, s in classes_by_f1(evaluation["metrics"])[:WORST_CLASSES]]
    return "\n".join(lines)
