"""Compare two classifier versions on the same rows, before promoting one: ``tailor compare A B FILE`` and
``POST /v1/models/compare``.

Both versions predict the same rows with the runtime each is served with, from up to two sources: a
labelled file (``file``) and the served texts that were given a feedback label (``feedback``). Each source
gets a section (:func:`compare_predictions`)::

    {"source": "file", "data": "test.csv", "rows": 120, "skipped_rows": 2,
     "a": {"accuracy": 0.85, "macro_f1": 0.8412}, "b": {"accuracy": 0.8833, "macro_f1": 0.879},
     "difference": {"accuracy": 0.0333, "macro_f1": 0.0378},                      # B minus A
     "disagreements": {"rows": 12, "b_right_a_wrong": 7, "a_right_b_wrong": 3, "both_wrong": 2},
     "accuracy_test": {"test": "mcnemar_exact", "p_value": 0.34375, "verdict": "no_significant_difference"},
     "macro_f1_test": {"test": "paired_bootstrap", "level": 0.95, "resamples": 1000,
                       "interval": [-0.005, 0.081], "verdict": "no_significant_difference"},
     "verdict": "no_significant_difference",
     "per_class": [{"label": "negative", "support": 40, "a": {"precision", "recall", "f1"}, "b": {...},
                    "f1_difference": 0.021}, ...]}

Accuracy is tested with the exact McNemar test (a two-sided binomial test on the rows exactly one version
gets right), macro-F1 with a paired-bootstrap interval of B minus A. A test's verdict is ``b_better`` or
``a_better`` when it is significant (p < 0.05; the interval, at 4 decimals, excludes 0) and
``no_significant_difference`` otherwise; the section's verdict is the significant one when the tests do not
contradict each other, and ``no_significant_difference`` when neither is significant or they point opposite
ways. Scores are on 0..1 with four decimals; the p-value is exact and unrounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from tailor.data.dataset import TextDataset
from tailor.errors import DataError, UsageError
from tailor.eval.metrics import classification_metrics, per_class_metrics
from tailor.registry.entities import ModelVersion
from tailor.registry.store import DEFAULT_TENANT
from tailor.settings import Settings, get_settings
from tailor.stats import BOOTSTRAP_RESAMPLES, macro_f1_difference_interval, mcnemar_exact

B_BETTER, A_BETTER, NO_DIFFERENCE = "b_better", "a_better", "no_significant_difference"
ALPHA = 0.05
LEVEL = 0.95
SCORES = ("accuracy", "macro_f1")
LINES_SHOWN = 5  # lines named per unknown label in an error


def _r(value: float) -> float:
    return round(float(value), 4)


def accuracy_test(truth: Sequence[str], a: Sequence[str], b: Sequence[str], alpha: float = ALPHA) -> dict:
    """The exact McNemar test of ``b``'s accuracy against ``a``'s on the same rows.

    Returns:
        ``{"test": "mcnemar_exact", "p_value", "verdict"}``: ``b_better`` (or ``a_better``) when
        ``p_value < alpha`` and B (or A) is the one right on more of the rows they split on.
    """
    b_only = sum(y == q and y != p for y, p, q in zip(truth, a, b))
    a_only = sum(y == p and y != q for y, p, q in zip(truth, a, b))
    p_value = mcnemar_exact(b_only, a_only)
    verdict = NO_DIFFERENCE if p_value >= alpha else (B_BETTER if b_only > a_only else A_BETTER)
    return {"test": "mcnemar_exact", "p_value": p_value, "verdict": verdict}


def macro_f1_test(truth: Sequence[str], a: Sequence[str], b: Sequence[str], level: float = LEVEL,
                  resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """The paired-bootstrap interval of ``b``'s macro-F1 minus ``a``'s (see
    :func:`tailor.stats.macro_f1_difference_interval`), seeded so the same rows give the same interval.

    Returns:
        ``{"test": "paired_bootstrap", "level", "resamples", "interval": [low, high], "verdict"}``:
        ``b_better`` when the rounded interval lies above 0, ``a_better`` when below.
    """
    low, high = (_r(x) for x in macro_f1_difference_interval(list(truth), list(a), list(b), level, resamples, seed))
    verdict = B_BETTER if low > 0 else A_BETTER if high < 0 else NO_DIFFERENCE
    return {"test": "paired_bootstrap", "level": level, "resamples": resamples, "interval": [low, high],
            "verdict": verdict}


def overall_verdict(accuracy: str, macro_f1: str) -> str:
    """One verdict from the two tests': the significant one unless they contradict each other."""
    found = {accuracy, macro_f1} - {NO_DIFFERENCE}
    return found.pop() if len(found) == 1 else NO_DIFFERENCE


