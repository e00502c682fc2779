"""Alerts: a model's rules (:mod:`tailor.monitor.config`) judged on each of its versions' monitoring reports,
recorded in the ``alerts`` table and posted as JSON to the model's webhook.

An alert fires when its rule starts to hold on a version (one open alert per version and rule) and resolves
when the rule stops holding; both are posted. A window with fewer answers than the rule's ``min_answers``
is not judged: an open alert stays open. :class:`AlertLoop` judges every model with rules every ``every_s``
seconds on a thread of the server; :class:`WebhookSender` posts on another thread, each post with a timeout
and retried with exponential backoff, its outcome recorded on the alert (``delivery``: ``pending``,
``delivered``, ``failed``, or ``none`` without a webhook). Neither thread is on the request path: a webhook
that hangs or fails delays only other posts.

The posted JSON::

    {"object": "alert", "event": "fired" | "resolved", "id": "alert-...", "tenant": "acme",
     "model": "sentiment:2", "rule": "estimated_accuracy < 0.8", "metric": "estimated_accuracy", "value": 0.71,
     "threshold": 0.8, "window_hours": 1, "fired_at": 1764500000, "resolved_at": null}
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import secrets
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, insert, select, update

from tailor.db import UtcDateTime, now, open_engine
from tailor.errors import NotFoundError
from tailor.monitor.config import ConfigStore, MonitoringConfig

log = logging.getLogger(__name__)

_metadata = MetaData()
_alerts = Table(
    "alerts", _metadata,
    Column("id", String(40), primary_key=True), Column("tenant", String(64)), Column("model_name", String(200)),
    Column("version", Integer), Column("rule", Text), Column("value", Float), Column("state", String(16)),
    Column("fired_at", UtcDateTime), Column("resolved_at", UtcDateTime), Column("delivery", String(16)),
    Column("attempts", Integer), Column("last_error", Text),
)


@dataclass(frozen=True)
class Alert:
    """One firing of a rule on a version, open (``state`` ``firing``) until the rule stops holding."""

    tenant: str
    model_name: str
    version: int
    rule: str
    value: float | None
    state: str = "firing"
    fired_at: datetime = field(default_factory=now)
    resolved_at: datetime | None = None
    delivery: str = "none"
    attempts: int = 0
    last_error: str | None = None
    id: str = field(default_factory=lambda: "alert-" + secrets.token_hex(12))

    def to_dict(self) -> dict:
        return {"id": self.id, "object": "alert", "model": f"{self.model_name}:{self.version}", "rule": self.rule,
                "value": self.value, "state": self.state, "fired_at": int(self.fired_at.timestamp()),
                "resolved_at": int(self.resolved_at.timestamp()) if self.resolved_at else None,
                "delivery": self.delivery, "attempts": self.attempts, "last_error": self.last_error}

    def payload(self, config: MonitoringConfig) -> dict:
        """The JSON posted to the webhook."""
        metric, op, threshold = self.rule.split(" ")
        return {"object": "alert", "event": "fired" if self.state == "firing" else "resolved", "id": self.id,
                "tenant": self.tenant, "model": f"{self.model_name}:{self.version}", "rule": self.rule,
                "metric": metric, "value": self.value, "threshold": float(threshold),
                "window_hours": config.window_hours, "fired_at": int(self.fired_at.timestamp()),
                "resolved_at": int(self.resolved_at.timestamp()) if self.resolved_at else None}


def _alert(row) -> Alert:
    return Alert(tenant=row.tenant, model_name=row.model_name, version=row.version, rule=row.rule, value=row.value,
                 state=row.state, fired_at=row.fired_at, resolved_at=row.resolved_at, delivery=row.delivery,
                 attempts=row.attempts, last_error=row.last_error, id=row.id)


class AlertStore:
    """The ``alerts`` table (migration ``m006_monitoring``)."""

    def __init__(self, url: str):
        self._engine = open_engine(url)

    def add(self, alert: Alert) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(_alerts).values(
                id=alert.id, tenant=alert.tenant, model_name=alert.model_name, version=alert.version,
                rule=alert.rule, value=alert.value, state=alert.state, fired_at=alert.fired_at,
                resolved_at=alert.resolved_at, delivery=alert.delivery, attempts=alert.attempts,
                last_error=alert.last_error))

    def update(self, alert: Alert) -> None:
        """Write ``alert``'s state, value and delivery fields."""
        with self._engine.begin() as conn:
            conn.execute(update(_alerts).where(_alerts.c.id == alert.id).values(
                value=alert.value, state=alert.state, resolved_at=alert.resolved_at, delivery=alert.delivery,
                attempts=alert.attempts, last_error=alert.last_error))

    def list(self, tenant: str, model_name: str, state: str | None = None, limit: int = 100) -> list[Alert]:
        """The model's alerts, newest first."""
        query = select(_alerts).where(_alerts.c.tenant == tenant, _alerts.c.model_name == model_name)
        if state is not None:
            query = query.where(_alerts.c.state == state)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(_alerts.c.fired_at.desc(), _alerts.c.id.desc()).limit(limit))
            return [_alert(row) for row in rows]

    def get(self, alert_id: str) -> Alert:
        with self._engine.connect() as conn:
            return _alert(conn.execute(select(_alerts).where(_alerts.c.id == alert_id)).one())


