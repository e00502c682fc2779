"""The zero-shot job: register a classifier from label names (and optional one-line descriptions) alone.

``tailor zero-shot --labels "billing,cancellation"`` and :func:`tailor.zero_shot` run :func:`run_zero_shot_job`:
the model is built by :func:`tailor.models.zero_shot.build_zero_shot_model` (each label's prompt embedded as a
row of an ordinary method-``head`` model's linear layer), scored on an eval file when one is given, and
registered like any version, with ``lineage["zero_shot"]`` recording its prompts and scale. The labels come
from the command line (:func:`parse_labels`) or a file (:func:`read_label_file`).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import tailor
from tailor.cores import holding_cores
from tailor.errors import DataError, UsageError
from tailor.models.zero_shot import ZeroShotModel, build_zero_shot_model, label_prompts
from tailor.registry.entities import ModelVersion
from tailor.settings import Settings, get_settings
from tailor.train.progress import RecordingReporter, Reporter

LABEL_FILE_SUFFIXES = (".json", ".csv", ".txt")


def parse_labels(text: str) -> list[str]:
    """The labels of ``--labels "billing,technical issue,cancellation"``: comma-separated, each stripped.

    Raises:
        UsageError: an empty label (two commas in a row, or a trailing comma).
    """
    labels = [part.strip() for part in text.split(",")]
    if any(not label for label in labels):
        raise UsageError(f"--labels {text!r} has an empty label: separate labels by single commas")
    return labels


def read_label_file(path: str | Path) -> tuple[list[str], dict[str, str]]:
    """The labels and their descriptions from a file, by extension.

    - ``.json``: an object mapping each label to its description (a string, or null/"" for none), or a list
      of labels;
    - ``.csv``: a header with a ``label`` column and optionally a ``description`` column;
    - ``.txt``: one label per line (blank lines skipped).

    Returns:
        ``(labels in file order, {label: description})`` (labels without a description left out).

    Raises:
        DataError: the file cannot be read, or is malformed (the message names the line or column).
        UsageError: another extension.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_FILE_SUFFIXES:
        raise UsageError(f"labels file {path.name!r}: use a .json, .csv or .txt file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read labels file {path}: {exc}") from None
    if suffix == ".json":
        return _labels_from_json(text, path)
    if suffix == ".csv":
        return _labels_from_csv(text, path)
    return [line.strip() for line in text.splitlines() if line.strip()], {}


def _labels_from_json(text: str, path: Path) -> tuple[list[str], dict[str, str]]:
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"labels file {path.name}: not JSON ({exc.msg})", line=exc.lineno) from None
    if isinstance(content, list) and all(isinstance(item, str) for item in content):
        return list(content), {}
    if not isinstance(content, dict):
        raise DataError(f"labels file {path.name}: expected an object {{label: description}} or a list of labels")
    for label, description in content.items():
        if description is not None and not isinstance(description, str):
            raise DataError(f"labels file {path.name}: the description of {label!r} is not a string", field=label)
    return list(content), {label: d for label, d in content.items() if d and d.strip()}


def _labels_from_csv(text: str, path: Path) -> tuple[list[str], dict[str, str]]:
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "label" not in columns:
        raise DataError(f"labels file {path.name}: no 'label' column in the header (columns: "
                        f"{', '.join(reader.fieldnames or []) or 'none'})", line=1)
    reader.fieldnames = columns
    labels, descriptions = [], {}
    for row in reader:
        label = (row.get("label") or "").strip()
        if not label:
            raise DataError(f"labels file {path.name}: empty label", line=reader.line_num, field="label")
        labels.append(label)
        if (row.get("description") or "").strip():
            descriptions[label] = row["description"]
    return labels, descriptions


@dataclass
class ZeroShotResult:
    """What :func:`run_zero_shot_job` registered.

    Attributes:
        version: the registered method-``head`` version.
        prompts / scale: what its head rows were made from.
        metrics: test metrics on the eval file (:func:`tailor.eval.metrics.classification_metrics`), None
            without one.
        baseline: the majority baseline on the same rows, None without an eval file.
        base_reason: why this base.
        serving: the runtime gate's record (``serving.json``).
        timings: seconds per stage and in total.
    """

    version: ModelVersion
    prompts: list[str]
    scale: float
    metrics: dict | None
    baseline: dict | None
    base_reason: str
    serving: dict
    timings: dict

    def summary(self) -> dict:
        """The one JSON object that ``tailor zero-shot --json`` prints."""
        keep = ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "ece")
        return {"model": self.version.ref, "name": self.version.name, "version": self.version.version,
                "method": self.version.method, "base_model": self.version.base_model,
                "labels": self.version.lineage["zero_shot"]["labels"], "prompts": self.prompts,
                "scale": self.scale, "runtime": self.serving["runtime"],
                "metrics": None if self.metrics is None else {k: self.metrics.get(k) for k in keep},
                "baseline": None if self.baseline is None else {k: self.baseline.get(k)
                                                                for k in ("label", "accuracy", "macro_f1")},
                "timings": self.timings}


