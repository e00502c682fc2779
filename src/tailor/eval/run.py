"""``tailor eval``: score a registered version on a labelled file, attach the result to the version."""

from __future__ import annotations

import time
from pathlib import Path

from tailor.data.dataset import TextDataset
from tailor.errors import DataError, UsageError
from tailor.registry.store import DEFAULT_TENANT
from tailor.settings import Settings, get_settings


def scorable_rows(ds: TextDataset, labels) -> tuple[TextDataset, list[str]]:
    """The rows a classifier over ``labels`` can be scored on (a text, a known label), and the unknown labels.

    Raises:
        DataError: no row is left.
    """
    known = set(labels)
    keep = [i for i, (t, y) in enumerate(zip(ds.texts, ds.labels)) if t.strip() and y in known]
    if not keep:
        raise DataError(f"no rows with a label the model knows ({', '.join(list(labels)[:8])})")
    return ds.subset(keep), sorted({y for y in ds.labels if y and y not in known})


MAX_MISCLASSIFIED = 50
MISCLASSIFIED_CHARS = 300


def score(classifier, rows: TextDataset, train_labels) -> tuple[dict, dict]:
    """Test metrics of ``classifier`` (a TextClassifier) on ``rows``, and the majority baseline beside them."""
    return score_probabilities(classifier.labels, classifier.predict_proba(rows.texts), rows, train_labels)


def score_probabilities(labels, proba, rows: TextDataset, train_labels) -> tuple[dict, dict]:
    """:func:`score` from class probabilities already computed (``(len(rows), len(labels))``)."""
    from tailor.eval.metrics import classification_metrics, majority_baseline

    predictions = [labels[i] for i in proba.argmax(1)]
    return (classification_metrics(rows.labels, predictions, labels, proba),
            majority_baseline(train_labels, rows.labels, labels))


def zero_shot_baseline(base: ResolvedBase, labels: Sequence[str], texts: Sequence[str], targets: Sequence[str],
                       *, device: str = "cpu") -> dict:
    """How the zero-shot classifier from the label names alone does on labelled rows: the baseline a trained
    model should beat by more than the majority class's.

    Args:
        base: the base encoder the trained model starts from.
        labels: the model's labels (their names become the prompts).
        texts / targets: the evaluation rows and their gold labels (each among ``labels``).

    Returns:
        ``{"label": "zero-shot", "accuracy", "macro_f1", "weighted_f1"}`` (the majority baseline's shape, with
        ``label`` naming the baseline), plus ``"base_model"``, ``"scale"`` and ``"prompts"``.

    Raises:
        UsageError: a chat base (it has no sentence embeddings), or labels that cannot be prompts (see
            :func:`label_prompts`).
    """
    from tailor.catalog import CATALOG
    from tailor.eval.metrics import HEADLINE_KEYS, classification_metrics
    from tailor.models.zero_shot import ZERO_SHOT_LABEL, build_zero_shot_model

    if base.name in CATALOG and CATALOG[base.name].task != "classify":
        raise UsageError(f"no zero-shot baseline on {base.name}: a {CATALOG[base.name].task} model has no "
                         "sentence embeddings")
    zero_shot = build_zero_shot_model(base, labels, device=device)
    proba = zero_shot.classifier.predict_proba(list(texts))
    predictions = [zero_shot.classifier.labels[i] for i in proba.argmax(1)]
    scores = classification_metrics(list(targets), predictions, list(labels), proba)
    return {"label": ZERO_SHOT_LABEL, **{key: scores[key] for key in HEADLINE_KEYS}, "base_model": base.name,
            "scale": zero_shot.scale, "prompts": zero_shot.prompts}