def metric_value(report: dict, metric: str) -> float | None:
    """The figure ``metric`` names (see :data:`tailor.monitor.config.METRICS`) in a monitoring report."""
    totals, drift = report["totals"], report.get("drift") or {}
    if metric == "input_drift":
        return 1.0 if drift.get("verdict") == "drift" else 0.0
    if metric == "error_rate":
        requests = totals["requests"] + totals.get("errors", 0) + totals.get("client_errors", 0)
        return totals.get("errors", 0) / requests if requests else None
    return {"estimated_accuracy": report["estimated"]["accuracy"],
            "estimated_macro_f1": report["estimated"]["macro_f1"],
            "measured_accuracy": report["measured"]["accuracy"],
            "drift_auc": (drift.get("embedding") or {}).get("domain_auc"),
            "label_distance": report["labels"]["distance"],
            "latency_p95_ms": totals["latency_ms"]["p95"],
            "answers": float(totals["answers"])}[metric]


def judge(config: MonitoringConfig, version: int, report: dict, open_alerts: dict[str, Alert]
          ) -> tuple[list[Alert], list[Alert]]:
    """``(alerts that fire, alerts that resolve)`` for one version's ``report`` under the model's rules, given
    its open alerts by rule (``Rule.key()``)."""
    fired, resolved = [], []
    answers = report["totals"]["answers"]
    for rule in config.rules:
        if answers < rule.min_answers:
            continue
        value = metric_value(report, rule.metric)
        key, holds = rule.key(), rule.holds(value)
        if holds and key not in open_alerts:
            fired.append(Alert(config.tenant, config.model_name, version, key, _round(value),
                               delivery="pending" if config.webhook_url else "none"))
        elif not holds and key in open_alerts:
            resolved.append(replace(open_alerts[key], state="resolved", resolved_at=now(), value=_round(value),
                                    delivery="pending" if config.webhook_url else "none", attempts=0,
                                    last_error=None))
    return fired, resolved


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


