"""Self-training: a classifier learns from unlabelled texts by labelling the ones it is sure of.

``tailor train labelled.csv --unlabeled pool.csv`` (``unlabeled_file`` on a fine-tuning job) runs it:

1. :func:`prepare_pool` checks the pool against the labelled data and leaves out what cannot help, saying
   why: a pool that is the training file itself, texts that are training rows or test rows (the test set
   must stay unseen), repeats, and a pool in another script than the labelled texts. When nothing usable is
   left the job goes on without self-training and says so.
2. The job trains as usual (round 0). Each round then predicts the pool with the current model and keeps
   **pseudo-labels** (:func:`select_pseudo_labels`):

   - only rows whose confidence reaches the threshold at which the model's answers on the validation rows
     are ``pseudo_label_precision`` accurate (the smallest such threshold,
     :func:`tailor.eval.abstain.suggest_threshold`, on temperature-calibrated probabilities); with too few
     validation rows to set one, the ranking alone decides;
   - **class balance kept**: each label gets at most ``round x pseudo_label_growth x`` its labelled rows, the
     most confident first, so pseudo-labels follow the labelled data's class mix instead of flooding it
     with the easiest class.

   A fresh model is trained on the labelled rows plus the pseudo-labelled ones (re-labelling the whole pool
   each round, never trusting an earlier round's labels blindly).
3. A round is kept when its validation macro-F1 is at least the best so far; the first round that loses
   ends self-training and the best model stays.

The record (``lineage["self_training"]``, the job's log) says how many pseudo-labels each round used, per
label, and what they changed on validation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from tailor.data.clean import normalize_text
from tailor.data.ingest import UnlabelledTexts


@dataclass(frozen=True)
class Pool:
    """The unlabelled texts a job may use, or why it uses none.

    Attributes:
        texts: the usable texts (empty when ``skipped``).
        source: ``{"path", "sha256", "text_col", "rows"}`` of the file read.
        left_out: reason → rows left out (training rows, test rows, repeats, empty, over the cap).
        skipped: why the pool is not used at all, or None.
    """

    texts: list[str]
    source: dict
    left_out: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None

    def describe(self) -> str:
        """One line for the job's log."""
        name = self.source["path"]
        if self.skipped:
            return f"unlabelled file {name}: not used: {self.skipped}"
        dropped = ", ".join(f"{n} {why}" for why, n in self.left_out.items() if n)
        return (f"unlabelled file {name}: {len(self.texts)} texts to pseudo-label"
                + (f" (left out: {dropped})" if dropped else ""))


def prepare_pool(unlabelled: UnlabelledTexts, *, train_sha256: str | None, train_texts: Sequence[str],
                 test_texts: Sequence[str], max_rows: int, seed: int) -> Pool:
    """Check an unlabelled file against the job's labelled rows and keep the texts it can learn from.

    Args:
        unlabelled: the file's texts (:func:`tailor.data.ingest.read_texts`).
        train_sha256: the training file's SHA-256 (None for rows that come from no file).
        train_texts: every labelled text the job read (training and validation rows).
        test_texts: the texts the job will be scored on; a pool text among them is left out so the test
            stays unseen.
        max_rows: at most this many texts are kept, a seeded random sample of them.

    Returns:
        A :class:`Pool`; ``skipped`` says why when no text is usable.
    """
    from tailor.data.language import SCRIPT_NAMES, detect_script

    source = {"path": unlabelled.path, "sha256": unlabelled.sha256, "text_col": unlabelled.text_col,
              "rows": len(unlabelled.texts) + unlabelled.empty}
    if train_sha256 is not None and unlabelled.sha256 == train_sha256:
        return Pool([], source, skipped="it is the training file itself (same bytes); give texts without labels "
                                        "that are not in the training file")
    train_keys = {normalize_text(t) for t in train_texts}
    test_keys = {normalize_text(t) for t in test_texts}
    left_out = {"empty": unlabelled.empty, "training rows": 0, "test rows": 0, "repeats": 0, "over the cap": 0}
    texts, seen = [], set()
    for text in unlabelled.texts:
        key = normalize_text(text)
        reason = ("training rows" if key in train_keys else "test rows" if key in test_keys
                  else "repeats" if key in seen or not key else None)
        if reason:
            left_out[reason] += 1
            continue
        seen.add(key)
        texts.append(text)
    if not texts:
        why = max(("training rows", "test rows", "repeats"), key=left_out.get)
        return Pool([], source, left_out, skipped=f"no text is left once {why} are taken out "
                                                  f"({left_out[why]} of {source['rows']} rows)")
    pool_script, train_script = _main_script(detect_script(texts)), _main_script(detect_script(train_texts))
    if pool_script and train_script and pool_script != train_script:
        return Pool([], source, left_out, skipped=f"its texts are mostly {SCRIPT_NAMES[pool_script]} and the "
                                                  f"labelled texts {SCRIPT_NAMES[train_script]}: another language "
                                                  "cannot teach this model")
    if len(texts) > max_rows:
        left_out["over the cap"] = len(texts) - max_rows
        texts = random.Random(seed).sample(texts, max_rows)
    return Pool(texts, source, left_out)


