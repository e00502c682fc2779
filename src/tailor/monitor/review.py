"""The review queue: which stored answers a person should label first, and labels coming back in bulk.

Labels are worth most where the model is unsure and where traffic has moved away from the training data,
and two labels on near-copies of one text are worth one. The queue (:func:`review_queue`) takes a version's
stored answers without feedback and:

1. drops repeated texts and near-duplicates (cosine similarity of their embeddings >= :data:`NEAR_DUPLICATE`);
2. scores each answer's **uncertainty** (1 - the margin between its two most probable labels, after the
   version's temperature) and **novelty** (how surely a domain classifier tells it from the version's
   training texts, :func:`tailor.monitor.drift.domain_classifier`; 0.5 when there is no fingerprint);
3. orders them by maximal marginal relevance: each next pick maximises ``uncertainty x (0.5 + novelty)``
   minus :data:`DIVERSITY` x its highest similarity to the answers already picked, so the queue spreads over
   the uncertain, drifted regions instead of taking fifty copies of one confusing phrasing.

Exports: CSV and JSONL (``prediction_id, text, label, score``, plus an empty ``true_label`` column to fill
in) and Label Studio's import JSON (tasks with the model's label as a pre-annotation). :func:`read_labels`
reads them back (the CSV/JSONL with ``true_label`` or ``label`` filled in, or Label Studio's export JSON)
as feedback items for :func:`tailor.monitor.feedback.give_feedback`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence

import numpy as np

from tailor.errors import DataError
from tailor.monitor.drift import REFERENCE_TEXTS, domain_classifier

NEAR_DUPLICATE = 0.95
DIVERSITY = 0.5
MAX_CANDIDATES = 2000  # the newest stored answers considered
FORMATS = ("json", "csv", "jsonl", "label_studio")


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (top probability - second probability) per row: 1 for a tie, 0 for a certain answer."""
    if probs.shape[1] < 2:
        return np.zeros(len(probs))
    top2 = -np.sort(-probs, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def review_order(priority: np.ndarray, vectors: np.ndarray, limit: int) -> list[int]:
    """Indices of up to ``limit`` rows by maximal marginal relevance (see the module docstring); a row at
    least :data:`NEAR_DUPLICATE` similar to a picked one is never picked. ``vectors`` are unit-normalised."""
    if len(priority) == 0:
        return []
    picked: list[int] = []
    closest = np.full(len(priority), 0.0)  # each row's highest similarity to a picked row
    available = np.ones(len(priority), dtype=bool)
    while len(picked) < limit and available.any():
        gain = np.where(available, priority - DIVERSITY * closest, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        similarity = vectors @ vectors[best]
        closest = np.maximum(closest, similarity)
        available &= similarity < NEAR_DUPLICATE
        available[best] = False
    return picked


def review_queue(records: Sequence, probs: np.ndarray, reference: Sequence[str], embed: Callable,
                 limit: int) -> list[dict]:
    """The queue (see the module docstring) over ``records`` (stored answers without feedback, with their
    calibrated ``probs`` in label order), against the version's training ``reference`` texts."""
    texts = [r.input["text"] for r in records]
    first_of = {}
    for i, text in enumerate(texts):
        first_of.setdefault(text, i)
    keep = sorted(first_of.values())
    if not keep:
        return []
    vectors = _unit(embed([texts[i] for i in keep]))
    unsure = uncertainty(probs[keep])
    novelty = np.full(len(keep), 0.5)
    if len(reference) >= 10 and len(keep) >= 10:
        _, novelty = domain_classifier(vectors, _unit(embed(list(reference))))
    order = review_order(unsure * (0.5 + novelty), vectors, limit)
    out = []
    for j in order:
        record = records[keep[j]]
        out.append({"prediction_id": record.id, "input": record.input["text"], "label": record.label,
                    "score": record.score, "scores": record.scores, "uncertainty": round(float(unsure[j]), 4),
                    "novelty": round(float(novelty[j]), 4), "created_at": int(record.created_at.timestamp())})
    return out


def version_queue(records, feedback, version, *, fingerprint: dict | None, embed: Callable, limit: int,
                  hours: float) -> list[dict]:
    """The review queue of a registered classifier ``version``: its stored answers of the last ``hours``
    (the newest :data:`MAX_CANDIDATES`) that have no feedback yet (``records``: a
    :class:`~tailor.monitor.records.PredictionStore`, ``feedback``: a
    :class:`~tailor.monitor.feedback.FeedbackStore`)."""
    from datetime import timedelta

    from tailor.db import now
    from tailor.eval.calibration import apply_temperature
    from tailor.monitor.report import recorded_probabilities

    end = now()
    answers = [r for r in records.answers(version.tenant, version.name, version.version, end - timedelta(hours=hours),
                                          end, stored=True, newest=MAX_CANDIDATES)
               if isinstance(r.input.get("text"), str)]
    labelled = feedback.for_records(version.tenant, [r.id for r in answers])
    answers = [r for r in answers if r.id not in labelled]
    if not answers:
        return []
    probs = recorded_probabilities(answers, sorted(answers[0].scores))
    temperature = float(version.metrics.get("calibration", {}).get("temperature", 1.0))
    reference = (fingerprint or {}).get("texts", [])[:REFERENCE_TEXTS]
    return review_queue(answers, apply_temperature(probs, temperature), reference, embed, limit)


def _unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def export(items: list[dict], fmt: str, model: str) -> tuple[str, str]:
    """``(body, media type)`` of the queue in ``fmt``: ``csv``, ``jsonl`` or ``label_studio``."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["prediction_id", "text", "label", "score", "true_label"])
        for item in items:
            writer.writerow([item["prediction_id"], item["input"], item["label"] or "", item["score"], ""])
        return buffer.getvalue(), "text/csv; charset=utf-8"
    if fmt == "jsonl":
        return "".join(json.dumps({"prediction_id": i["prediction_id"], "text": i["input"], "label": i["label"],
                                   "score": i["score"], "true_label": None}, ensure_ascii=False) + "\n"
                       for i in items), "application/x-ndjson"
    tasks = [{"data": {"text": i["input"], "prediction_id": i["prediction_id"]},
              "predictions": [{"model_version": model, "score": i["score"], "result": [] if i["label"] is None else [
                  {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [i["label"]]}}]}]}
             for i in items]
    return json.dumps(tasks, ensure_ascii=False, indent=1), "application/json"


def read_labels(content: bytes, filename: str) -> list[dict]:
    """Feedback items (``{"prediction_id", "label"}``) from a labelled export: CSV or JSONL with
    ``prediction_id`` and ``true_label`` (or ``label``), or Label Studio's export JSON (each task's
    ``data.prediction_id`` and its last annotation's first choice). Rows without a label are skipped.

    Raises:
        DataError: the file is none of these, or a row lacks ``prediction_id`` (named by its line or task).
    """
    text = content.decode("utf-8-sig")
    name = filename.lower()
    if name.endswith(".json") or text.lstrip().startswith("["):
        return _label_studio_labels(text)
    if name.endswith(".jsonl"):
        rows = []
        for line_number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((line_number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DataError(f"line {line_number}: not JSON ({exc.msg})") from None
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows = [(line_number, row) for line_number, row in enumerate(reader, 2)]
    items = []
    for line_number, row in rows:
        if not isinstance(row, dict) or not row.get("prediction_id"):
            raise DataError(f"line {line_number}: no prediction_id")
        label = row.get("true_label") if "true_label" in row else row.get("label")
        if label not in (None, ""):
            items.append({"prediction_id": row["prediction_id"], "label": str(label)})
    return items


def _label_studio_labels(text: str) -> list[dict]:
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(tasks, list):
        raise DataError("a Label Studio export is a JSON list of tasks")
    items = []
    for i, task in enumerate(tasks):
        prediction_id = ((task or {}).get("data") or {}).get("prediction_id") if isinstance(task, dict) else None
        if not prediction_id:
            raise DataError(f"task {i}: no data.prediction_id (export tasks imported from Tailor's queue)")
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        choices = [r["value"]["choices"][0] for r in (annotations[-1].get("result") or [] if annotations else [])
                   if r.get("type") == "choices" and r.get("value", {}).get("choices")]
        if choices:
            items.append({"prediction_id": prediction_id, "label": choices[0]})
    return items
