"""A classifier version's monitoring report over a window of its recorded answers: traffic and latency per
time bucket, the served label mix beside the training one, confidence, accuracy and macro-F1 estimated
without labels (:mod:`tailor.monitor.estimate`, on the version's calibrated probabilities), and, where
feedback labels exist, the measured figures beside the estimate.

The report (``GET /v1/models/{model}/monitoring``, ``tailor monitor MODEL``)::

    {"object": "model.monitoring", "model": "sentiment:2", "window": {"start": ..., "end": ..., "hours": 24},
     "bucket_minutes": 60,
     "totals": {"requests": 120, "answers": 840, "abstained": 0, "prompt_tokens": 15000,
                "latency_ms": {"p50": 12.1, "p95": 40.3, "p99": 61.0}, "errors": 0, "client_errors": 1},
     "labels": {"served": {"negative": 0.31, ...}, "training": {"negative": 0.28, ...}, "distance": 0.05},
     "confidence": {"mean": 0.83, "histogram": [0, 0, 0, 2, 10, ...]},
     "estimated": {"rows": 840, "accuracy": 0.86, "macro_f1": 0.82, "temperature": 1.41, "calibrated": true},
     "measured": {"rows": 40, "accuracy": 0.85, "macro_f1": 0.8, "estimated_accuracy": 0.87},
     "drift": {"verdict": "no_drift", "reasons": [], "embedding": {...}, "length": {...}, ...},
     "buckets": [{"start": ..., "requests": 5, "answers": 35, "failed": 0, "latency_ms_p50": 11.0,
                  "latency_ms_p95": 30.2, "labels": {"negative": 0.4, ...}, "confidence_mean": 0.81,
                  "estimated_accuracy": 0.87, "estimated_macro_f1": 0.84, "measured_rows": 3,
                  "measured_accuracy": 0.67}, ...]}

The drift section is :func:`tailor.monitor.drift.drift_section`'s. The label ``distance`` is the total
variation distance between the two mixes (half the sum of absolute differences: 0 same, 1 disjoint). An
empty window gives the same shape with zero counts and None figures.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np

from tailor.db import now
from tailor.errors import UsageError
from tailor.monitor.drift import drift_section, input_features
from tailor.monitor.estimate import expected_performance
from tailor.monitor.records import PredictionRecord, PredictionStore

CONFIDENCE_BINS = 10
MAX_BUCKETS = 1000


def check_window(hours: float, bucket_minutes: float) -> None:
    """Raises UsageError unless both are above 0 and the window has at most :data:`MAX_BUCKETS` buckets."""
    for name, value in (("hours", hours), ("bucket_minutes", bucket_minutes)):
        if not value > 0:
            raise UsageError(f"{name} must be above 0, got {value:g}")
    if hours * 60 / bucket_minutes > MAX_BUCKETS:
        raise UsageError(f"bucket_minutes: {hours:g} hours in buckets of {bucket_minutes:g} minutes is over "
                         f"{MAX_BUCKETS} buckets; use wider buckets")


def version_report(records: PredictionStore, feedback, version, hours: float = 24.0,
                   bucket_minutes: float = 60.0, *, fingerprint: dict | None = None, embed=None) -> dict:
    """The report on a registered classifier ``version`` over the last ``hours``, from its recorded answers
    and the tenant's feedback on them (``feedback``: a :class:`~tailor.monitor.feedback.FeedbackStore`); its
    drift section sets them against the version's training ``fingerprint`` with its base encoder's ``embed``
    (see :func:`tailor.monitor.drift.drift_section`).

    Raises:
        UsageError: a window :func:`check_window` refuses.
    """
    check_window(hours, bucket_minutes)
    end = now()
    start = end - timedelta(hours=hours)
    answers = records.answers(version.tenant, version.name, version.version, start, end)
    failed = records.answers(version.tenant, version.name, version.version, start, end, kind="error")
    given = feedback.for_records(version.tenant, [r.id for r in answers])
    training = version.lineage.get("label_counts")
    labels = sorted(answers[0].scores) if answers else sorted(training or {})
    return monitoring_report(answers, labels, model=f"{version.name}:{version.version}", start=start, end=end,
                             bucket=timedelta(minutes=bucket_minutes), training_counts=training,
                             calibration=version.metrics.get("calibration"),
                             feedback={k: f.label for k, f in given.items() if f.label is not None},
                             drift=drift_section(answers, fingerprint, embed), failed=failed)


def chat_version_report(records: PredictionStore, feedback, version, hours: float = 24.0,
                        bucket_minutes: float = 60.0) -> dict:
    """The report on a registered chat ``version`` over the last ``hours`` (see :func:`chat_report`).

    Raises:
        UsageError: a window :func:`check_window` refuses.
    """
    check_window(hours, bucket_minutes)
    end = now()
    start = end - timedelta(hours=hours)
    answers = [r for kind in ("chat.completion", "text_completion")
               for r in records.answers(version.tenant, version.name, version.version, start, end, kind=kind)]
    answers.sort(key=lambda r: (r.created_at, r.id))
    given = feedback.for_records(version.tenant, [r.id for r in answers])
    report = chat_report(answers, given, model=f"{version.name}:{version.version}", start=start, end=end,
                         bucket=timedelta(minutes=bucket_minutes))
    report["totals"] |= _errors(records.answers(version.tenant, version.name, version.version, start, end,
                                                kind="error"))
    return report


# An answer that opens with one of these declines the request (English and Chinese); only its first 200
# characters are read, so an answer that apologises later in a long reply is not counted.
REFUSAL = re.compile(r"^\W*(?:i'?m sorry|i am sorry|sorry,? (?:but )?i|i apologi[sz]e|i (?:can ?not|can't|won't|am "
                     r"unable to|'m unable to|am not able to|'m not able to)|as an ai\b|unfortunately,? i (?:can|am)"
                     r"|抱歉|对不起|很抱歉|我无法|我不能)", re.IGNORECASE)


def is_refusal(text: str) -> bool:
    """Whether a generated answer declines the request (see :data:`REFUSAL`)."""
    return bool(REFUSAL.match(text[:200]))


def chat_report(records: list[PredictionRecord], feedback: dict, *, model: str, start: datetime, end: datetime,
                bucket: timedelta) -> dict:
    """A chat version's report: traffic, latency, tokens, answers that came back empty, declined (refusals),
    cut at the token limit (``finish_reason`` length) or left unfinished by the client, and the feedback
    (ratings and corrected answers), in total and per time bucket::

        {"object": "model.monitoring", "task": "chat", "model": "helpdesk:2", "window": {...}, "bucket_minutes": 60,
         "totals": {"requests": 40, "answers": 40, "prompt_tokens": 5100, "completion_tokens": 3900,
                    "completion_tokens_mean": 97.5, "latency_ms": {"p50": ..., "p95": ..., "p99": ...},
                    "empty": 0, "refusals": 3, "truncated": 2, "unfinished": 1},
         "feedback": {"rated": 10, "up": 7, "down": 3, "corrections": 2},
         "buckets": [{"start": ..., "requests": 4, "latency_ms_p50": 830.0, "completion_tokens": 390,
                      "refusal_rate": 0.25, "empty_rate": 0.0}, ...]}
    """
    given = [feedback[r.id] for r in records if r.id in feedback]
    report = {"object": "model.monitoring", "task": "chat", "model": model,
              "window": _window(start, end),
              "bucket_minutes": round(bucket.total_seconds() / 60, 3),
              "totals": {**_chat_counts(records), "prompt_tokens": sum(r.prompt_tokens for r in records),
                         "completion_tokens": sum(r.completion_tokens for r in records),
                         "completion_tokens_mean": round(float(np.mean([r.completion_tokens for r in records])), 2)
                         if records else None,
                         "latency_ms": _percentiles(list(_requests(records).values()))},
              "feedback": {"rated": sum(1 for f in given if f.rating), "up": sum(1 for f in given if f.rating == "up"),
                           "down": sum(1 for f in given if f.rating == "down"),
                           "corrections": sum(1 for f in given if f.correction)},
              "buckets": []}
    moment, index = start, 0
    while moment < end:
        right, first = min(moment + bucket, end), index
        while index < len(records) and records[index].created_at < right:
            index += 1
        chunk = records[first:index]
        counts = _chat_counts(chunk)
        report["buckets"].append({
            "start": _iso(moment), "requests": counts["requests"],
            "latency_ms_p50": _percentiles(list(_requests(chunk).values()))["p50"],
            "completion_tokens": sum(r.completion_tokens for r in chunk),
            "refusal_rate": round(counts["refusals"] / len(chunk), 4) if chunk else None,
            "empty_rate": round(counts["empty"] / len(chunk), 4) if chunk else None})
        moment += bucket
    return report


def _chat_counts(records: list[PredictionRecord]) -> dict:
    finishes = [(r.details or {}).get("finish_reason") for r in records]
    return {"requests": len(_requests(records)), "answers": len(records),
            "empty": sum(1 for r in records if not (r.output or "").strip()),
            "refusals": sum(1 for r in records if is_refusal(r.output or "")),
            "truncated": finishes.count("length"), "unfinished": finishes.count(None)}


def recent_figures(records: PredictionStore, registry_store, hours: float = 1.0) -> list[dict]:
    """Per classifier version answered in the last ``hours``: ``{"tenant", "model", "version", "answers",
    "estimated_accuracy", "label_distance"}`` (the report's figures over that window, for Prometheus gauges);
    versions deleted since are left out."""
    from tailor.errors import NotFoundError

    groups: dict[tuple, list[PredictionRecord]] = {}
    for record in records.since(now() - timedelta(hours=hours)):
        if record.version is not None:
            groups.setdefault((record.tenant, record.model_name, record.version), []).append(record)
    out = []
    for (tenant, name, number), answers in sorted(groups.items()):
        try:
            version = registry_store.resolve(tenant, f"{name}:{number}")
        except NotFoundError:
            continue
        labels = sorted(answers[0].scores)
        probs = recorded_probabilities(answers, labels)
        temperature = float(version.metrics.get("calibration", {}).get("temperature", 1.0))
        out.append({"tenant": tenant, "model": name, "version": number, "answers": len(answers),
                    "estimated_accuracy": expected_performance(probs, temperature)["accuracy"],
                    "label_distance": _label_mix(answers, version.lineage.get("label_counts"))["distance"]})
    return out


def describe_report(report: dict) -> str:
    """The report as a few lines for a terminal (``tailor monitor``)."""
    totals, estimated, measured, mix = report["totals"], report["estimated"], report["measured"], report["labels"]

    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    latency = totals["latency_ms"]
    lines = [f"{report['model']}: last {report['window']['hours']:g} h, {totals['requests']} requests, "
             f"{totals['answers']} answers ({totals['abstained']} abstained)",
             f"latency ms p50 {latency['p50']}  p95 {latency['p95']}  p99 {latency['p99']}",
             f"estimated accuracy {pct(estimated['accuracy'])}, macro-F1 {pct(estimated['macro_f1'])} "
             f"({'calibrated' if estimated['calibrated'] else 'uncalibrated'}, temperature "
             f"{estimated['temperature']:.2f})"]
    if measured["rows"]:
        lines.append(f"measured on {measured['rows']} feedback labels: accuracy {pct(measured['accuracy'])} "
                     f"(estimated {pct(measured['estimated_accuracy'])}), macro-F1 {pct(measured['macro_f1'])}")
    if mix["served"]:
        lines.append("labels served / trained: " + ", ".join(
            f"{k} {pct(mix['served'].get(k, 0))}/{pct(mix['training'].get(k))}" for k in sorted(
                set(mix["served"]) | set(mix["training"]))) + f"  (distance {mix['distance']})")
    drift = report.get("drift") or {}
    if drift:
        verdict = {"drift": "DRIFT", "no_drift": "none", "insufficient_data": "not enough data"}[drift["verdict"]]
        lines.append(f"input drift: {verdict}" + "".join(f"\n  - {reason}" for reason in drift["reasons"]))
    lines.append("per bucket (start, answers, estimated accuracy): " + "  ".join(
        f"{b['start'][11:16]} {b['answers']} {pct(b['estimated_accuracy'])}" for b in report["buckets"][-12:]))
    return "\n".join(lines)


def monitoring_report(records: list[PredictionRecord], labels: list[str], *, model: str, start: datetime,
                      end: datetime, bucket: timedelta, training_counts: dict[str, int] | None,
                      calibration: dict | None, feedback: dict[str, str], drift: dict | None = None,
                      failed: list[PredictionRecord] = ()) -> dict:
    """The report (see the module docstring) for ``records`` of one version, whose ``labels`` are its classes
    in column order; ``feedback`` maps answer ids to their true labels; ``drift`` is the drift section;
    ``failed`` are the version's failed requests (records of kind ``error``)."""
    temperature = float((calibration or {}).get("temperature", 1.0))
    probs = recorded_probabilities(records, labels)
    estimate = expected_performance(probs, temperature)
    report = {"object": "model.monitoring", "model": model,
              "window": _window(start, end),
              "bucket_minutes": round(bucket.total_seconds() / 60, 3),
              "totals": {**_traffic(records), **_errors(failed)},
              "labels": _label_mix(records, training_counts),
              "confidence": _confidence(probs, temperature),
              "estimated": {**estimate, "temperature": temperature,
                            "calibrated": bool((calibration or {}).get("fitted", False))},
              "measured": _measured(records, probs, labels, temperature, feedback),
              "drift": drift,
              "buckets": _buckets(records, probs, labels, temperature, feedback, start, end, bucket, failed)}
    return report


def recorded_probabilities(records: list[PredictionRecord], labels: list[str]) -> np.ndarray:
    """The records' recorded probabilities as ``(len(records), len(labels))``, columns in ``labels`` order."""
    return np.array([[r.scores.get(label, 0.0) for label in labels] for r in records],
                    dtype=float).reshape(-1, len(labels))


def _window(start: datetime, end: datetime) -> dict:
    return {"start": _iso(start), "end": _iso(end), "hours": round((end - start).total_seconds() / 3600, 3)}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2)}


