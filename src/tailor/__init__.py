"""Tailor: turn pretrained models into customized ones, offline, on a CPU.

The Python API mirrors the CLI::

    import tailor
    ds = tailor.load_dataset("loans.csv")                  # ingest + validate
    result = tailor.fine_tune("loans.csv", name="credit-risk")  # clean, split, fine-tune, evaluate, register
    tailor.fine_tune("few.csv", unlabeled="pool.txt")      # ... learning from unlabelled texts too
    tailor.zero_shot(["billing", "cancellation"], name="triage")  # a first model from label names alone
    model = tailor.load_model("credit-risk@latest")
    model.predict(["late payment on my card"])

Heavy modules (torch, transformers) are imported only when a function needs them, so
``import tailor`` and ``tailor --help`` stay fast. (The function is ``fine_tune`` because ``tailor.train`` is the training
subpackage.)
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# OpenMP threads that wait passively give their core back instead of spinning at every barrier: two
# trainings on two cores ran 7x slower than alone with spinning threads, 1.8x with sleeping ones (see
# tailor.cores). It must be set before PyTorch loads its OpenMP runtime, so here; a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["__version__", "load_dataset", "fine_tune", "zero_shot", "adapt", "load_model", "evaluate"]


def load_dataset(path, text_col=None, label_col=None, **kwargs):
    """Read and validate a CSV/TSV/JSONL file of labelled texts; see :func:`tailor.data.ingest.read_dataset`."""
    from tailor.data.ingest import read_dataset

    return read_dataset(path, text_col=text_col, label_col=label_col, **kwargs)


def fine_tune(data, task: str = "classify", **kwargs):
    """Run a fine-tuning job end to end: ``task="classify"`` runs
    :func:`tailor.train.job.run_classification_job`, ``task="chat"`` :func:`tailor.train.chat_job.run_chat_job`."""
    if task == "chat":
        from tailor.train.chat_job import run_chat_job

        return run_chat_job(data, **kwargs)
    if task != "classify":
        from tailor.errors import UsageError

        raise UsageError(f"unknown task {task!r}; use classify or chat")
    from tailor.train.job import run_classification_job

    return run_classification_job(data, **kwargs)


def zero_shot(labels, **kwargs):
    """Register a classifier from label names (and optional one-line descriptions) alone, nothing trained; see
    :func:`tailor.train.zero_shot.run_zero_shot_job`."""
    from tailor.train.zero_shot import run_zero_shot_job

    return run_zero_shot_job(labels, **kwargs)


def adapt(corpus, **kwargs):
    """Adapt a base encoder to a domain's unlabelled texts and store it as the tenant's base; see
    :func:`tailor.train.adapt.run_adaptation`."""
    from tailor.train.adapt import run_adaptation

    return run_adaptation(corpus, **kwargs)


def load_model(ref: str, runtime: str | None = "served"):
    """Load a registered model version (``name``, ``name:3``, ``name@alias``) ready to predict, on the
    runtime its accuracy gate chose (``served``, as the API runs it) or the one named (``torch-fp32``, the
    PyTorch reference; ``onnx-fp32``; ``onnx-int8``)."""
    from tailor.registry.service import load_classifier

    return load_classifier(ref, runtime=runtime)


def evaluate(ref: str, data, **kwargs):
    """Evaluate a registered model on labelled data; see :func:`tailor.eval.run.evaluate_model`."""
    from tailor.eval.run import evaluate_model

    return evaluate_model(ref, data, **kwargs)
