"""A classification fine-tuning job end to end: data → method → fit → evaluate → register.

This is what ``tailor train`` and ``tailor.train()`` run. Every stage is a library call; this module only
orders them, times them, and writes the version's artifacts into a staging directory that the registry
publishes atomically, so a crash at any point leaves no version that looks whole.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import tailor
from tailor.cores import holding_cores
from tailor.data.dataset import TextDataset
from tailor.registry.entities import ModelVersion
from tailor.settings import Settings, get_settings
from tailor.train.classify import FitOutcome, label_prior_rows
from tailor.train.config import TrainConfig, load_preset
from tailor.train.progress import RecordingReporter, Reporter


@dataclass
class TrainResult:
    """What a finished job produced.

    Attributes:
        version: the registered model version.
        metrics: test-set metrics (see :func:`tailor.eval.metrics.classification_metrics`).
        baseline: the majority-class baseline on the same test set.
        data_report: the data report (see :func:`tailor.data.report.build_data_report`).
        method / method_reason: the method used and why (when ``auto`` chose it).
        timings: seconds per stage and in total.
        history: the training loop's per-epoch validation rows.
        search_trials: one row per Optuna trial when ``search`` was used.
    """

    version: ModelVersion
    metrics: dict
    baseline: dict
    data_report: dict
    method: str
    method_reason: str
    config: dict
    timings: dict
    history: list[dict]
    best_epoch: int
    search_trials: list[dict] = field(default_factory=list)
    self_training: dict | None = None

    def summary(self) -> dict:
        """The one JSON object that ``tailor train --json`` prints."""
        keep = ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "ece")
        summary = {"model": self.version.ref, "name": self.version.name, "version": self.version.version,
                   "method": self.method, "method_reason": self.method_reason,
                   "base_model": self.version.base_model, "metrics": {k: self.metrics.get(k) for k in keep},
                   "baseline": {k: self.baseline.get(k) for k in ("label", "accuracy", "macro_f1")},
                   "timings": self.timings, "rows": self.data_report["rows"]["kept"], "best_epoch": self.best_epoch}
        if self.self_training:
            summary["self_training"] = _self_training_summary(self.self_training)
        return summary


def _self_training_summary(record: dict) -> dict:
    """The self-training record's headline for ``tailor train --json``."""
    if "skipped" in record:
        return {"pool_used": 0, "skipped": record["skipped"]}
    keep = ("pseudo_labels_used", "valid_macro_f1_without", "valid_macro_f1_with")
    return {"pool_used": record["pool"]["used"], "rounds": len(record["rounds"]), **{k: record[k] for k in keep}}


# File and folder names that say nothing about the task: a model named after one would collect versions of
# unrelated data (every project has a train.csv). A trailing number counts as generic too (data2, test_01).
GENERIC_NAMES = frozenset({
    "all", "categories", "classes", "clean", "cleaned", "corpus", "data", "dataset", "datasets", "dev", "downloads",
    "eval", "evaluation", "example", "examples", "export", "file", "files", "final", "full", "home", "input",
    "inputs", "label", "labeled", "labelled", "labels", "model", "new", "out", "output", "raw", "sample", "samples",
    "small", "temp", "test", "testing", "tmp", "train", "training", "upload", "val", "valid", "validation",
})


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:64].rstrip("-._")


def _is_generic(slug: str) -> bool:
    return not slug or re.sub(r"[-._]*[0-9]+$", "", slug) in GENERIC_NAMES


def default_name(path: str | Path) -> str:
    """A registry name from a file name: ``Loans 2024.csv`` → ``loans-2024``; a generic file name (see
    :data:`GENERIC_NAMES`) names the model after its folder instead: ``sms_spam/train.csv`` → ``sms_spam``.

    Raises:
        UsageError: the file's name and its folder's are both generic (``data/train.csv``), or it has none.
    """
    path = Path(str(path))
    stem = _slug(path.stem)
    if not _is_generic(stem):
        return stem
    parent = path.resolve().parent.name
    folder = _slug(parent)
    if not _is_generic(folder):
        return folder
    from tailor.errors import UsageError

    what = f"{path.name!r} and its folder {parent!r} are" if parent else f"{path.name!r} (in no folder) is"
    raise UsageError(f"{what} too generic to name the model after: pass --name NAME")