def _requests(records: list[PredictionRecord]) -> dict[str, float]:
    """Each request's latency, by request id (a request's answers share it)."""
    return {r.request_id or r.id: r.latency_ms for r in records}


def _traffic(records: list[PredictionRecord]) -> dict:
    latencies = list(_requests(records).values())
    return {"requests": len(latencies), "answers": len(records),
            "abstained": sum(1 for r in records if r.label is None),
            "prompt_tokens": sum(r.prompt_tokens for r in records), "latency_ms": _percentiles(latencies)}


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {label: round(n / total, 4) for label, n in sorted(counts.items())} if total else {}


def _label_mix(records: list[PredictionRecord], training_counts: dict[str, int] | None) -> dict:
    """Served top labels (the model's choice, abstained or not) beside the training labels."""
    served = Counter(max(r.scores, key=r.scores.get) for r in records)
    served_shares, training_shares = _shares(served), _shares(training_counts or {})
    distance = None
    if served_shares and training_shares:
        keys = set(served_shares) | set(training_shares)
        distance = round(0.5 * sum(abs(served_shares.get(k, 0) - training_shares.get(k, 0)) for k in keys), 4)
    return {"served": served_shares, "training": training_shares, "distance": distance}


def _confidence(probs: np.ndarray, temperature: float) -> dict:
    if len(probs) == 0:
        return {"mean": None, "histogram": [0] * CONFIDENCE_BINS}
    from tailor.eval.calibration import apply_temperature

    top = apply_temperature(probs, temperature).max(axis=1)
    histogram = np.bincount(np.minimum((top * CONFIDENCE_BINS).astype(int), CONFIDENCE_BINS - 1),
                            minlength=CONFIDENCE_BINS)
    return {"mean": round(float(top.mean()), 4), "histogram": histogram.tolist()}