class WebhookSender:
    """Posts alerts to webhooks on its own thread, ``attempts`` times at most, waiting ``backoff_s`` x 2^n
    between tries; each outcome is written to the alert (``delivered`` or, after the last try, ``failed``
    with the error). Posts wait in a bounded queue: beyond ``max_queue`` an alert is marked ``failed``
    (queue full) rather than held."""

    def __init__(self, alerts: AlertStore, *, timeout_s: float = 5.0, attempts: int = 5, backoff_s: float = 1.0,
                 max_queue: int = 1000):
        self.alerts, self.timeout_s, self.attempts, self.backoff_s = alerts, timeout_s, attempts, backoff_s
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, alert: Alert, config: MonitoringConfig) -> None:
        """Queue ``alert``'s post to the model's webhook (never blocks)."""
        try:
            self._queue.put_nowait((alert, config))
        except queue.Full:
            self.alerts.update(replace(alert, delivery="failed", last_error="webhook queue full"))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tailor-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=self.timeout_s + 1)
            self._thread = None

    def join(self) -> None:
        """Wait until every queued post is done (tests, and the CLI's one-off check)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None or self._stop.is_set():
                    return
                self._deliver(*item)
            except Exception:  # noqa: BLE001 - one bad alert must not stop the others' posts
                log.exception("posting an alert failed")
            finally:
                self._queue.task_done()

    def _deliver(self, alert: Alert, config: MonitoringConfig) -> None:
        body = json.dumps(alert.payload(config)).encode()
        error = None
        for attempt in range(1, self.attempts + 1):
            try:
                request = urllib.request.Request(config.webhook_url, data=body, method="POST",
                                                 headers={"Content-Type": "application/json",
                                                          "User-Agent": "tailor-alerts"})
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.alerts.update(replace(alert, delivery="delivered", attempts=attempt, last_error=None))
                return
            except Exception as exc:  # noqa: BLE001 - any failure (HTTP error, timeout, refused) is retried
                error = f"{type(exc).__name__}: {exc}"
                self.alerts.update(replace(alert, delivery="pending", attempts=attempt, last_error=error))
                if attempt < self.attempts and self._stop.wait(self.backoff_s * 2 ** (attempt - 1)):
                    break
        self.alerts.update(replace(alert, delivery="failed", attempts=attempt, last_error=error))


ReportFor = Callable[[MonitoringConfig], dict[int, dict]]


def window_reports(records, registry_store, config: MonitoringConfig, report_of: Callable) -> dict[int, dict]:
    """One report per version of the config's model that answered in its window (``report_of(version, hours,
    bucket_minutes)`` makes it, over the window in one bucket): what the alert loop judges. Versions deleted
    since are left out."""
    reports = {}
    since = now() - timedelta(hours=config.window_hours)
    for number in records.versions(config.tenant, config.model_name, since):
        try:
            version = registry_store.resolve(config.tenant, f"{config.model_name}:{number}")
        except NotFoundError:
            continue
        reports[number] = report_of(version, config.window_hours, config.window_hours * 60)
    return reports


class AlertLoop:
    """Judges every model with rules or stored inputs (:meth:`check`) every ``every_s`` seconds on its own
    thread, keeping each version's latest drift figures (:attr:`latest`) for the Prometheus gauges.

    Args:
        configs / alerts: the stores.
        sender: posts the alerts that fire or resolve.
        reports_for: a model's reports over its window, one per version that answered in it.
    """

    def __init__(self, configs: ConfigStore, alerts: AlertStore, sender: WebhookSender, reports_for: ReportFor,
                 every_s: float = 60.0):
        self.configs, self.alerts, self.sender, self.reports_for = configs, alerts, sender, reports_for
        self.every_s = every_s
        # the latest judged figures per (tenant, model, version), for /metrics: drift is too costly to compute
        # at every scrape, so the gauges show what the loop found at most every_s seconds ago
        self.latest: dict[tuple[str, str, int], dict[str, float | None]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, config: MonitoringConfig) -> list[Alert]:
        """Judge one model now; returns the alerts that fired or resolved (their posts queued)."""
        open_alerts: dict[int, dict[str, Alert]] = {}
        for alert in self.alerts.list(config.tenant, config.model_name, state="firing", limit=10_000):
            open_alerts.setdefault(alert.version, {})[alert.rule] = alert
        changed = []
        for version, report in sorted(self.reports_for(config).items()):
            self.latest[(config.tenant, config.model_name, version)] = {
                metric: metric_value(report, metric) for metric in ("input_drift", "drift_auc")}
            fired, resolved = judge(config, version, report, open_alerts.get(version, {}))
            for alert in fired:
                self.alerts.add(alert)
            for alert in resolved:
                self.alerts.update(alert)
            changed += fired + resolved
        if config.webhook_url:
            for alert in changed:
                self.sender.send(alert, config)
        return changed

    def check_all(self) -> list[Alert]:
        """Judge every model with rules or stored inputs (the latter for the drift gauges)."""
        changed = []
        for config in self.configs.monitored():
            try:
                changed += self.check(config)
            except Exception:  # noqa: BLE001 - one model's failure must not stop the others' checks
                log.exception("checking the alert rules of %s/%s failed", config.tenant, config.model_name)
        return changed

    def start(self) -> None:
        self.sender.start()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tailor-alerts", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.sender.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.check_all()

