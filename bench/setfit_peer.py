"""The few-label benchmark's peer: the ``setfit`` package with its default settings.

``SetFitModel.from_pretrained`` loads the same base directory Tailor trains from (the catalog's MiniLM
package directory, which carries its sentence-transformers pooling config, mean; me5-small's converted
directory, which has none, so sentence-transformers adds mean pooling, the pooling E5 was trained with). The
``Trainer`` runs with ``setfit.TrainingArguments()`` unchanged but for the seed and the folder its
checkpoints go to (a temporary one): contrastive pairs with ``sampling_strategy="oversampling"``, one epoch of
pairs at batch 16, body learning rate 2e-5, then a scikit-learn logistic regression head. ``max_steps`` and
``num_iterations`` are the departures the benchmark offers (``--setfit-max-steps``,
``--setfit-num-iterations``), both off by default.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peer_trainer import read_texts_labels
from tailor.eval.metrics import classification_metrics


@dataclass(frozen=True)
class SetFitResult:
    """What one SetFit run measured.

    Attributes:
        wall_s: seconds from loading the model to the last test prediction (load + train + predict).
        metrics: :func:`tailor.eval.metrics.classification_metrics` on the test file.
        settings: the ``TrainingArguments`` fields that decide the run, as used.
        pooling: the pooling module sentence-transformers built for the base (``mean``, ``cls``, ...).
    """

    wall_s: float
    metrics: dict
    settings: dict
    pooling: str


def training_arguments(output_dir: str, seed: int, max_steps: int | None = None,
                       num_iterations: int | None = None):
    """SetFit's default ``TrainingArguments``, with only the seed, the checkpoint folder and (when given,
    departures from the defaults) ``max_steps`` or ``num_iterations`` set."""
    from setfit import TrainingArguments

    departures = {key: value for key, value in (("max_steps", max_steps), ("num_iterations", num_iterations))
                  if value is not None}
    return TrainingArguments(output_dir=output_dir, seed=seed, show_progress_bar=False, **departures)


def describe_arguments(args) -> dict:
    """The fields of SetFit's ``TrainingArguments`` that decide what is trained, JSON-friendly."""
    return {
        "sampling_strategy": args.sampling_strategy,
        "num_iterations": args.num_iterations,
        "max_steps": args.max_steps,
        "batch_size": list(args.batch_size),
        "num_epochs": list(args.num_epochs),
        "body_learning_rate": list(args.body_learning_rate),
        "head_learning_rate": args.head_learning_rate,
        "loss": args.loss.__name__,
        "end_to_end": args.end_to_end,
        "seed": args.seed,
    }


def pooling_mode(model) -> str:
    """The pooling sentence-transformers uses for the SetFit model's body, e.g. ``mean``."""
    for module in model.model_body:
        if type(module).__name__ == "Pooling":
            mode = module.pooling_mode
            return mode if isinstance(mode, str) else "+".join(mode)
    return "none"


def train_and_evaluate(train_path: str | Path, test_path: str | Path, model_dir: str | Path, seed: int,
                       max_steps: int | None = None, num_iterations: int | None = None) -> SetFitResult:
    """Train SetFit on the labelled rows and score it on the test file.

    Args:
        train_path: CSV with ``text,label``, the few labelled rows.
        test_path: CSV with ``text,label`` to score.
        model_dir: the local base directory (the one :func:`tailor.catalog.resolve_base` gives).
        seed: ``TrainingArguments.seed``.
        max_steps: cap on the contrastive steps; None keeps SetFit's default (one epoch of all pairs).
        num_iterations: pairs per row and kind (SetFit 0.x's default was 20); None keeps the default
            (``sampling_strategy="oversampling"``: every pair, the positives repeated to match the negatives).

    Returns:
        The run's :class:`SetFitResult`.
    """
    from datasets import Dataset
    from setfit import SetFitModel, Trainer

    train_texts, train_labels = read_texts_labels(train_path)
    test_texts, test_labels = read_texts_labels(test_path)
    start = time.perf_counter()
    model = SetFitModel.from_pretrained(str(model_dir))
    with tempfile.TemporaryDirectory(prefix="setfit-peer-") as output_dir:
        args = training_arguments(output_dir, seed, max_steps, num_iterations)
        trainer = Trainer(model=model, args=args,
                          train_dataset=Dataset.from_dict({"text": train_texts, "label": train_labels}))
        trainer.train()
        proba = np.asarray(model.predict_proba(test_texts, as_numpy=True), dtype=np.float64)
    wall_s = time.perf_counter() - start
    labels = [str(label) for label in model.model_head.classes_]  # predict_proba's columns, sorted
    predicted = [labels[i] for i in proba.argmax(axis=1)]
    metrics = classification_metrics(test_labels, predicted, labels, proba)
    return SetFitResult(wall_s, metrics, describe_arguments(args), pooling_mode(model))