def _main_script(shares: dict) -> str | None:
    """The script with most letters in a :func:`~tailor.data.language.detect_script` result, if any."""
    from tailor.data.language import SCRIPTS

    return max(SCRIPTS, key=shares.get) if shares["letters"] else None


@dataclass(frozen=True)
class PseudoLabels:
    """The pool rows one round labels: ``rows`` (pool indices) with ``targets`` (class indices)."""

    rows: list[int]
    targets: list[int]
    threshold: float | None

    def per_label(self, labels: Sequence[str]) -> dict[str, int]:
        counts = np.bincount(np.asarray(self.targets, dtype=int), minlength=len(labels))
        return {label: int(n) for label, n in zip(labels, counts)}


def confidence_threshold(val_probs: np.ndarray, val_targets: np.ndarray, precision: float) -> dict:
    """The confidence above which the model's validation answers are ``precision`` accurate.

    The probabilities are first temperature-scaled (:func:`tailor.eval.calibration.calibrate`), so the
    threshold means the same on the pool. Returns ``{"threshold", "temperature", "validation_rows", "note"}``;
    ``threshold`` is None (with the note saying why) when the validation rows cannot set one.
    """
    from tailor.eval.abstain import suggest_threshold
    from tailor.eval.calibration import apply_temperature, calibrate

    temperature = calibrate(val_probs, val_targets)["temperature"]
    suggested = suggest_threshold(apply_temperature(val_probs, temperature), val_targets, precision)
    return {"threshold": suggested["threshold"], "temperature": temperature,
            "validation_rows": int(len(val_targets)), "note": suggested["note"]}


def select_pseudo_labels(probs: np.ndarray, labelled_counts: Sequence[int], *, threshold: float | None,
                         per_label_factor: float) -> PseudoLabels:
    """The pool rows to pseudo-label: confident enough, and at most ``per_label_factor`` times each label's
    labelled rows, the most confident first.

    Args:
        probs: ``(n, K)`` calibrated class probabilities of the pool rows.
        labelled_counts: labelled training rows per class index.
        threshold: the least confidence a row needs, or None (ranking only).
        per_label_factor: the cap per label, as a multiple of its labelled rows (rounded down).

    Returns:
        :class:`PseudoLabels` ordered by class, then by falling confidence (ties by pool order).
    """
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    rows, targets = [], []
    for k, count in enumerate(labelled_counts):
        candidates = np.flatnonzero((predicted == k) & (confidence >= (threshold or 0.0)))
        ranked = candidates[np.argsort(-confidence[candidates], kind="stable")]
        chosen = ranked[:int(per_label_factor * count)]
        rows += chosen.tolist()
        targets += [k] * len(chosen)
    return PseudoLabels(rows, targets, threshold)


Fit = Callable[[list[str], list[int]], tuple[object, object]]


