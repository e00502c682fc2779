"""Each model's monitoring settings: whether its inputs are stored by default, and its alert rules with the
webhook they post to (the ``monitoring_configs`` table, one row per tenant and model name; every version of
the model shares it).

A rule is ``{"metric", "op", "threshold"}`` over a version's report for the last ``window_hours``, judged
only once the window has ``min_answers`` answers::

    {"store_inputs": true, "window_hours": 1,
     "rules": [{"metric": "estimated_accuracy", "op": "<", "threshold": 0.8},
               {"metric": "input_drift", "op": ">=", "threshold": 1},
               {"metric": "latency_p95_ms", "op": ">", "threshold": 250}],
     "webhook_url": "https://ops.example.com/hooks/tailor"}

Metrics (:data:`METRICS`) read the monitoring report (:mod:`tailor.monitor.report`): ``input_drift`` is 1 when
the drift verdict is drift, else 0.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, delete, select

from tailor.db import JsonText, UtcDateTime, now, open_engine
from tailor.errors import UsageError

METRICS = {
    "estimated_accuracy": "accuracy estimated without labels (0..1)",
    "estimated_macro_f1": "macro-F1 estimated without labels (0..1)",
    "measured_accuracy": "accuracy on the answers with a feedback label (0..1)",
    "input_drift": "1 when the input drift verdict is drift, else 0",
    "drift_auc": "the drift domain classifier's AUC (0.5: like training, 1: wholly unlike)",
    "label_distance": "distance of the served label mix from training's (0..1)",
    "error_rate": "share of requests that failed (0..1)",
    "latency_p95_ms": "95th percentile request latency in milliseconds",
    "answers": "answers in the window",
}
OPS = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}
MAX_RULES = 20
STORE_INPUTS_TTL_S = 5.0  # how long a server trusts a model's store_inputs before reading it again

_metadata = MetaData()
_configs = Table(
    "monitoring_configs", _metadata,
    Column("tenant", String(64), primary_key=True), Column("model_name", String(200), primary_key=True),
    Column("store_inputs", Integer), Column("window_hours", Float), Column("rules", JsonText),
    Column("webhook_url", Text), Column("updated_at", UtcDateTime),
)


@dataclass(frozen=True)
class Rule:
    """Alert when ``metric op threshold`` holds on a window with at least ``min_answers`` answers."""

    metric: str
    op: str
    threshold: float
    min_answers: int = 30

    def key(self) -> str:
        """The rule in words, which also names its alerts: ``estimated_accuracy < 0.8``."""
        return f"{self.metric} {self.op} {self.threshold:g}"

    def holds(self, value: float | None) -> bool:
        return value is not None and OPS[self.op](float(value), float(self.threshold))


@dataclass(frozen=True)
class MonitoringConfig:
    """A model's monitoring settings (the defaults when none were set)."""

    tenant: str
    model_name: str
    store_inputs: bool = False
    window_hours: float = 1.0
    rules: tuple[Rule, ...] = ()
    webhook_url: str | None = None
    updated_at: object = None

    def to_dict(self) -> dict:
        return {"object": "model.monitoring_config", "model": self.model_name, "store_inputs": self.store_inputs,
                "window_hours": self.window_hours, "rules": [asdict(r) for r in self.rules],
                "webhook_url": self.webhook_url,
                "updated_at": int(self.updated_at.timestamp()) if self.updated_at else None}


def parse_rules(items: list[dict]) -> tuple[Rule, ...]:
    """Rules from their dicts, each checked.

    Raises:
        UsageError: an unknown metric or operator, a threshold that is not a number, or too many rules; the
            message names the rule (``rules[2].metric``).
    """
    if len(items) > MAX_RULES:
        raise UsageError(f"rules: at most {MAX_RULES}, got {len(items)}")
    rules = []
    for i, item in enumerate(items):
        unknown = set(item) - {"metric", "op", "threshold", "min_answers"}
        if unknown:
            raise UsageError(f"rules[{i}]: unknown field {sorted(unknown)[0]!r} (fields: metric, op, threshold, "
                             "min_answers)")
        metric, op = item.get("metric"), item.get("op", ">=")
        if metric not in METRICS:
            raise UsageError(f"rules[{i}].metric: {metric!r} is not a metric; metrics: {', '.join(METRICS)}")
        if op not in OPS:
            raise UsageError(f"rules[{i}].op: {op!r} is not one of {', '.join(OPS)}")
        threshold = item.get("threshold", 1 if metric == "input_drift" else None)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise UsageError(f"rules[{i}].threshold: a number is needed, got {threshold!r}")
        min_answers = item.get("min_answers", 30)
        if isinstance(min_answers, bool) or not isinstance(min_answers, int) or min_answers < 1:
            raise UsageError(f"rules[{i}].min_answers: a whole number of at least 1 is needed, got {min_answers!r}")
        rules.append(Rule(metric, op, float(threshold), min_answers))
    return tuple(rules)