def job_name(data, name: str | None) -> str:
    """The name a job registers under: ``name``, else one from the data's file (a path, or a dataset that
    remembers its source; see :func:`default_name`).

    Raises:
        UsageError: the name breaks the naming rule, or none was given and the file's is too generic.
    """
    from tailor.registry.refs import validate_name

    source = getattr(data, "source", None)
    return validate_name(name if name is not None else default_name(source.path if source else str(data)))


@dataclass(frozen=True)
class Parent:
    """A registered classifier version that a job continues from (incremental learning; the rows are
    assembled by :mod:`tailor.train.retrain`).

    Attributes:
        ref: the version, ``name:N`` (recorded as the new version's ``lineage["parent"]``).
        directory: its artifact directory.
        method / base_model / labels / max_length / pooling: from its ``tailor_model.json``; labels in their
            order.
    """

    ref: str
    directory: Path
    method: str
    base_model: str
    labels: tuple[str, ...]
    max_length: int
    pooling: str

    def config_overrides(self, overrides: dict) -> dict:
        """``overrides`` with the parent's base model, method and token length where they are not given.

        Raises:
            UsageError: another base model or method is asked for (the weights are the parent's).
        """
        from tailor.errors import UsageError

        for key, mine in (("base", self.base_model), ("method", self.method)):
            asked = overrides.get(key)
            if asked not in (None, "auto", mine):
                raise UsageError(f"{key} {asked!r} differs from {self.ref}'s {key} {mine!r}: a retrain continues "
                                 f"its weights; leave {key} unset or train a new model from a base")
        return {**overrides, "base": self.base_model, "method": self.method,
                "max_length": overrides.get("max_length") or self.max_length}

    def labels_for(self, data_labels: list[str], new_labels: bool) -> list[str]:
        """The new version's labels: the parent's in their order, then the data's others (sorted).

        Raises:
            UsageError: the data has labels the parent lacks and ``new_labels`` is false; the message names
                them and the parent's labels.
        """
        from tailor.errors import UsageError

        added = sorted(set(data_labels) - set(self.labels))
        if added and not new_labels:
            raise UsageError(f"label{'s' if len(added) > 1 else ''} {', '.join(map(repr, added))} "
                             f"{'are' if len(added) > 1 else 'is'} not a label of {self.ref} (its labels: "
                             f"{', '.join(self.labels)}); pass new_labels (--new-labels) to add "
                             f"{'them as new classes' if len(added) > 1 else 'it as a new class'}")
        return [*self.labels, *added]

    def load(self, labels: list[str]):
        """The parent's model, trainable, with a head row per label of ``labels`` (see
        :func:`tailor.models.classifier.load_trainable`)."""
        from tailor.models.classifier import load_trainable
        from tailor.train.classify import unfold_head_temperature

        _, model = load_trainable(self.directory, labels)
        if self.method in ("head", "contrastive"):  # their heads train again by fit_head, which folds it anew
            unfold_head_temperature(model.classifier)
        return model


def _rows_digest(ds: TextDataset) -> str:
    """A SHA-256 of a dataset's texts and labels: the run id of rows that come from no one file."""
    import hashlib

    return hashlib.sha256(json.dumps([ds.texts, ds.labels], ensure_ascii=False).encode()).hexdigest()


def _load(data, text_col, label_col, settings: Settings) -> TextDataset:
    from tailor.data.ingest import read_dataset

    if isinstance(data, TextDataset):
        return data
    return read_dataset(data, text_col, label_col, max_bytes=settings.max_file_bytes)


def _read_and_clean(data, eval_file, text_col, label_col, settings: Settings, redact_pii: bool = False):
    """``(raw, eval_raw, cleaned)``: the training rows, the eval file's (None without one; its columns default
    to the training file's; with ``redact_pii`` its personal data replaced by placeholders) and the cleaned
    training rows (redacted alike), checked trainable."""
    from tailor.data.clean import clean_dataset
    from tailor.data.pii import redact_texts
    from tailor.data.validate import check_trainable

    raw = _load(data, text_col, label_col, settings)
    eval_raw = None
    if eval_file is not None:
        src = raw.source
        eval_raw = _load(eval_file, text_col or (src.text_col if src else None),
                         label_col or (src.label_col if src else None), settings)
        if redact_pii:  # scored and quoted in the evaluation report: no personal data there either
            eval_raw = replace(eval_raw, texts=redact_texts(eval_raw.texts)[0])
    cleaned = clean_dataset(raw, max_chars=settings.max_text_chars, eval_ds=eval_raw, redact_pii=redact_pii)
    check_trainable(cleaned.dataset)
    return raw, eval_raw, cleaned