def _measured(records: list[PredictionRecord], probs: np.ndarray, labels: list[str], temperature: float,
              feedback: dict[str, str]) -> dict:
    """Accuracy and macro-F1 on the answers with a feedback label, beside the estimate on the same answers."""
    from sklearn.metrics import f1_score

    rows = [i for i, r in enumerate(records) if r.id in feedback]
    if not rows:
        return {"rows": 0, "accuracy": None, "macro_f1": None, "estimated_accuracy": None}
    truth = [feedback[records[i].id] for i in rows]
    predicted = [labels[int(probs[i].argmax())] for i in rows]
    return {"rows": len(rows), "accuracy": round(float(np.mean([t == p for t, p in zip(truth, predicted)])), 4),
            "macro_f1": round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4),
            "estimated_accuracy": expected_performance(probs[rows], temperature)["accuracy"]}


def _errors(failed) -> dict:
    """Failed requests: ``errors`` (the server's: 5xx, e.g. a model that failed to load, a full queue) and
    ``client_errors`` (4xx the model's answer could not be given for, e.g. an abstain threshold it lacks)."""
    statuses = [(r.details or {}).get("status", 500) for r in failed]
    return {"errors": sum(1 for s in statuses if s >= 500), "client_errors": sum(1 for s in statuses if s < 500)}