def parse_rule_text(text: str) -> dict:
    """A rule from its words (``"estimated_accuracy<0.8"``, ``"input_drift"``) as the CLI takes it.

    Raises:
        UsageError: no operator and not a yes/no metric, or a threshold that is not a number.
    """
    for op in ("<=", ">=", "<", ">"):
        if op in text:
            metric, _, threshold = (part.strip() for part in text.partition(op))
            try:
                return {"metric": metric, "op": op, "threshold": float(threshold)}
            except ValueError:
                raise UsageError(f"rule {text!r}: {threshold!r} is not a number") from None
    if text.strip() == "input_drift":
        return {"metric": "input_drift", "op": ">=", "threshold": 1}
    raise UsageError(f"rule {text!r}: write METRIC<NUMBER (or >, <=, >=), e.g. estimated_accuracy<0.8; "
                     f"metrics: {', '.join(METRICS)}")


def check_webhook_url(url: str | None) -> str | None:
    """``url`` if it is an http(s) URL with a host.

    Raises:
        UsageError: another scheme or no host.
    """
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"webhook_url: {url!r} is not an http:// or https:// URL")
    return url


def check_window_hours(hours: float) -> float:
    if not 0 < hours <= 24 * 31:
        raise UsageError(f"window_hours: between 0 and {24 * 31} hours, got {hours:g}")
    return float(hours)


class ConfigStore:
    """The ``monitoring_configs`` table (migration ``m006_monitoring``), with a short-lived cache of each model's
    ``store_inputs`` for the request path."""

    def __init__(self, url: str):
        self._engine = open_engine(url)
        self._store_inputs: dict[tuple[str, str], tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str, model_name: str) -> MonitoringConfig:
        """The model's settings; the defaults when none were set."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_configs).where(_configs.c.tenant == tenant,
                                                      _configs.c.model_name == model_name)).one_or_none()
        return _config(row) if row is not None else MonitoringConfig(tenant, model_name)

    def put(self, config: MonitoringConfig) -> MonitoringConfig:
        """Replace the model's settings; returns them as stored."""
        stored = MonitoringConfig(config.tenant, config.model_name, config.store_inputs, config.window_hours,
                                  config.rules, config.webhook_url, now())
        values = {"tenant": stored.tenant, "model_name": stored.model_name, "store_inputs": int(stored.store_inputs),
                  "window_hours": stored.window_hours, "rules": {"rules": [asdict(r) for r in stored.rules]},
                  "webhook_url": stored.webhook_url, "updated_at": stored.updated_at}
        with self._engine.begin() as conn:
            conn.execute(delete(_configs).where(_configs.c.tenant == stored.tenant,
                                                _configs.c.model_name == stored.model_name))
            conn.execute(_configs.insert().values(**values))
        with self._lock:
            self._store_inputs.pop((stored.tenant, stored.model_name), None)
        return stored

    def monitored(self) -> list[MonitoringConfig]:
        """Every model's settings with a rule or stored inputs (what the alert loop judges)."""
        with self._engine.connect() as conn:
            configs = [_config(row) for row in conn.execute(select(_configs))]
        return [c for c in configs if c.rules or c.store_inputs]

    def store_inputs(self, tenant: str, model_name: str) -> bool:
        """Whether the model's inputs are stored by default; read at most every :data:`STORE_INPUTS_TTL_S`."""
        key = (tenant, model_name)
        with self._lock:
            cached = self._store_inputs.get(key)
        if cached is not None and time.monotonic() - cached[1] < STORE_INPUTS_TTL_S:
            return cached[0]
        with self._engine.connect() as conn:
            value = bool(conn.scalar(select(_configs.c.store_inputs).where(
                _configs.c.tenant == tenant, _configs.c.model_name == model_name)) or 0)
        with self._lock:
            self._store_inputs[key] = (value, time.monotonic())
        return value


def _config(row) -> MonitoringConfig:
    rules = tuple(Rule(**r) for r in (row.rules or {}).get("rules", []))
    return MonitoringConfig(row.tenant, row.model_name, bool(row.store_inputs), row.window_hours, rules,
                            row.webhook_url, row.updated_at)