def disagreements(truth: Sequence[str], a: Sequence[str], b: Sequence[str]) -> dict:
    """The rows where the two predict different labels: ``{"rows", "b_right_a_wrong", "a_right_b_wrong",
    "both_wrong"}``."""
    split = [(y, p, q) for y, p, q in zip(truth, a, b) if p != q]
    return {"rows": len(split), "b_right_a_wrong": sum(q == y for y, _, q in split),
            "a_right_b_wrong": sum(p == y for y, p, _ in split),
            "both_wrong": sum(p != y and q != y for y, p, q in split)}


def per_class_table(truth: Sequence[str], a: Sequence[str], b: Sequence[str], labels: Sequence[str]) -> list[dict]:
    """One row per label, in ``labels`` order: ``{"label", "support", "a": {"precision", "recall", "f1"},
    "b": {...}, "f1_difference"}`` (B's F1 minus A's)."""
    scores_a, scores_b = per_class_metrics(truth, a, labels), per_class_metrics(truth, b, labels)
    rows = []
    for label in labels:
        first, second = scores_a[label], scores_b[label]
        rows.append({"label": label, "support": first["support"],
                     "a": {k: first[k] for k in ("precision", "recall", "f1")},
                     "b": {k: second[k] for k in ("precision", "recall", "f1")},
                     "f1_difference": _r(second["f1"] - first["f1"])})
    return rows


def compare_predictions(truth: Sequence[str], a: Sequence[str], b: Sequence[str], labels: Sequence[str], *,
                        resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """Compare two predictors' labels on the same rows (the section shape in the module docstring, without
    ``source``, ``data`` and ``skipped_rows``). No rows give the same shape: scores, p-value and interval
    None, no per-class rows, ``no_significant_difference``.

    Args:
        truth: the true labels.
        a / b: each version's predicted label per row.
        labels: the label set (the per-class table's order).

    Raises:
        ValueError: lengths differ, or a label outside ``labels`` (see :func:`tailor.eval.metrics.check_inputs`).
    """
    if len(truth) == 0:
        return _no_rows(resamples)
    first = classification_metrics(truth, a, labels)
    second = classification_metrics(truth, b, labels)
    accuracy, macro_f1 = accuracy_test(truth, a, b), macro_f1_test(truth, a, b, resamples=resamples, seed=seed)
    return {"rows": len(truth), "a": {k: first[k] for k in SCORES}, "b": {k: second[k] for k in SCORES},
            "difference": {k: _r(second[k] - first[k]) for k in SCORES},
            "disagreements": disagreements(truth, a, b), "accuracy_test": accuracy, "macro_f1_test": macro_f1,
            "verdict": overall_verdict(accuracy["verdict"], macro_f1["verdict"]),
            "per_class": per_class_table(truth, a, b, labels)}


def _no_rows(resamples: int) -> dict:
    empty = dict.fromkeys(SCORES)
    return {"rows": 0, "a": dict(empty), "b": dict(empty), "difference": dict(empty),
            "disagreements": {"rows": 0, "b_right_a_wrong": 0, "a_right_b_wrong": 0, "both_wrong": 0},
            "accuracy_test": {"test": "mcnemar_exact", "p_value": None, "verdict": NO_DIFFERENCE},
            "macro_f1_test": {"test": "paired_bootstrap", "level": LEVEL, "resamples": resamples, "interval": None,
                              "verdict": NO_DIFFERENCE},
            "verdict": NO_DIFFERENCE, "per_class": []}


# ---- the versions -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contender:
    """One side of a comparison.

    Attributes:
        ref: the reference as the user gave it (``sentiment@prod``).
        version: the version it resolved to.
        runtime: the version loaded on the runtime it is served with (a
            :class:`~tailor.models.runtimes.ClassifierRuntime`).
    """

    ref: str
    version: ModelVersion
    runtime: object

    @property
    def labels(self) -> list[str]:
        return list(self.runtime.labels)

    def predict(self, texts: list[str]) -> list[str]:
        """The version's label for each text, in order."""
        from tailor.models.optimize import predicted_labels

        return predicted_labels(self.runtime, self.runtime.encode(texts)) if texts else []

    def describe(self) -> dict:
        return {"ref": self.ref, "model": self.version.ref, "runtime": self.runtime.name}


def check_classifier(ref: str, version: ModelVersion, needed_by: str = "compare needs two fine-tuned classifiers"
                     ) -> None:
    """Raises UsageError unless ``version`` (what ``ref`` resolved to) is a classifier; ``needed_by`` ends the
    message (what needs one)."""
    if version.task != "classify":
        raise UsageError(f"{ref!r} is {version.ref}, a {version.task} model: {needed_by}")


def check_same_labels(a: Contender, b: Contender) -> None:
    """Raises UsageError, naming both label sets, unless ``a`` and ``b`` know the same labels."""
    if set(a.labels) != set(b.labels):
        raise UsageError(f"{a.ref} and {b.ref} have different labels ({a.version.ref}: {', '.join(sorted(a.labels))}; "
                         f"{b.version.ref}: {', '.join(sorted(b.labels))}); compare only versions with the same labels")


def load_contender(registry, tenant: str, ref: str, bases) -> Contender:
    """Resolve ``ref`` for ``tenant`` and load the version on the runtime it is served with.

    Args:
        registry: a :class:`~tailor.registry.service.Registry`.
        bases: the :class:`~tailor.models.runtimes.SharedBases` head and LoRA versions run on.

    Raises:
        NotFoundError: no such model, version or alias for this tenant.
        UsageError: a malformed reference, or a model that is not a classifier.
    """
    from tailor.models.runtimes import load_runtime

    version = registry.store.resolve(tenant, ref)
    check_classifier(ref, version)
    return Contender(ref, version, load_runtime(registry.artifact_dir(version), bases))


def file_rows(ds: TextDataset, labels: Sequence[str], name: str) -> tuple[TextDataset, int]:
    """The file's rows to compare on, and how many were skipped (an empty text or label).

    Raises:
        DataError: a row's label is not one of ``labels`` (each such label named with its first lines), or no
            row is left.
    """
    known = set(labels)
    unknown: dict[str, list[int]] = {}
    for label, line in zip(ds.labels, ds.lines):
        if label and label not in known:
            unknown.setdefault(label, []).append(line)
    if unknown:
        count = sum(len(lines) for lines in unknown.values())
        named = ", ".join(f"{label!r} ({_lines(lines)})" for label, lines in sorted(unknown.items()))
        raise DataError(f"{name}: {count} row{'s' if count > 1 else ''} with labels the versions do not know: "
                        f"{named}; their labels: {', '.join(sorted(known))}",
                        field=ds.source.label_col if ds.source else None)
    keep = [i for i, (text, label) in enumerate(zip(ds.texts, ds.labels)) if text.strip() and label]
    if not keep:
        raise DataError(f"{name}: no rows with both a text and a label to compare on")
    return ds.subset(keep), len(ds) - len(keep)


def _lines(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:LINES_SHOWN])) + (", ..." if len(lines) > LINES_SHOWN else "")
    return f"line{'s' if len(lines) > 1 else ''} {shown}"