def _eval_rows(eval_file, labels, text_col, label_col, settings: Settings, reporter: Reporter,
               redact_pii: bool = False):
    """The eval file's rows the labels can be scored on (personal data replaced by placeholders with
    ``redact_pii``), saying how many were left out and why."""
    from dataclasses import replace

    from tailor.data.ingest import read_dataset
    from tailor.data.pii import redact_texts
    from tailor.eval.run import scorable_rows

    raw = read_dataset(eval_file, text_col, label_col, max_bytes=settings.max_file_bytes)
    if redact_pii:  # scored, fingerprinted and quoted in the evaluation report: no personal data there
        raw = replace(raw, texts=redact_texts(raw.texts)[0])
    rows, unknown = scorable_rows(raw, labels)
    if len(rows) < len(raw):
        reporter.message(f"eval file: {len(raw) - len(rows)} rows left out (empty, or a label not among the "
                         f"labels{': ' + ', '.join(unknown[:5]) if unknown else ''})")
    return raw, rows


def _choose_base(base: str, eval_texts: list[str] | None, prompts: list[str]) -> tuple[str, str]:
    from tailor.catalog import AUTO, choose_base

    if base != AUTO:
        return base, "chosen by the user"
    name, reason = choose_base(eval_texts or prompts)
    return name, f"{reason} (from the {'eval texts' if eval_texts else 'label prompts'})"


@holding_cores("train")
def run_zero_shot_job(labels: Sequence[str], *, descriptions: dict[str, str] | None = None, name: str,
                      base: str = "auto", eval_file=None, text_col: str | None = None, label_col: str | None = None,
                      tenant: str = "default", settings: Settings | None = None, reporter: Reporter | None = None,
                      actor: str | None = None, new_labels: bool = False,
                      redact_pii: bool = False) -> ZeroShotResult:
    """Build the zero-shot classifier for ``labels`` and register it as a method-``head`` version.

    Nothing is trained. With ``eval_file`` the version is scored on its rows (test metrics beside the
    majority baseline, whose majority class is the eval rows' own, there being no training rows), and the
    runtime gate chooses its serving runtime on them; without one it records no metrics (there is nothing to
    measure them on) and serves on ``onnx-fp32``, the fp32 graph of its base checked against PyTorch, since
    int8 is not allowed without a score. No abstain threshold or calibration is fitted (no validation rows).

    Args:
        labels: the class names (the version's labels, sorted as a trained version's are).
        descriptions: a one-line description per label, for some or all (see :func:`label_prompts`).
        name: the registry name.
        base: ``auto`` (:func:`tailor.catalog.choose_base` on the eval texts, else on the prompts), a
            catalog id or a local Hugging Face directory.
        eval_file: a labelled CSV/TSV/JSONL file to score the version on; rows whose label is not among
            ``labels`` are left out and counted.
        actor: who registers the version (``lineage["actor"]``).
        new_labels: register even if the model's latest version has other labels.
        redact_pii: replace e-mails, phones, card, ID and IBAN numbers in the eval texts by placeholders before
            they are scored (a fine-tuning job's option, and its tenant's switch).

    Returns:
        A :class:`ZeroShotResult`.

    Raises:
        UsageError: bad labels or descriptions, a bad name or base, or labels that differ from the model's
            latest version's (without ``new_labels``).
        DataError: an unreadable eval file, or one with no row of a known label.
    """
    from tailor.catalog import resolve_base
    from tailor.registry.refs import validate_name
    from tailor.registry.service import check_same_labels, open_registry
    from tailor.runtime import pick_device
    from tailor.train.config import load_preset

    settings = settings or get_settings()
    reporter = reporter or RecordingReporter()
    t_start = time.monotonic()
    if isinstance(labels, str):
        raise UsageError(f"give the labels as a list, not one string ({labels!r}); parse_labels splits one on "
                         "commas")
    labels = sorted(labels)
    prompts = label_prompts(labels, descriptions)  # bad labels fail before anything loads
    validate_name(name)
    registry = open_registry(settings)
    if not new_labels:
        check_same_labels(registry.store, tenant, name, labels)
    cfg = load_preset("default")
    raw, rows = (_eval_rows(eval_file, labels, text_col, label_col, settings, reporter, redact_pii)
                 if eval_file else (None, None))
    base_name, base_reason = _choose_base(base, rows.texts if rows is not None else None, prompts)
    reporter.message(f"base model: {base_name} ({base_reason})", base=base_name, reason=base_reason)
    resolved = resolve_base(base_name, progress=reporter)
    device = pick_device(cfg.device)
    zero_shot = build_zero_shot_model(resolved, labels, descriptions, device=device)
    timings = {"build_s": round(time.monotonic() - t_start, 2)}
    reporter.message(f"zero-shot head from {len(labels)} label prompts (scale {zero_shot.scale:g})",
                     prompts=zero_shot.prompts)

    metrics = baseline = explanations = None
    if rows is not None:
        metrics, baseline, explanations = _score(zero_shot, rows, cfg.seed, timings, reporter)
    else:
        reporter.message("no eval file: no test metrics (give --eval-file to measure the version)")
    reason = (f"zero-shot: the nearest of {len(labels)} label prompts by cosine similarity of {resolved.name} "
              "embeddings; nothing trained")
    lineage = {"dataset": None, "eval_dataset": raw.source.__dict__ if raw is not None and raw.source else None,
               "rows": {"train": 0, "valid": 0, "test": len(rows) if rows is not None else 0},
               "label_counts": {label: 0 for label in labels}, "base_model": resolved.name,
               "base_reason": base_reason, "method": "head", "method_reason": reason,
               "zero_shot": {"labels": list(labels), "prompts": zero_shot.prompts, "scale": zero_shot.scale,
                             "descriptions": dict(descriptions or {})},
               "tailor_version": tailor.__version__, "timings": timings, "device": device, "precision": "fp32"}
    if actor:
        lineage["actor"] = actor
    version, serving = _publish(registry, zero_shot, rows, cfg, metrics, baseline, explanations, name, tenant,
                                lineage, settings, reporter, t_start)
    reporter.message(f"registered {version.ref}", model=version.ref)
    return ZeroShotResult(version, zero_shot.prompts, zero_shot.scale, metrics, baseline, base_reason, serving,
                          timings)