def _base_of(cfg: TrainConfig, cleaned: TextDataset) -> tuple[str, str]:
    """The base model's catalog id (or path) and why: the config's, or ``auto``'s choice from the texts."""
    from tailor.catalog import AUTO, choose_base

    if cfg.base == AUTO:
        return choose_base(cleaned.texts)
    return cfg.base, "chosen by the user"


def _eval_rows(eval_ds: TextDataset, labels: list[str], reporter: Reporter) -> TextDataset:
    """Eval rows usable for scoring, saying how many were left out and why."""
    from tailor.eval.run import scorable_rows

    rows, unknown = scorable_rows(eval_ds, labels)
    if len(rows) < len(eval_ds):
        reporter.message(f"eval file: {len(eval_ds) - len(rows)} rows left out (empty, or a label not in the "
                         f"training data{': ' + ', '.join(unknown[:5]) if unknown else ''})")
    return rows


@holding_cores("train")
def run_classification_job(data, *, eval_file=None, text_col: str | None = None, label_col: str | None = None,
                           name: str | None = None, tenant: str = "default", preset: str = "default",
                           search: int = 0, resume: bool = False, run_dir: Path | None = None,
                           reporter: Reporter | None = None, settings: Settings | None = None,
                           new_labels: bool = False, parent: Parent | None = None, retrain: dict | None = None,
                           redact_pii: bool = False, actor: str | None = None, unlabeled=None,
                           unlabeled_text_col: str | None = None, **overrides) -> TrainResult:
    """Fine-tune a text classifier on ``data`` and register it.

    Args:
        data: a file path (CSV/TSV/JSONL) or a :class:`TextDataset`.
        eval_file: a held-out labelled file for the test metrics; without one, a stratified test split is
            cut from ``data``.
        name: the registry name (default: from the file name, or its folder's; see :func:`default_name`).
        new_labels: register the version even if its label set differs from the model's latest version
            (refused otherwise, before any training; see :func:`tailor.registry.service.check_same_labels`);
            with ``parent``, also accept labels the parent lacks, each a new head row.
        parent: continue from this registered version's weights (its base model, method and token length
            unless ``overrides`` repeat them; its labels in its order); recorded as ``lineage["parent"]``.
        retrain: where the rows came from (feedback, replay, file counts; see :mod:`tailor.train.retrain`),
            recorded as ``lineage["retrain"]``.
        redact_pii: replace e-mails, phones, card, ID and IBAN numbers in the training and evaluation texts by
            ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[ID]``, ``[IBAN]`` before anything else sees them; the data
            report's ``redacted`` counts them.
        actor: who registers the version (``cli:<os user>`` from the CLI), recorded as ``lineage["actor"]`` for
            the model card.
        unlabeled: a file of unlabelled texts (CSV/TSV/JSONL with a text column, ``unlabeled_text_col`` or
            guessed; or ``.txt``, one per line) to learn from by self-training (see
            :mod:`tailor.train.self_training`); recorded as ``lineage["self_training"]``. Texts that are
            training or test rows are left out; a pool that cannot help (the training file itself, another
            script, nothing left) is skipped with a message.
        preset: the config preset; ``overrides`` (``method``, ``epochs``, ``lr``, ``batch_size``, ``base``,
            ``time_budget_s``, ``seed``, ...) replace its fields.
        search: run this many Optuna trials and keep the best.
        resume: continue the same job from its last epoch checkpoint after a crash.
        run_dir: where checkpoints go (default: ``<home>/runs/<id from the data and config>``); the job
            service passes one per job so a restarted job finds its own.

    Returns:
        A :class:`TrainResult`.

    Raises:
        DataError: unusable data (the message names the line or column).
        UsageError: a bad option, or labels that differ from the model's latest version's (see ``new_labels``).
    """
    from tailor.catalog import resolve_base, tenant_base
    from tailor.data.report import build_data_report
    from tailor.data.split import stratified_split
    from tailor.eval.explanations import describe_faithfulness, explain_evaluation
    from tailor.eval.run import score_probabilities, zero_shot_on_rows
    from tailor.models.classifier import ClassifierSpec, TextClassifier, pooling_for
    from tailor.registry.service import open_registry
    from tailor.runtime import pick_device, setup_torch, supports_bf16
    from tailor.train.auto import plan_method
    from tailor.train.estimate import took_message
    from tailor.train.checkpoint import Checkpointer, run_id_for
    from tailor.security.crypto import open_keyring

    settings = settings or get_settings()
    reporter = reporter or RecordingReporter()
    cfg = load_preset(preset, **(parent.config_overrides(overrides) if parent else overrides))
    name = job_name(data, name)
    t_start = time.monotonic()
    deadline = t_start + cfg.time_budget_s if cfg.time_budget_s else None
    timings: dict[str, float] = {}

    raw, eval_raw, cleaned = _read_and_clean(data, eval_file, text_col, label_col, settings, redact_pii)
    unlabelled = _read_unlabelled(unlabeled, unlabeled_text_col, settings)
    model_labels = parent.labels_for(cleaned.dataset.label_set, new_labels) if parent else None
    if not new_labels:
        from tailor.registry.service import check_same_labels

        check_same_labels(open_registry(settings).store, tenant, name, model_labels or cleaned.dataset.label_set)

    setup_torch()
    from transformers import AutoTokenizer

    base_name, base_reason = _base_of(cfg, cleaned.dataset)
    base_name = tenant_base(base_name, tenant, settings)
    reporter.message(f"base model: {base_name} ({base_reason})", base=base_name, reason=base_reason)
    base = resolve_base(base_name, progress=reporter)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    report = build_data_report(raw, cleaned, eval_ds=eval_raw, tokenizer=tokenizer, max_length=cfg.max_length,
                               seed=cfg.seed)
    reporter.message(f"data: {report['rows']['read']} rows read, {report['rows']['kept']} kept, "
                     f"{report['labels']['n_classes']} classes", rows=report["rows"])
    if report["redacted"] is not None:
        counts = ", ".join(f"{kind} {n}" for kind, n in report["redacted"].items() if n and kind != "rows_redacted")
        reporter.message(f"personal data redacted in {report['redacted']['rows_redacted']} rows"
                         + (f" ({counts})" if counts else ""), redacted=report["redacted"])
    for warning in report["warnings"]:
        reporter.message(f"warning: {warning}")
    timings["data_s"] = round(time.monotonic() - t_start, 2)

    split = stratified_split(cleaned.dataset, val_size=cfg.val_size, test_size=0 if eval_raw else cfg.test_size,
                             seed=cfg.seed)
    labels = model_labels or split.train.label_set
    test = _eval_rows(eval_raw, labels, reporter) if eval_raw is not None else split.test
    pool = _prepare_pool(unlabelled, raw, cleaned.dataset, test, cfg)
    if pool is not None:
        reporter.message(pool.describe(), unlabeled=pool.source)
    device = pick_device(cfg.device)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and supports_bf16(device))

    plan = plan_method(cfg, base, tokenizer, split, labels, n_test=len(test), device=device, bf16=bf16,
                       home=settings.home, started=t_start, trials=max(1, search), deadline=deadline,
                       pool_texts=_usable_texts(pool))
    method, reason, estimate = plan.method, plan.reason, plan.estimate
    train_enc, val_enc = plan.train_enc, plan.val_enc
    augmentation = plan.augmentation
    if augmentation:
        reporter.message(f"augmentation: {augmentation['rows_added']} edited copies of {len(split.train)} training "
                         f"rows (up to {cfg.augment} each)", augmentation=augmentation)
    reporter.message(f"method: {method} ({reason}; estimated {estimate.total_s:.0f}s in all)", method=method,
                     reason=reason)
    reporter.message(f"estimate: {estimate.describe()}", estimate=estimate.as_dict())
    timings["estimated_s"] = estimate.total_s
    sources = [raw.source.sha256 if raw.source else None, eval_raw.source.sha256 if eval_raw and eval_raw.source else None]
    if parent:
        sources += [parent.ref, _rows_digest(raw)]
    run_dir = run_dir or settings.home / "runs" / run_id_for(sources, cfg.model_dump(), method, tenant, name)
    checkpointer = Checkpointer(run_dir, keyring=open_keyring(settings.registry_url, settings), tenant=tenant)

    spec_pooling = parent.pooling if parent else pooling_for(method, base, cfg.full_pooling)
    # a new head fitted by fit_head starts from the label names (a retrain's continues from its parent's)
    fits_new_head = not parent and (method in ("head", "contrastive") or (method == "full" and spec_pooling == "mean"))
    prior, no_prior = label_prior_rows(tokenizer, labels, cfg) if fits_new_head else (None, None)
    if no_prior:
        reporter.message(no_prior)

    def fit(trial_cfg: TrainConfig, with_checkpoints: bool = False, train_rows=None) -> tuple[object, FitOutcome]:
        from tailor.models.classifier import build_model
        from tailor.train.classify import fit_encoder, fit_head

        if parent:
            model = parent.load(labels)
        else:
            model = build_model(method, base, labels, lora_r=trial_cfg.lora_r, lora_alpha=trial_cfg.lora_alpha,
                                lora_dropout=trial_cfg.lora_dropout, seed=trial_cfg.seed, full_pooling=spec_pooling)
        common = dict(pad_id=tokenizer.pad_token_id, num_labels=len(labels), device=device, reporter=reporter)
        rows = train_enc if train_rows is None else train_rows
        if method == "head":
            return model, fit_head(model, rows, val_enc, trial_cfg, prior=prior, **common)
        if method == "contrastive":
            from tailor.train.contrastive import fit_contrastive

            return model, fit_contrastive(model, rows, val_enc, trial_cfg, bf16=bf16, deadline=deadline,
                                          prior=prior, **common)
        # linear probing, then fine-tuning: the new head starts from the frozen encoder's best linear answer
        # (and the logit scale fit_head folds in), not from random weights that would first pull the encoder's
        # features toward them
        probed = fit_head(model, rows, val_enc, trial_cfg, prior=prior, **common) if fits_new_head else None
        lr = trial_cfg.lora_lr if method == "lora" else trial_cfg.lr
        outcome = fit_encoder(model, rows, val_enc, trial_cfg, lr=lr, bf16=bf16, deadline=deadline,
                              checkpointer=checkpointer if with_checkpoints else None, resume=resume, **common)
        outcome.label_prior = probed.label_prior if probed else None
        return model, outcome

    t_fit = time.monotonic()
    trials: list[dict] = []
    if search:
        from tailor.train.search import run_search

        found = run_search(search, cfg, method, fit, reporter, deadline)
        cfg, model, outcome, trials = found.config, found.model, found.outcome, found.trials
    else:
        model, outcome = fit(cfg, with_checkpoints=True)
    timings["train_s"] = round(time.monotonic() - t_fit, 2)
    reporter.message(f"training done: best epoch {outcome.best_epoch}, valid macro-F1 {outcome.best_valid_f1:.4f} "
                     f"({outcome.stop_reason})", stop_reason=outcome.stop_reason)
    spec = ClassifierSpec(method, base.name, list(labels), cfg.max_length, spec_pooling)
    self_training = None
    if pool is not None and pool.skipped is None:
        t_self = time.monotonic()
        model, outcome, self_training = _self_train(model, outcome, pool, replace(split, train=plan.train_rows),
                                                    labels, cfg, tokenizer, spec, device, reporter,
                                                    refit=lambda rows: fit(cfg, train_rows=rows))
        timings["self_training_s"] = round(time.monotonic() - t_self, 2)
    elif pool is not None:
        self_training = {"pool": {**pool.source, "used": 0, "left_out": pool.left_out}, "skipped": pool.skipped}

    t_eval = time.monotonic()
    classifier = TextClassifier(model, tokenizer, spec, device)
    test_proba = classifier.predict_proba(test.texts)
    metrics, baseline = score_probabilities(classifier.labels, test_proba, test, split.train.labels)
    baseline["zero_shot"] = zero_shot_on_rows(base.name, labels, test, device=device)
    timings["eval_s"] = round(time.monotonic() - t_eval, 2)
    reporter.message(f"test: macro-F1 {metrics['macro_f1']:.4f}, accuracy {metrics['accuracy']:.4f} "
                     f"(majority baseline macro-F1 {baseline['macro_f1']:.4f})")
    t_explain = time.monotonic()
    explanations = explain_evaluation(classifier.predict_proba, classifier.labels, test, test_proba, seed=cfg.seed)
    timings["explain_s"] = round(time.monotonic() - t_explain, 2)
    reporter.message(f"explanations: {describe_faithfulness(explanations['faithfulness'])} "
                     f"({timings['explain_s']:.1f}s)", faithfulness=explanations["faithfulness"])

    registry = open_registry(settings)
    lineage = {"dataset": raw.source.__dict__ if raw.source else None,
               "eval_dataset": eval_raw.source.__dict__ if eval_raw is not None and eval_raw.source else None,
               "rows": {"train": len(split.train), "valid": len(split.val), "test": len(test)},
               "label_counts": {label: split.train.label_counts().get(label, 0) for label in sorted(labels)},
               "data_report": report,
               "base_model": base.name, "base_reason": base_reason, "method": method, "method_reason": reason,
               "pooling": spec.pooling,
               "tailor_version": tailor.__version__, "timings": timings, "stop_reason": outcome.stop_reason,
               "resumed_from_epoch": outcome.resumed_from, "device": device, "precision": "bf16" if bf16 else "fp32"}
    if parent:
        lineage.update(parent=parent.ref, retrain=retrain or {})
    if actor:
        lineage["actor"] = actor
    if fits_new_head:
        lineage["label_prior"] = outcome.label_prior or {"strength": cfg.label_prior, "used": False,
                                                          "reason": no_prior}
    if self_training:
        lineage["self_training"] = self_training
    if augmentation:
        lineage["augmentation"] = augmentation
    from tailor.eval.abstain import ABSTAIN_FILE, describe_abstain, labelled_probabilities, suggest_threshold
    from tailor.eval.calibration import calibrate, describe_calibration
    from tailor.data.fingerprint import FINGERPRINT_FILE, fingerprint

    val_probs, val_targets = labelled_probabilities(TextClassifier(model, tokenizer, spec, device), split.val.texts,
                                                    split.val.labels)
    abstain = suggest_threshold(val_probs, val_targets, cfg.abstain_target_precision)
    reporter.message(describe_abstain(abstain), abstain_threshold=abstain["threshold"])
    calibration = calibrate(val_probs, val_targets)
    reporter.message(describe_calibration(calibration), temperature=calibration["temperature"])
    with registry.artifacts.stage() as staged:
        _write_artifacts(staged, model, tokenizer, spec, cfg, metrics, baseline, report, outcome, trials, name,
                         explanations)
        (staged / ABSTAIN_FILE).write_text(json.dumps(abstain, indent=2), encoding="utf-8")
        drift_reference = fingerprint(split.train.texts, tokenizer, max_length=cfg.max_length)
        (staged / FINGERPRINT_FILE).write_text(json.dumps(drift_reference, ensure_ascii=False), encoding="utf-8")
        serving = _choose_runtime(staged, split.val, list(split.train.texts), cfg, reporter, settings)
        timings["total_s"] = round(time.monotonic() - t_start, 2)  # the lineage's timings, with estimated_s
        version = registry.publish_version(
            tenant, name, staged, task="classify", base_model=base.name, method=method, params=cfg.model_dump(),
            metrics={"test": metrics, "baseline": baseline, "valid_macro_f1": outcome.best_valid_f1,
                     "serving": serving, "abstain": abstain, "calibration": calibration,
                     "explanations": explanations},
            lineage=lineage)
    checkpointer.clear()
    reporter.message(f"registered {version.ref}", model=version.ref)
    reporter.message(took_message(timings["total_s"], timings["estimated_s"]), timings=dict(timings))
    return TrainResult(version, metrics, baseline, report, method, reason, cfg.model_dump(), timings,
                       outcome.history, outcome.best_epoch, trials, self_training)