def compare_versions(a: Contender, b: Contender, *, file: TextDataset | None = None, data: str | None = None,
                     feedback: list[tuple[str, str]] | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> dict:
    """Run both versions on the file's rows and on the feedback rows, and compare them.

    Args:
        a: the version now served (e.g. ``sentiment@prod``).
        b: the candidate.
        file: labelled rows, or None.
        data: the file's name as the user knows it (default: the path it was read from).
        feedback: ``(text, true label)`` rows from served traffic
            (:meth:`tailor.monitor.feedback.FeedbackStore.labelled_texts`),
            or None to leave that source out; rows with an empty text or a label the versions do not know are
            skipped and counted.

    Returns:
        ``{"object": "model.comparison", "a": {"ref", "model", "runtime"}, "b": {...}, "labels", "file",
        "feedback"}``: each source a section (see the module docstring) or None when not asked for; the
        feedback section may have 0 rows.

    Raises:
        UsageError: the versions know different labels, or neither source has a row.
        DataError: see :func:`file_rows`.
    """
    check_same_labels(a, b)
    labels = a.labels
    report = {"object": "model.comparison", "a": a.describe(), "b": b.describe(), "labels": labels,
              "file": None, "feedback": None}
    if file is not None:
        name = data or (file.source.path if file.source else "file")
        rows, skipped = file_rows(file, labels, name)
        report["file"] = _section("file", name, skipped, rows.texts, rows.labels, a, b, resamples, seed)
    if feedback is not None:
        known = set(labels)
        kept = [(text, label) for text, label in feedback if text.strip() and label in known]
        report["feedback"] = _section("feedback", None, len(feedback) - len(kept), [t for t, _ in kept],
                                      [y for _, y in kept], a, b, resamples, seed)
    if report["file"] is None and not (report["feedback"] or {}).get("rows"):
        names = " or ".join(sorted(model_names(a, b)))
        why = ("feedback was left out" if feedback is None else
               f"no stored answer of {names} has a feedback label yet" if not feedback else
               f"none of the {len(feedback)} feedback rows of {names} has a text and a label the versions know")
        raise UsageError(f"nothing to compare {a.ref} and {b.ref} on: no labelled file was given and {why}")
    return report


def model_names(a: Contender, b: Contender) -> set[str]:
    """The models whose served answers count as feedback on either version."""
    return {a.version.name, b.version.name}


def _section(source: str, data: str | None, skipped: int, texts: list[str], truth: list[str], a: Contender,
             b: Contender, resamples: int, seed: int) -> dict:
    comparison = compare_predictions(truth, a.predict(texts), b.predict(texts), a.labels, resamples=resamples,
                                     seed=seed)
    return {"source": source, "data": data, "skipped_rows": skipped} | comparison


def compare_refs(ref_a: str, ref_b: str, data=None, *,
                 feedback: Callable[[set[str]], list[tuple[str, str]]] | None = None, text_col: str | None = None,
                 label_col: str | None = None, tenant: str = DEFAULT_TENANT, settings: Settings | None = None) -> dict:
    """:func:`compare_versions` for two references of ``tenant``, on a labelled file read as ``tailor eval``
    reads it (a path or a TextDataset; None for feedback only), each version on its served runtime.

    Args:
        feedback: given the versions' model names, their ``(text, label)`` feedback rows (e.g. a partial of
            :meth:`tailor.monitor.feedback.FeedbackStore.labelled_texts`); None leaves feedback out.

    Raises:
        NotFoundError: an unknown model, version or alias.
        UsageError / DataError: see :func:`load_contender`, :func:`compare_versions`; the file cannot be read.
    """
    from tailor.data.ingest import read_dataset
    from tailor.models.runtimes import default_bases
    from tailor.registry.service import open_registry

    settings = settings or get_settings()
    registry, bases = open_registry(settings), default_bases(settings.home)
    a, b = (load_contender(registry, tenant, ref, bases) for ref in (ref_a, ref_b))
    rows = data
    if data is not None and not isinstance(data, TextDataset):
        rows = read_dataset(data, text_col, label_col, max_bytes=settings.max_file_bytes)
    return compare_versions(a, b, file=rows, feedback=None if feedback is None else feedback(model_names(a, b)))


# ---- text -------------------------------------------------------------------------------------------------
def describe_comparison(report: dict) -> str:
    """The report as a terminal table: per source the headline scores, both tests, the verdict, the
    disagreements and the per-class table."""
    a, b = report["a"], report["b"]
    lines = [f"A {a['ref']} ({a['model']}, {a['runtime']})  vs  B {b['ref']} ({b['model']}, {b['runtime']})"]
    for key in ("file", "feedback"):
        if report[key] is not None:
            lines += [""] + _describe_section(report[key])
    return "\n".join(lines)


def _describe_section(section: dict) -> list[str]:
    where = section["data"] if section["source"] == "file" else "labelled feedback"
    head = f"on {where}: {section['rows']} rows" + (f" ({section['skipped_rows']} skipped)"
                                                   if section["skipped_rows"] else "")
    if not section["rows"]:
        return [head]
    accuracy, macro_f1, split = section["accuracy_test"], section["macro_f1_test"], section["disagreements"]
    low, high = macro_f1["interval"]
    lines = [head, f"{'':<10}{'A':>8}{'B':>8}{'B - A':>9}"]
    for key, name, test in (("accuracy", "accuracy", f"McNemar exact p = {accuracy['p_value']:.4g}"),
                            ("macro_f1", "macro-F1", f"{macro_f1['level']:.0%} interval [{low:+.4f}, {high:+.4f}]")):
        lines.append(f"{name:<10}{section['a'][key]:>8.4f}{section['b'][key]:>8.4f}{section['difference'][key]:>+9.4f}"
                     f"   {test}")
    lines.append(f"disagree on {split['rows']} rows: B right/A wrong {split['b_right_a_wrong']}, A right/B wrong "
                 f"{split['a_right_b_wrong']}, both wrong {split['both_wrong']}")
    lines.append(f"verdict: {section['verdict']}")
    lines.append(f"  {'label':<24}{'n':>6}{'P A':>8}{'R A':>8}{'F1 A':>8}{'P B':>8}{'R B':>8}{'F1 B':>8}{'dF1':>9}")
    for row in section["per_class"]:
        first, second = row["a"], row["b"]
        lines.append(f"  {row['label'][:24]:<24}{row['support']:>6}{first['precision']:>8.4f}{first['recall']:>8.4f}"
                     f"{first['f1']:>8.4f}{second['precision']:>8.4f}{second['recall']:>8.4f}{second['f1']:>8.4f}"
                     f"{row['f1_difference']:>+9.4f}")
    return lines
