"""An evaluation as a self-contained HTML page and as a short terminal summary.

Both take the same ``evaluation`` dict: ``model`` (a version ref such as ``credit-risk:3``), ``data`` (the
file evaluated on), ``metrics`` (:func:`tailor.eval.metrics.classification_metrics`), ``baseline``
(:func:`tailor.eval.metrics.majority_baseline`), ``base_model`` and optionally ``created_at``,
``misclassified`` (:func:`tailor.eval.run.misclassified_rows`), ``abstain``
(:func:`tailor.eval.run.abstain_on_rows`), ``fairness`` (:func:`tailor.eval.fairness.fairness_report`) and
``explanations`` (:func:`tailor.eval.explanations.explain_evaluation`); the sections for the optional ones are
left out without them. ``baseline`` may hold a ``zero_shot`` entry: the zero-shot classifier from the label names
(:func:`tailor.eval.run.zero_shot_baseline`: ``{"label": "zero-shot", "accuracy", "macro_f1",
"weighted_f1", "base_model", ...}``), or ``{"label": "zero-shot", "skipped": reason}`` when it could not be
computed; it adds a column beside the majority baseline (or a note saying why not).
"""

from __future__ import annotations

from tailor import html
from tailor.eval.explanations import describe_faithfulness, explanations_section
from tailor.eval.fairness import fairness_section
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


def zero_shot_of(evaluation: dict) -> dict | None:
    """The evaluation's zero-shot baseline with its numbers, or None (absent, or skipped)."""
    found = (evaluation.get("baseline") or {}).get("zero_shot")
    return found if found and "skipped" not in found else None


def zero_shot_columns(evaluation: dict) -> list[tuple[float | None, float | None]]:
    """``(zero-shot value, model minus it)`` beside each of :func:`headline_rows`, in the same order: numbers for
    accuracy, macro-F1 and weighted-F1, ``(None, None)`` for the rest; empty without a zero-shot baseline."""
    zero_shot = zero_shot_of(evaluation)
    if zero_shot is None:
        return []
    delta = compare(evaluation["metrics"], zero_shot)
    by_name = {METRIC_NAMES[key]: (zero_shot[key], delta[key]) for key in HEADLINE_KEYS}
    return [by_name.get(name, (None, None)) for name, *_ in headline_rows(evaluation)]