def self_train(model, outcome, *, pool: Pool, train_texts: list[str], train_targets: list[int], labels: list[str],
               refit: Fit, predict_proba: Callable[[object, list[str]], np.ndarray],
               val_probs: Callable[[object], np.ndarray], val_targets: np.ndarray, rounds: int, precision: float,
               per_label_factor: float, reporter) -> tuple[object, object, dict]:
    """Run self-training rounds from a trained ``model`` (see the module docstring).

    Args:
        model / outcome: the model trained on the labelled rows and its
            :class:`~tailor.train.classify.FitOutcome` (``best_valid_f1`` is what rounds must match).
        pool: the usable unlabelled texts (:func:`prepare_pool`).
        train_texts / train_targets: the labelled training rows (class indices into ``labels``).
        refit: trains a fresh model on ``(texts, targets)``; returns ``(model, outcome)``.
        predict_proba: a model's class probabilities for texts.
        val_probs: a model's class probabilities for the validation rows; ``val_targets`` their classes.
        rounds / precision / per_label_factor: see :class:`~tailor.train.config.TrainConfig`
            (``self_training_rounds``, ``pseudo_label_precision``, ``pseudo_label_growth``).

    Returns:
        ``(model, outcome, record)``: the best model, its outcome, and the record for the lineage.
    """
    from tailor.eval.calibration import apply_temperature

    counts = np.bincount(np.asarray(train_targets), minlength=len(labels)).tolist()
    record = {"pool": {**pool.source, "used": len(pool.texts), "left_out": pool.left_out},
              "valid_macro_f1_without": outcome.best_valid_f1, "rounds": [], "pseudo_labels_used": 0,
              "valid_macro_f1_with": outcome.best_valid_f1}
    best = (model, outcome, 0)
    for round_no in range(1, rounds + 1):
        current = best[0]
        setting = confidence_threshold(val_probs(current), val_targets, precision)
        probs = apply_temperature(predict_proba(current, pool.texts), setting["temperature"])
        chosen = select_pseudo_labels(probs, counts, threshold=setting["threshold"],
                                      per_label_factor=per_label_factor * round_no)
        row = {"round": round_no, "threshold": setting["threshold"], "temperature": setting["temperature"],
               "pseudo_labels": len(chosen.rows), "per_label": chosen.per_label(labels)}
        if setting["note"]:
            row["note"] = f"ranking only: {setting['note']}"
        if not chosen.rows:
            row |= {"kept": False, "valid_macro_f1": None}
            record["rounds"].append(row)
            reporter.message(f"self-training round {round_no}: no pool text is confident enough; stopping")
            break
        reporter.message(f"self-training round {round_no}: training on {len(train_texts)} labelled + "
                         f"{len(chosen.rows)} pseudo-labelled rows"
                         + (f" (confidence >= {setting['threshold']:.3f})" if setting["threshold"] else ""))
        new_model, new_outcome = refit(train_texts + [pool.texts[i] for i in chosen.rows],
                                       list(train_targets) + chosen.targets)
        kept = new_outcome.best_valid_f1 >= best[1].best_valid_f1
        row |= {"valid_macro_f1": new_outcome.best_valid_f1, "kept": kept}
        record["rounds"].append(row)
        reporter.message(f"self-training round {round_no}: valid macro-F1 {new_outcome.best_valid_f1:.4f} "
                         f"({'kept' if kept else 'worse than ' + format(best[1].best_valid_f1, '.4f') + '; stopping'})")
        if not kept:
            break
        best = (new_model, new_outcome, len(chosen.rows))
    record["pseudo_labels_used"] = best[2]
    record["valid_macro_f1_with"] = best[1].best_valid_f1
    return best[0], best[1], record


def describe_self_training(record: dict) -> str:
    """One line for the job's log and the evaluation report."""
    used = record["pseudo_labels_used"]
    before, after = record["valid_macro_f1_without"], record["valid_macro_f1_with"]
    if not used:
        return (f"self-training: no pseudo-labels kept ({len(record['rounds'])} round(s) tried on "
                f"{record['pool']['used']} unlabelled texts; valid macro-F1 stays {before:.4f})")
    return (f"self-training: {used} pseudo-labels from {record['pool']['used']} unlabelled texts; valid macro-F1 "
            f"{before:.4f} -> {after:.4f}")
