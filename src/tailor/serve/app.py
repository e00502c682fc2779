"""Assemble the API: services, routers, error handlers, metrics, and offline interactive docs.

``create_app(settings, executor)`` builds an app over ``settings``' database and storage root; the
executor (the job workers) starts and stops with the app. ``tailor serve`` runs it under uvicorn.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

import tailor
from tailor.data.files import FileStore
from tailor.jobs.executor import Executor
from tailor.jobs.store import JobStore
from tailor.models.genai import load_fast_chat_model
from tailor.models.runtimes import onnx_cache_dir
from tailor.monitor.feedback import FeedbackStore
from tailor.monitor.alerts import AlertLoop, AlertStore, WebhookSender
from tailor.monitor.config import ConfigStore
from tailor.monitor.recorder import Recorder
from tailor.monitor.records import PredictionStore
from tailor.registry.service import open_registry
from tailor.registry.gate import GateStore
from tailor.security.keys import TenantStore
from tailor.security.quotas import QuotaStore
from tailor.security.sessions import SessionStore
from tailor.runtime import pin_current_thread, usable_core_ids
from tailor.serve.batching import MicroBatcher, split_cores
from tailor.serve.console import install_console
from tailor.serve.deps import Services, reject_unknown_query_parameters
from tailor.serve.errors import install_error_handlers
from tailor.serve.limits import ServerLimits
from tailor.serve.metrics import ApiMetrics, MetricsMiddleware
from tailor.serve.models import ModelCache
from tailor.serve.monitoring import reports_for
from tailor.serve.release import ShadowRunner
from tailor.serve.routes import compare, completions, files, inference, jobs, models, monitoring, system
from tailor.serve.routes import card, export, keys, usage
from tailor.serve.routes import quotas
from tailor.serve.routes import evaluations, gate
from tailor.serve.routes import audit as audit_api
from tailor.security.audit import AuditLog
from tailor.security.hardening import require_safe_settings
from tailor.serve.audit import AuditMiddleware, TrustedProxies
from tailor.settings import Settings, get_settings

DESCRIPTION = """Tailor fine-tunes and serves models for many tenants. Authenticate with
`Authorization: Bearer <key>` (keys come from `tailor tenants create` and `tailor keys create`).
Files, fine-tuning jobs, models, embeddings and (chat) completions follow OpenAI's API, so the official
`openai` client works with `base_url` set to this server's `/v1`; `/v1/classifications` is Tailor's own."""


def build_services(settings: Settings, executor: Executor | None = None) -> Services:
    """The stores and caches of one app, over ``settings``' database and storage root."""
    url = settings.registry_url
    metrics = ApiMetrics()
    registry = open_registry(settings)
    _, math_cores = split_cores(usable_core_ids())
    models = ModelCache(registry, settings.model_cache_size, head_size=settings.adapter_cache_size,
                        cache_dir=onnx_cache_dir(settings.home), cores=math_cores, on_load=metrics.record_load,
                        on_evict=metrics.record_eviction, on_error=metrics.record_load_error,
                        chat_loader=lambda source, progress: load_fast_chat_model(source, settings=settings,
                                                                                 progress=progress))
    batcher = MicroBatcher(window_s=settings.batch_window_ms / 1000, max_batch=settings.batch_max_texts,
                           max_pending=settings.batch_queue_texts, cores=math_cores, on_batch=metrics.record_batch)
    tenants, predictions = TenantStore(url), PredictionStore(url, settings)

    def retention(tenant: str) -> tuple[int, int]:
        days, rows = tenants.retention(tenant)
        return days or settings.retention_days, rows or settings.retention_rows

    quotas = QuotaStore(url)
    recorder = (Recorder(predictions, retention, flush_s=settings.record_flush_s, redacting=quotas.redacting_tenants)
                if settings.record_predictions else None)
    alerts, configs = AlertStore(url), ConfigStore(url)
    sender = WebhookSender(alerts, timeout_s=settings.webhook_timeout_s, attempts=settings.webhook_attempts,
                           backoff_s=settings.webhook_backoff_s)
    alert_loop = AlertLoop(configs, alerts, sender, lambda config: reports_for(services, config),
                           every_s=settings.alert_every_s)
    sessions = SessionStore(url, tenants, timedelta(hours=settings.console_session_hours))
    services = Services(settings=settings, tenants=tenants, sessions=sessions,
                        files=FileStore(url, settings.files_dir, settings), jobs=JobStore(url, settings),
                        registry=registry,
                        models=models, batcher=batcher, executor=executor, metrics=metrics, predictions=predictions,
                        feedback=FeedbackStore(url, settings),
                        recorder=recorder, monitor_configs=configs, alerts=alerts, alert_loop=alert_loop,
                        shadow=ShadowRunner(on_outcome=metrics.record_shadow), audit=AuditLog(url, settings),
                        gates=GateStore(url), limits=ServerLimits(quotas, settings, metrics.registry))
    metrics.add_state(services)
    metrics.registry.register(services.limits.collector(services))
    return services


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> FastAPI:
    """The API over ``settings`` (read from the environment by default); ``executor`` runs with it."""
    settings = settings or get_settings()
    require_safe_settings(settings)
    services = build_services(settings, executor)
    services.files.check_keys()  # a wrong master key refuses to start, before anything is read or written

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        services.files.sweep_incoming()
        pin_current_thread(split_cores(usable_core_ids())[0])  # the event loop's thread
        services.batcher.start()
        if services.recorder is not None:
            services.recorder.start()
        services.alert_loop.start()
        if executor is not None:
            executor.start()
        try:
            yield
        finally:
            services.shadow.cancel()
            services.batcher.stop()
            if services.recorder is not None:
                services.recorder.stop()
            services.alert_loop.stop()
            if executor is not None:
                executor.stop()

    app = FastAPI(title="Tailor", version=tailor.__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, dependencies=[Depends(reject_unknown_query_parameters)])
    app.state.services = services
    install_error_handlers(app)
    for router in (files.router, jobs.router, compare.router, models.router, inference.router, completions.router,
                   monitoring.router, system.router):
        app.include_router(router)
    for router in (card.router, export.router, keys.router, usage.router):
        app.include_router(router)
    app.include_router(quotas.router)
    app.include_router(evaluations.router)
    app.include_router(gate.router)
    app.include_router(audit_api.router)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    app.add_middleware(AuditMiddleware, audit=services.audit, proxies=TrustedProxies(settings.forwarded_allow_ips))
    if settings.cors_origins:  # no CORS headers at all unless origins are named
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Retry-After"])
    _add_offline_docs(app)
    install_console(app)
    return app


def _add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from files shipped in a package, so the docs work without a network."""
    import fastapi_offline

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-static", StaticFiles(directory=static), name="docs-static")

    # the endpoint reads the app from the request: a closure over ``app`` would keep every app a process builds
    # alive in FastAPI's module-level cache of endpoint callables (tests build hundreds, each with its models)
    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        return get_swagger_ui_html(openapi_url=request.app.openapi_url, title="Tailor API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon.png")