def zero_shot_on_rows(base_model: str, labels, rows: TextDataset, *, task: str = "classify",
                      device: str = "cpu") -> dict:
    """The zero-shot baseline over the base model ``base_model`` on ``rows`` (see
    :func:`zero_shot_baseline`): one embedding pass over the rows' texts.

    Args:
        base_model: the catalog id or directory of the evaluated version's (or job's) base.
        labels: the model's labels; rows: the scored rows (each label among them).
        task: the evaluated model's task; only a classifier has a zero-shot baseline.

    Returns:
        The baseline's record, or ``{"label": "zero-shot", "skipped": reason}`` for a model that is not a
        classifier, or labels or a base it cannot be computed for (the evaluation goes on without it).
    """
    from tailor.catalog import resolve_base
    from tailor.errors import TailorError
    from tailor.models.zero_shot import ZERO_SHOT_LABEL

    if task != "classify":
        return {"label": ZERO_SHOT_LABEL, "skipped": f"a {task} model is not a classifier"}
    try:
        return zero_shot_baseline(resolve_base(base_model), labels, rows.texts, rows.labels, device=device)
    except TailorError as exc:
        return {"label": ZERO_SHOT_LABEL, "skipped": str(exc)}


def misclassified_rows(labels, proba, rows: TextDataset, limit: int = MAX_MISCLASSIFIED) -> dict:
    """The rows the model got wrong, the most confident mistakes first.

    Returns:
        ``{"count", "examples": [{"line", "text", "label", "predicted", "confidence"}]}``: every mistake
        counted, at most ``limit`` shown (texts cut to 300 characters); ties keep the file's order.
    """
    best = proba.argmax(1)
    wrong = [i for i, (k, label) in enumerate(zip(best, rows.labels)) if labels[k] != label]
    wrong.sort(key=lambda i: -float(proba[i, best[i]]))
    return {"count": len(wrong), "examples": [
        {"line": rows.lines[i], "text": rows.texts[i][:MISCLASSIFIED_CHARS], "label": rows.labels[i],
         "predicted": labels[best[i]], "confidence": round(float(proba[i, best[i]]), 4)} for i in wrong[:limit]]}


def abstain_on_rows(labels, proba, rows: TextDataset, suggested: dict | None) -> dict:
    """Coverage against accuracy on these rows, and how the version's suggested threshold does on them.

    Args:
        suggested: the version's abstain record (chosen on its validation rows), or None.

    Returns:
        ``{"curve": [coverage_at rows], "suggested": the record or None, "at_suggested": coverage_at row at
        the suggested threshold, or None}`` (see :mod:`tailor.eval.abstain`).
    """
    import numpy as np

    from tailor.eval.abstain import coverage_at, coverage_curve

    index = {label: i for i, label in enumerate(labels)}
    targets = np.array([index[label] for label in rows.labels])
    threshold = suggested.get("threshold") if suggested else None
    return {"curve": coverage_curve(proba, targets), "suggested": suggested,
            "at_suggested": None if threshold is None else coverage_at(proba, targets, threshold)}


