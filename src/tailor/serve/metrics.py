"""Prometheus metrics of the API process. The names (see README, "Metrics"):

==========================================  =========  =====================================================
``tailor_http_requests_total``              counter    requests by ``method``, ``route`` and ``status``
``tailor_http_request_duration_seconds``    histogram  latency by ``method`` and ``route``
``tailor_model_loads_total``                counter    models loaded for inference, by ``kind``
``tailor_model_load_seconds``               histogram  cold-load time by ``kind``
``tailor_models_loaded``                    gauge      models ready in the inference cache
``tailor_models``                           gauge      models in the cache by ``kind`` and lifecycle ``state``
``tailor_model_evictions_total``            counter    models dropped by the cache's LRU rule, by ``kind``
``tailor_model_load_errors_total``          counter    failed model loads, by ``kind``
``tailor_batch_texts``                      histogram  texts per classification micro-batch
``tailor_batch_requests``                   histogram  requests sharing one micro-batch
``tailor_batch_seconds``                    histogram  compute time of a micro-batch
``tailor_batch_queue_texts``                gauge      texts waiting for the math thread
``tailor_shadow_requests_total``            counter    shadow copies of requests by ``outcome``: done, dropped
                                                       (too many pending), failed
``tailor_jobs``                             gauge      fine-tuning jobs by ``status`` (all tenants)
``tailor_workers_alive``                    gauge      job worker processes alive
``tailor_workers_limit``                    gauge      job worker processes configured (jobs run at once)
``tailor_prediction_records_total``         counter    prediction records by ``outcome``: written, dropped
                                                       (a backlog past its cap while writes failed), pruned
``tailor_prediction_records_pending``       gauge      records waiting to be written
``tailor_model_answers_1h``                 gauge      a classifier version's answers in the last hour, by
                                                       ``tenant``, ``model``, ``version``
``tailor_model_estimated_accuracy_1h``      gauge      its accuracy estimated without labels over that hour
``tailor_model_label_distance_1h``          gauge      total variation distance of its served label mix from
                                                       the training one over that hour
``tailor_model_input_drift``                gauge      1 when a version's input drift verdict is drift (models
                                                       with alert rules or stored inputs, judged every minute)
``tailor_model_drift_auc``                  gauge      the drift domain classifier's AUC (0.5: like training)
``tailor_quota_refusals_total``             counter    requests refused by a quota or rate limit, by ``limit``
                                                       (rpm, key_rpm, jobs, storage_mb, train_minutes) and
                                                       ``tenant`` (see :mod:`tailor.serve.limits`)
``tailor_quota_limit``                      gauge      each tenant's limit by ``tenant`` and ``limit`` (0: none)
``tailor_quota_use``                        gauge      its use now: rate tokens spent, jobs queued or running,
                                                       MiB stored, training minutes today (UTC)
==========================================  =========  =====================================================

The route label is the route's template (``/v1/files/{file_id}``), never the raw path, so ids do not
multiply the series.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.types import ASGIApp, Receive, Scope, Send


class ApiMetrics:
    """One app's metrics in their own registry (so several apps in one process do not collide)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("tailor_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("tailor_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.model_loads = Counter("tailor_model_loads", "models loaded for inference", ["kind"],
                                   registry=self.registry)
        self.model_load_seconds = Histogram("tailor_model_load_seconds", "cold-load time of a model", ["kind"],
                                            registry=self.registry, buckets=(.1, .25, .5, 1, 2, 5, 10, 30, 60))
        self.evictions = Counter("tailor_model_evictions", "models dropped by the cache's LRU rule", ["kind"],
                                 registry=self.registry)
        self.load_errors = Counter("tailor_model_load_errors", "failed model loads", ["kind"], registry=self.registry)
        self.batch_texts = Histogram("tailor_batch_texts", "texts per micro-batch", registry=self.registry,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.batch_requests = Histogram("tailor_batch_requests", "requests sharing a micro-batch",
                                        registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64))
        self.batch_seconds = Histogram("tailor_batch_seconds", "compute time of a micro-batch", registry=self.registry,
                                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1))
        self.shadow = Counter("tailor_shadow_requests", "shadow copies of requests by outcome", ["outcome"],
                              registry=self.registry)

    def record_shadow(self, outcome: str) -> None:
        self.shadow.labels(outcome).inc()

    def record_load(self, kind: str, seconds: float) -> None:
        self.model_loads.labels(kind).inc()
        self.model_load_seconds.labels(kind).observe(seconds)

    def record_eviction(self, kind: str) -> None:
        self.evictions.labels(kind).inc()

    def record_load_error(self, kind: str) -> None:
        self.load_errors.labels(kind).inc()

    def record_batch(self, texts: int, requests: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def add_state(self, services) -> None:
        """Report the jobs, workers and cache of ``services`` at scrape time."""
        self.registry.register(_StateCollector(services))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    FIGURES_TTL_S = 30.0  # the per-version figures read the last hour's records: at most once per this

    def __init__(self, services):
        self.services = services
        self._figures: tuple[float, list[dict]] = (float("-inf"), [])

    def _recent_figures(self) -> list[dict]:
        from tailor.monitor.report import recent_figures

        taken, figures = self._figures
        if time.monotonic() - taken > self.FIGURES_TTL_S:
            self.services.recorder.flush()
            figures = recent_figures(self.services.predictions, self.services.registry.store)
            self._figures = (time.monotonic(), figures)
        return figures

    def collect(self):
        jobs = GaugeMetricFamily("tailor_jobs", "fine-tuning jobs by status", labels=["status"])
        for status, count in sorted(self.services.jobs.count_by_status().items()):
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily("tailor_models_loaded", "models ready in the inference cache",
                                value=len(self.services.models))
        states = GaugeMetricFamily("tailor_models", "models in the cache by kind and lifecycle state",
                                   labels=["kind", "state"])
        for (kind, state), count in sorted(self.services.models.counts().items()):
            states.add_metric([kind, state], count)
        yield states
        yield GaugeMetricFamily("tailor_batch_queue_texts", "texts waiting for the math thread",
                                value=self.services.batcher.pending)
        recorder = self.services.recorder
        if recorder is not None:
            records = CounterMetricFamily("tailor_prediction_records", "prediction records by outcome",
                                          labels=["outcome"])
            for outcome in ("written", "dropped", "pruned"):
                records.add_metric([outcome], getattr(recorder, outcome))
            yield records
            yield GaugeMetricFamily("tailor_prediction_records_pending", "prediction records waiting to be written",
                                    value=recorder.pending)
            families = {
                "answers": GaugeMetricFamily("tailor_model_answers_1h", "a classifier version's answers in the last "
                                             "hour", labels=["tenant", "model", "version"]),
                "estimated_accuracy": GaugeMetricFamily("tailor_model_estimated_accuracy_1h", "accuracy estimated "
                                                        "without labels over the last hour",
                                                        labels=["tenant", "model", "version"]),
                "label_distance": GaugeMetricFamily("tailor_model_label_distance_1h", "served label mix's distance "
                                                    "from training over the last hour",
                                                    labels=["tenant", "model", "version"])}
            for row in self._recent_figures():
                for key, family in families.items():
                    if row[key] is not None:
                        family.add_metric([row["tenant"], row["model"], str(row["version"])], row[key])
            yield from families.values()
            drift = GaugeMetricFamily("tailor_model_input_drift", "1 when the version's input drift verdict is drift "
                                      "(judged every TAILOR_ALERT_EVERY_S for models with rules or stored inputs)",
                                      labels=["tenant", "model", "version"])
            auc = GaugeMetricFamily("tailor_model_drift_auc", "how surely served texts are told from training "
                                    "texts (0.5 alike, 1 wholly unlike)", labels=["tenant", "model", "version"])
            for (tenant, model, version), figures in sorted(self.services.alert_loop.latest.items()):
                drift.add_metric([tenant, model, str(version)], figures["input_drift"])
                if figures["drift_auc"] is not None:
                    auc.add_metric([tenant, model, str(version)], figures["drift_auc"])
            yield drift
            yield auc
        executor = self.services.executor
        if executor is not None:
            status = executor.status()
            yield GaugeMetricFamily("tailor_workers_alive", "job worker processes alive", value=status["alive"])
            yield GaugeMetricFamily("tailor_workers_limit", "job worker processes configured", value=status["limit"])


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def send_with_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