def _score(zero_shot: ZeroShotModel, rows, seed: int, timings: dict, reporter: Reporter):
    """Test metrics, the majority baseline and the explanations of the zero-shot classifier on ``rows``."""
    from tailor.eval.explanations import explain_evaluation
    from tailor.eval.run import score_probabilities

    t_eval = time.monotonic()
    classifier = zero_shot.classifier
    proba = classifier.predict_proba(rows.texts)
    metrics, baseline = score_probabilities(classifier.labels, proba, rows, rows.labels)
    timings["eval_s"] = round(time.monotonic() - t_eval, 2)
    reporter.message(f"test: macro-F1 {metrics['macro_f1']:.4f}, accuracy {metrics['accuracy']:.4f} "
                     f"(majority baseline macro-F1 {baseline['macro_f1']:.4f})")
    t_explain = time.monotonic()
    explanations = explain_evaluation(classifier.predict_proba, classifier.labels, rows, proba, seed=seed)
    timings["explain_s"] = round(time.monotonic() - t_explain, 2)
    return metrics, baseline, explanations


def _publish(registry, zero_shot: ZeroShotModel, rows, cfg, metrics, baseline, explanations, name: str,
             tenant: str, lineage: dict, settings: Settings, reporter: Reporter, t_start: float):
    """Write the version's artifacts into a staging directory, gate its runtime, and register it."""
    import numpy as np

    from tailor.data.fingerprint import FINGERPRINT_FILE, fingerprint
    from tailor.eval.abstain import ABSTAIN_FILE, suggest_threshold
    from tailor.eval.calibration import calibrate
    from tailor.eval.report import render_eval_html
    from tailor.models.classifier import save_classifier
    from tailor.models.optimize import describe_record, optimize_version
    from tailor.models.runtimes import default_bases

    classifier = zero_shot.classifier
    no_rows = (np.zeros((0, len(classifier.labels))), np.zeros(0, dtype=int))
    abstain = suggest_threshold(*no_rows, cfg.abstain_target_precision)
    calibration = calibrate(*no_rows)
    params = {"method": "head", "base": classifier.spec.base_model, "max_length": classifier.spec.max_length,
              "zero_shot_scale": zero_shot.scale}
    with registry.artifacts.stage() as staged:
        save_classifier(classifier.model, classifier.tokenizer, classifier.spec, staged)
        files = {"metrics.json": {"test": metrics, "baseline": baseline, "zero_shot": lineage["zero_shot"]},
                 ABSTAIN_FILE: abstain}
        if rows is not None:
            files[FINGERPRINT_FILE] = fingerprint(rows.texts, classifier.tokenizer,
                                                  max_length=classifier.spec.max_length)
            evaluation = {"model": f"{name} (new version)", "metrics": metrics, "baseline": baseline,
                          "data": str(rows.source.path) if rows.source else "eval rows",
                          "base_model": classifier.spec.base_model, "explanations": explanations}
            (staged / "eval_report.html").write_text(render_eval_html(evaluation), encoding="utf-8")
        for filename, content in files.items():
            (staged / filename).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
        serving = optimize_version(staged, list(rows.texts) if rows is not None else [],
                                   list(rows.labels) if rows is not None else [], default_bases(settings.home),
                                   gate_points=cfg.runtime_gate_points, min_agreement=cfg.runtime_min_agreement,
                                   runtime=cfg.runtime)
        reporter.message(describe_record(serving), runtime=serving["runtime"])
        lineage["timings"]["total_s"] = round(time.monotonic() - t_start, 2)
        stored = {"serving": serving, "abstain": abstain, "calibration": calibration}
        if metrics is not None:
            stored.update(test=metrics, baseline=baseline, explanations=explanations)
        version = registry.publish_version(tenant, name, staged, task="classify",
                                           base_model=classifier.spec.base_model, method="head", params=params,
                                           metrics=stored, lineage=lineage)
    return version, serving