def _prepare_pool(unlabelled, raw: TextDataset, cleaned: TextDataset, test: TextDataset, cfg: TrainConfig):
    """The self-training pool from the unlabelled texts (:func:`tailor.train.self_training.prepare_pool`: the
    training file itself, training and test rows left out), or None without unlabelled texts."""
    if unlabelled is None:
        return None
    from tailor.train.self_training import prepare_pool

    return prepare_pool(unlabelled, train_sha256=raw.source.sha256 if raw.source else None,
                        train_texts=cleaned.texts, test_texts=test.texts, max_rows=cfg.unlabeled_max_rows,
                        seed=cfg.seed)


def _usable_texts(pool) -> list[str] | None:
    """The pool's texts when self-training will use them, else None."""
    return pool.texts if pool is not None and pool.skipped is None else None


def _read_unlabelled(path, text_col: str | None, settings: Settings):
    """The unlabelled file's texts (:func:`tailor.data.ingest.read_texts`), or None without one.

    Raises:
        DataError: the file cannot be read (missing, binary, malformed, no text): the user asked for it.
    """
    if path is None:
        if text_col is not None:
            from tailor.errors import UsageError

            raise UsageError("unlabeled_text_col names a column of the unlabelled file: give the file too "
                             "(--unlabeled)")
        return None
    from tailor.data.ingest import read_texts
    from tailor.errors import DataError

    try:
        return read_texts(path, text_col, max_bytes=settings.max_file_bytes)
    except DataError as exc:  # say which of the job's files it is
        raise DataError(f"unlabelled file {Path(str(path)).name}: {exc.args[0].removeprefix(f'line {exc.line}: ')}",
                        line=exc.line, field=exc.field) from None