def _buckets(records: list[PredictionRecord], probs: np.ndarray, labels: list[str], temperature: float,
             feedback: dict[str, str], start: datetime, end: datetime, bucket: timedelta, failed=()) -> list[dict]:
    """Per time bucket: traffic, latency, the served label mix, mean confidence, the estimate, the measured
    accuracy on the bucket's answers with a feedback label, and their inputs' mean length and unknown-token rate
    (drift over time, beside the window's drift tests)."""
    edges = []
    moment = start
    while moment < end:
        edges.append(moment)
        moment += bucket
    out = []
    index = 0
    for left in edges:
        right = min(left + bucket, end)
        first = index
        while index < len(records) and records[index].created_at < right:
            index += 1
        chunk = records[first:index]
        estimate = expected_performance(probs[first:index], temperature)
        measured = _measured(chunk, probs[first:index], labels, temperature, feedback)
        latency = _percentiles(list(_requests(chunk).values()))
        errors = sum(1 for r in failed if left <= r.created_at < right)
        out.append({"start": _iso(left), "requests": len(_requests(chunk)), "answers": len(chunk), "failed": errors,
                    "latency_ms_p50": latency["p50"], "latency_ms_p95": latency["p95"],
                    "labels": _label_mix(chunk, None)["served"],
                    "confidence_mean": _confidence(probs[first:index], temperature)["mean"],
                    "estimated_accuracy": estimate["accuracy"], "estimated_macro_f1": estimate["macro_f1"],
                    "measured_rows": measured["rows"], "measured_accuracy": measured["accuracy"],
                    **input_features(chunk)})
    return out
