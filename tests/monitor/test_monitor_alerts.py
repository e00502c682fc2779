"""Alert rules: parsing with messages that name the rule, and judging reports (fire once, resolve, wait for
enough answers)."""

from __future__ import annotations

import pytest

from tailor.errors import UsageError
from tailor.monitor.alerts import Alert, judge, metric_value
from tailor.monitor.config import MonitoringConfig, Rule, parse_rule_text, parse_rules


def _report(answers=100, accuracy=0.9, drift="no_drift", p95=20.0, errors=0):
    return {"totals": {"requests": answers, "answers": answers, "errors": errors,
                       "latency_ms": {"p50": 10.0, "p95": p95, "p99": 30.0}},
            "estimated": {"accuracy": accuracy, "macro_f1": accuracy - 0.05},
            "measured": {"accuracy": None}, "labels": {"distance": 0.1},
            "drift": {"verdict": drift, "embedding": {"domain_auc": 0.97 if drift == "drift" else 0.5}}}


def test_rules_are_checked_and_name_the_bad_one():
    assert parse_rules([{"metric": "estimated_accuracy", "op": "<", "threshold": 0.8},
                        {"metric": "input_drift"}]) == (Rule("estimated_accuracy", "<", 0.8, 30),
                                                         Rule("input_drift", ">=", 1.0, 30))
    with pytest.raises(UsageError, match=r"^rules\[1\]\.metric: 'accuracy' is not a metric; metrics: "
                                         r"estimated_accuracy, estimated_macro_f1"):
        parse_rules([{"metric": "answers", "threshold": 1}, {"metric": "accuracy", "threshold": 1}])
    with pytest.raises(UsageError, match=r"^rules\[0\]\.op: '=' is not one of <, <=, >, >=$"):
        parse_rules([{"metric": "answers", "op": "=", "threshold": 1}])
    with pytest.raises(UsageError, match=r"^rules\[0\]\.threshold: a number is needed, got None$"):
        parse_rules([{"metric": "answers", "op": ">"}])
    with pytest.raises(UsageError, match=r"^rules\[0\]: unknown field 'treshold'"):
        parse_rules([{"metric": "answers", "treshold": 3}])
    assert parse_rule_text("estimated_accuracy<0.8") == {"metric": "estimated_accuracy", "op": "<", "threshold": 0.8}
    assert parse_rule_text("latency_p95_ms >= 250") == {"metric": "latency_p95_ms", "op": ">=", "threshold": 250.0}
    assert parse_rule_text("input_drift") == {"metric": "input_drift", "op": ">=", "threshold": 1}
    with pytest.raises(UsageError, match="write METRIC<NUMBER"):
        parse_rule_text("accuracy is low")


def test_metric_values_read_the_report():
    report = _report(answers=50, accuracy=0.7, drift="drift", p95=120.0, errors=5)
    assert {m: metric_value(report, m) for m in ("estimated_accuracy", "input_drift", "drift_auc", "latency_p95_ms",
                                                 "error_rate", "answers", "measured_accuracy")} == {
        "estimated_accuracy": 0.7, "input_drift": 1.0, "drift_auc": 0.97, "latency_p95_ms": 120.0,
        "error_rate": 5 / 55, "answers": 50.0, "measured_accuracy": None}


def test_a_rule_fires_once_resolves_and_waits_for_enough_answers():
    config = MonitoringConfig("acme", "sentiment", rules=parse_rules([
        {"metric": "estimated_accuracy", "op": "<", "threshold": 0.8}, {"metric": "input_drift"}]),
        webhook_url="http://127.0.0.1:9/hook")
    fired, resolved = judge(config, 2, _report(accuracy=0.7, drift="drift"), {})
    assert [(a.rule, a.value, a.state, a.delivery, a.version) for a in fired] == [
        ("estimated_accuracy < 0.8", 0.7, "firing", "pending", 2), ("input_drift >= 1", 1.0, "firing", "pending", 2)]
    assert resolved == []
    open_alerts = {a.rule: a for a in fired}
    assert judge(config, 2, _report(accuracy=0.7, drift="drift"), open_alerts) == ([], [])  # already open
    fired, resolved = judge(config, 2, _report(accuracy=0.85, drift="drift"), open_alerts)
    assert fired == [] and [(a.id, a.state, a.value) for a in resolved] == [
        (open_alerts["estimated_accuracy < 0.8"].id, "resolved", 0.85)]
    assert resolved[0].resolved_at is not None
    assert judge(config, 2, _report(answers=29, accuracy=0.1), {}) == ([], [])  # 29 answers: not judged


def test_the_posted_payload():
    config = MonitoringConfig("acme", "sentiment", window_hours=2.0)
    alert = Alert("acme", "sentiment", 3, "estimated_accuracy < 0.8", 0.71)
    payload = alert.payload(config)
    assert payload == {"object": "alert", "event": "fired", "id": alert.id, "tenant": "acme", "model": "sentiment:3",
                       "rule": "estimated_accuracy < 0.8", "metric": "estimated_accuracy", "value": 0.71,
                       "threshold": 0.8, "window_hours": 2.0, "fired_at": int(alert.fired_at.timestamp()),
                       "resolved_at": None}