def _self_train(model, outcome: FitOutcome, pool, split, labels: list[str], cfg: TrainConfig, tokenizer, spec,
                device: str, reporter: Reporter, refit) -> tuple[object, FitOutcome, dict]:
    """Self-training rounds on ``pool`` from the trained ``model`` (see :mod:`tailor.train.self_training`);
    ``refit(encoded_rows)`` trains a fresh model the way the job trained this one."""
    import numpy as np

    from tailor.models.classifier import TextClassifier
    from tailor.train.batching import encode
    from tailor.train.self_training import describe_self_training, self_train

    label_id = {label: i for i, label in enumerate(labels)}

    def predict_proba(candidate, texts: list[str]):
        return TextClassifier(candidate, tokenizer, spec, device).predict_proba(texts)

    model, outcome, record = self_train(
        model, outcome, pool=pool, train_texts=list(split.train.texts),
        train_targets=[label_id[y] for y in split.train.labels], labels=labels,
        refit=lambda texts, targets: refit(encode(tokenizer, texts, cfg.max_length, targets)),
        predict_proba=predict_proba, val_probs=lambda candidate: predict_proba(candidate, list(split.val.texts)),
        val_targets=np.asarray([label_id[y] for y in split.val.labels]), rounds=cfg.self_training_rounds,
        precision=cfg.pseudo_label_precision, per_label_factor=cfg.pseudo_label_growth, reporter=reporter)
    reporter.message(describe_self_training(record), self_training=record["pseudo_labels_used"])
    return model, outcome, record