def zero_shot_note(evaluation: dict) -> str | None:
    """One sentence on the zero-shot baseline: what it is, or why there is none; None when it was not asked
    for."""
    found = (evaluation.get("baseline") or {}).get("zero_shot")
    if not found:
        return None
    if "skipped" in found:
        return f"No zero-shot baseline: {found['skipped']}."
    return (f"The zero-shot baseline gives each row the label whose name is nearest to the text in "
            f"{found.get('base_model', evaluation['base_model'])} embeddings: what the label names alone reach, "
            "without any training.")


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

    Sections: headline numbers beside the majority baseline and the delta, the confusion-matrix heat map
    (whole labels, counts in the cells), per-class F1 bars (worst on top), the per-class table (in label
    order), the most confused pairs and, when the evaluation has them, the misclassified examples (most
    confident first), coverage against accuracy with the version's suggested abstain threshold, the bias report
    and the global explanations (faithfulness, words per label, explained mistakes).

    Args:
        evaluation: see the module docstring.

    Returns:
        The HTML document.
    """
    metrics = evaluation["metrics"]
    matrix = metrics["confusion_matrix"]
    rows = [(name, value, _optional(base), _optional(delta, "{:+.4f}"))
            for name, value, base, delta in headline_rows(evaluation)]
    columns = ["metric", "model", "majority baseline", "delta"]
    zero_shot = zero_shot_columns(evaluation)
    if zero_shot:
        columns += ["zero-shot baseline", "delta"]
        rows = [(*row, _optional(value), _optional(delta, "{:+.4f}")) for row, (value, delta) in zip(rows, zero_shot)]
    headline = html.table(columns, rows)
    baseline_note = f"The majority baseline predicts {evaluation['baseline']['label']!r} for every row."
    note = zero_shot_note(evaluation)
    if note:
        baseline_note += " " + note
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
    if evaluation.get("misclassified") is not None:
        sections.append(_misclassified_section(evaluation["misclassified"], metrics["n"]))
    if evaluation.get("abstain") is not None:
        sections.append(_abstain_section(evaluation["abstain"]))
    if evaluation.get("fairness") is not None:
        sections.append(fairness_section(evaluation["fairness"]))
    if evaluation.get("explanations") is not None:
        sections.append(explanations_section(evaluation["explanations"]))
    return html.page(f"Evaluation of {evaluation['model']}", sections, subtitle=_subtitle(evaluation))


def _misclassified_section(misclassified: dict, rows: int) -> str:
    if not misclassified["count"]:
        return html.section("Misclassified examples", html.paragraph("No row was misclassified.", "ok"))
    shown = len(misclassified["examples"])
    return html.section(
        "Misclassified examples",
        html.paragraph(f"{misclassified['count']} of {rows} rows misclassified; "
                       f"{'the ' + str(shown) + ' ' if shown < misclassified['count'] else ''}most confident "
                       "mistakes first (a confident mistake is often a wrong label in the file)."),
        html.table(["line", "text", "true label", "predicted", "confidence"],
                   [(e["line"], e["text"], e["label"], e["predicted"], e["confidence"])
                    for e in misclassified["examples"]]))


def abstain_rows(abstain: dict) -> list[tuple[str, str, str, str]]:
    """``(abstain below, answered, coverage, accuracy)`` for each curve threshold, with the suggested threshold
    in its place (marked), as display strings."""
    rows = [(row, False) for row in abstain["curve"]]
    if abstain.get("at_suggested"):
        rows.append((abstain["at_suggested"], True))
        rows.sort(key=lambda item: (item[0]["threshold"], item[1]))
    return [(f"{row['threshold']:.3f}" + (" (suggested)" if suggested else ""), str(row["answered"]),
             f"{row['coverage']:.1%}", "—" if row["accuracy"] is None else f"{row['accuracy']:.1%}")
            for row, suggested in rows]


def _abstain_note(abstain: dict) -> str:
    suggested, at = abstain.get("suggested"), abstain.get("at_suggested")
    if not suggested:
        return "This version records no suggested abstain threshold (it was trained before Tailor suggested one)."
    if not suggested["reachable"]:
        return f"This version has no suggested abstain threshold: {suggested['note']}."
    return (f"Suggested threshold {suggested['threshold']:.3f}, chosen on {suggested['rows']} validation rows for "
            f"{suggested['target_precision']:.0%} accuracy (there it answered {suggested['coverage']:.1%}); on "
            f"these rows it answers {at['coverage']:.1%}"
            + ("." if at["accuracy"] is None else f" at {at['accuracy']:.1%} accuracy."))


def _abstain_section(abstain: dict) -> str:
    return html.section(
        "Coverage against accuracy",
        html.paragraph("Abstaining on texts whose top probability is below a threshold answers fewer texts "
                       "(coverage) and gets more of the answered ones right (accuracy). Ask for it with "
                       "\"abstain\": true in /v1/classifications or tailor predict --abstain.", "muted"),
        html.paragraph(_abstain_note(abstain)),
        html.table(["abstain below", "answered", "coverage", "accuracy"], abstain_rows(abstain)))


def format_eval_text(evaluation: dict) -> str:
    """A terminal summary of at most 20 lines: headline numbers vs the baseline and the worst classes.

    Args:
        evaluation: see the module docstring.

    Returns:
        The summary, lines joined by newlines, no trailing newline.
    """
    zero_shot = zero_shot_columns(evaluation)
    lines = [f"{evaluation['model']} on {evaluation['data']} ({evaluation['metrics']['n']} rows)",
             f"{'metric':<22}{'model':>8}{'baseline':>10}{'delta':>9}" + (f"{'zero-shot':>11}{'delta':>9}"
                                                                           if zero_shot else "")]
    for k, (name, value, base, delta) in enumerate(headline_rows(evaluation)):
        extra = "" if base is None else f"{base:>10.4f}{delta:>+9.4f}"
        if zero_shot and zero_shot[k][0] is not None:
            extra += f"{zero_shot[k][0]:>11.4f}{zero_shot[k][1]:>+9.4f}"
        lines.append(f"{name:<22}{value:>8.4f}{extra}")
    lines.append(f"baseline: always {evaluation['baseline']['label']!r}")
    found = (evaluation.get("baseline") or {}).get("zero_shot")
    if found:
        lines.append(f"zero-shot: skipped ({found['skipped']})" if "skipped" in found else
                     f"zero-shot: the nearest label name in {found.get('base_model', evaluation['base_model'])} "
                     "embeddings, no training")
    if evaluation.get("abstain") and evaluation["abstain"].get("at_suggested"):
        at = evaluation["abstain"]["at_suggested"]
        accuracy = "" if at["accuracy"] is None else f" at {at['accuracy']:.1%} accuracy"
        lines.append(f"abstaining below {at['threshold']:.3f} (suggested): answers {at['coverage']:.1%} of rows"
                     f"{accuracy}")
    if evaluation.get("explanations"):
        lines.append("explanations: " + describe_faithfulness(evaluation["explanations"]["faithfulness"]))
    lines.append("worst classes by F1:")
    lines += [f"  {label[:30]:<30} F1 {s['f1']:.4f}  P {s['precision']:.4f}  R {s['recall']:.4f}  n={s['support']}"
              for label, s in classes_by_f1(evaluation["metrics"])[:WORST_CLASSES]]
    return "\n".join(lines)