def evaluate_model(ref: str, data, *, text_col: str | None = None, label_col: str | None = None,
                   tenant: str = DEFAULT_TENANT, report_path: str | Path | None = None,
                   settings: Settings | None = None, slice_col: str | None = None,
                   positive_label: str | None = None, counterfactual: bool = False,
                   terms_path: str | Path | None = None) -> dict:
    """Evaluate the version ``ref`` on labelled ``data`` (a path or a TextDataset).

    Rows with an empty text, or a label the model does not know, are left out and counted. The majority
    baseline uses the training labels' most frequent class; beside it, ``baseline["zero_shot"]`` is the
    zero-shot classifier from the label names over the version's base (:func:`zero_shot_on_rows`). The result
    is also stored in the version's metrics under ``evaluations`` (keyed by the file's sha256 prefix), and its
    bias report under ``fairness`` (:func:`tailor.eval.fairness.fairness_report`); a report of the slice finder
    alone (no ``slice_col``, no ``counterfactual``) does not replace a stored slice table or counterfactual check.

    Args:
        slice_col: score the slices of this column of the file (it must exist).
        positive_label: the positive class of a binary task for the slice rates.
        counterfactual: also swap protected terms and count changed predictions (``terms_path``: a user's
            term list merged with the shipped ones, see :mod:`tailor.eval.counterfactual`).

    Returns:
        ``{"model", "data", "rows", "skipped_rows", "unknown_labels", "metrics", "baseline", "base_model",
        "created_at", "misclassified", "abstain", "explanations", "fairness"}``: ``misclassified`` from
        :func:`misclassified_rows`, ``abstain`` from :func:`abstain_on_rows` with the version's suggested threshold,
        ``explanations`` from :func:`tailor.eval.explanations.explain_evaluation` (also stored in the version's
        metrics under ``explanations``).

    Raises:
        DataError: the file cannot be read, or has no column ``slice_col``; a bad terms file.
        UsageError: a bad ``positive_label``, or ``terms_path`` without ``counterfactual``.
    """
    from tailor.data.ingest import read_dataset
    from tailor.eval.counterfactual import build_swapper, load_terms
    from tailor.eval.explanations import explain_evaluation
    from tailor.eval.fairness import fairness_report, keeps_evidence, label_predictor
    from tailor.eval.slices import positive_class
    from tailor.eval.report import render_eval_html
    from tailor.registry.service import open_registry
    from tailor.models.classifier import TextClassifier

    settings = settings or get_settings()
    registry = open_registry(settings)
    version = registry.store.resolve(tenant, ref)
    if terms_path and not counterfactual:
        raise UsageError("terms are for the counterfactual check: pass --counterfactual with --terms")
    swapper = build_swapper(load_terms(terms_path)) if counterfactual else None
    ds = data if isinstance(data, TextDataset) else read_dataset(
        data, text_col, label_col, max_bytes=settings.max_file_bytes, keep_columns=(slice_col,) if slice_col else ())
    if slice_col and slice_col not in ds.columns:
        raise DataError(f"no column {slice_col!r} in the data (columns kept: {', '.join(ds.columns) or 'none'})",
                        field=slice_col)
    classifier = TextClassifier.from_dir(registry.artifact_dir(version))  # after the cheap checks of the input
    positive_class(ds.labels, classifier.labels, positive_label)  # a bad positive label, before predicting
    rows, unknown = scorable_rows(ds, classifier.labels)
    train_counts = version.lineage.get("label_counts") or {}
    train_labels = [label for label, n in train_counts.items() for _ in range(n)] or rows.labels
    proba = classifier.predict_proba(rows.texts)
    metrics, baseline = score_probabilities(classifier.labels, proba, rows, train_labels)
    baseline["zero_shot"] = zero_shot_on_rows(version.base_model, classifier.labels, rows, task=version.task,
                                              device=classifier.device)
    evaluation = {
        "model": version.ref, "data": str(ds.source.path if ds.source else "dataset"), "rows": len(rows),
        "skipped_rows": len(ds) - len(rows), "unknown_labels": unknown, "metrics": metrics, "baseline": baseline,
        "base_model": version.base_model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "misclassified": misclassified_rows(classifier.labels, proba, rows),
        "abstain": abstain_on_rows(classifier.labels, proba, rows, version.metrics.get("abstain")),
        "explanations": explain_evaluation(classifier.predict_proba, classifier.labels, rows, proba),
    }
    evaluation["fairness"] = fairness_report(
        classifier.labels, [classifier.labels[i] for i in proba.argmax(1)], rows,
        data=ds.source.sha256 if ds.source else "dataset", predict=label_predictor(classifier),
        slice_column=slice_col, positive_label=positive_label, swapper=swapper)
    key = (ds.source.sha256[:12] if ds.source else "dataset")
    evaluations = dict(version.metrics.get("evaluations", {}))
    evaluations[key] = {k: evaluation[k] for k in ("data", "rows", "created_at")} | {
        m: evaluation["metrics"][m] for m in ("accuracy", "macro_f1", "weighted_f1")}
    stored = {"evaluations": evaluations, "explanations": evaluation["explanations"]}
    if slice_col or counterfactual or not keeps_evidence(version.metrics.get("fairness")):
        stored["fairness"] = evaluation["fairness"]
    registry.store.update_metrics(tenant, version.name, version.version, stored)
    if report_path:
        Path(report_path).write_text(render_eval_html(evaluation), encoding="utf-8")
    return evaluation