def estimate_classification_job(data, *, eval_file=None, text_col: str | None = None, label_col: str | None = None,
                                preset: str = "default", settings: Settings | None = None,
                                redact_pii: bool = False, unlabeled=None, unlabeled_text_col: str | None = None,
                                **overrides) -> dict:
    """How long :func:`run_classification_job` would take on this machine with each method, and the method
    ``auto`` would choose, without training: the job's own reading, cleaning, split and estimate
    (:func:`tailor.train.auto.plan_method`). The base's speed is probed once (it loads the base: seconds) and
    cached in the storage root; later estimates at the same batch shape read the cache.

    Args:
        data / eval_file / text_col / label_col / preset / unlabeled / unlabeled_text_col / overrides: as for
            :func:`run_classification_job` (with unlabelled texts, the estimates include self-training's rounds).

    Returns:
        ``{"task": "classification", "base_model", "base_reason", "method", "method_reason", "auto_method",
        "auto_reason", "estimates": {"full"|"lora"|"head"|"contrastive": Estimate.as_dict()}, "rows": {"train",
        "validation", "test"}, "labels"}``; ``method`` is the one asked for, or ``auto``'s choice.

    Raises:
        DataError: unusable data. UsageError: a bad option.
    """
    from tailor.catalog import resolve_base
    from tailor.data.split import stratified_split
    from tailor.runtime import pick_device, setup_torch, supports_bf16
    from tailor.train.auto import plan_method

    settings = settings or get_settings()
    started = time.monotonic()
    cfg = load_preset(preset, **overrides)
    raw, eval_raw, cleaned = _read_and_clean(data, eval_file, text_col, label_col, settings, redact_pii)
    unlabelled = _read_unlabelled(unlabeled, unlabeled_text_col, settings)
    setup_torch()
    from transformers import AutoTokenizer

    base_name, base_reason = _base_of(cfg, cleaned.dataset)
    base = resolve_base(base_name)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    split = stratified_split(cleaned.dataset, val_size=cfg.val_size, test_size=0 if eval_raw else cfg.test_size,
                             seed=cfg.seed)
    test = _eval_rows(eval_raw, split.train.label_set, RecordingReporter()) if eval_raw is not None else split.test
    device = pick_device(cfg.device)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and supports_bf16(device))
    plan = plan_method(cfg.with_overrides(method="auto"), base, tokenizer, split, split.train.label_set,
                       n_test=len(test), device=device, bf16=bf16, home=settings.home, started=started,
                       deadline=started + cfg.time_budget_s if cfg.time_budget_s else None,
                       methods=("full", "lora", "head", "contrastive"),
                       pool_texts=_usable_texts(_prepare_pool(unlabelled, raw, cleaned.dataset, test, cfg)))
    method, reason = (plan.method, plan.reason) if cfg.method == "auto" else (cfg.method, "chosen by the user")
    return {"task": "classification", "base_model": base.name, "base_reason": base_reason, "method": method,
            "method_reason": reason, "auto_method": plan.method, "auto_reason": plan.reason,
            "estimates": {m: e.as_dict() for m, e in plan.estimates.items()},
            "rows": {"train": len(split.train), "validation": len(split.val), "test": len(test)},
            "labels": len(split.train.label_set)}


def _choose_runtime(staged: Path, val: TextDataset, train_texts: list[str], cfg: TrainConfig, reporter: Reporter,
                    settings: Settings) -> dict:
    """Build the staged version's ONNX graphs (int8 calibrated on the training texts) and let the accuracy
    gate choose its serving runtime on the validation rows (see :mod:`tailor.models.optimize`); the record
    lands in ``serving.json``."""
    from tailor.models.optimize import describe_record, optimize_version
    from tailor.models.runtimes import default_bases

    record = optimize_version(staged, list(val.texts), list(val.labels), default_bases(settings.home),
                              gate_points=cfg.runtime_gate_points, min_agreement=cfg.runtime_min_agreement,
                              runtime=cfg.runtime, calibration_texts=train_texts)
    reporter.message(describe_record(record), runtime=record["runtime"])
    return record


def _write_artifacts(directory: Path, model, tokenizer, spec, cfg: TrainConfig, metrics: dict, baseline: dict,
                     report: dict, outcome: FitOutcome, trials, name: str, explanations: dict) -> None:
    from tailor.data.report import render_data_report_html
    from tailor.eval.report import render_eval_html
    from tailor.models.classifier import save_classifier

    save_classifier(model, tokenizer, spec, directory)
    eval_source = report["source"].get("eval_source")
    evaluation = {"model": f"{name} (new version)", "metrics": metrics, "baseline": baseline,
                  "data": eval_source["path"] if eval_source else "held-out test split",
                  "base_model": spec.base_model, "explanations": explanations}
    files = {"train_config.json": cfg.model_dump(), "metrics.json": {"test": metrics, "baseline": baseline},
             "history.json": {"epochs": outcome.history, "search_trials": trials,
                              "stop_reason": outcome.stop_reason},
             "data_report.json": report}
    for filename, content in files.items():
        (directory / filename).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    (directory / "data_report.html").write_text(render_data_report_html(report), encoding="utf-8")
    (directory / "eval_report.html").write_text(render_eval_html(evaluation), encoding="utf-8")
