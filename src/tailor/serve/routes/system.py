"""``/health``, ``/metrics`` and ``/`` (a redirect to the web console): no API key needed, no tenant data shown."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

import tailor
from tailor.serve.deps import ServicesDep
from tailor.serve.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, summary="Liveness: database and job workers")
def health(services: ServicesDep) -> dict:
    database = "ok" if services.jobs.ping() else "error"
    workers = services.executor.status() if services.executor else None
    healthy = database == "ok" and (workers is None or workers["alive"] == workers["limit"])
    return {"status": "ok" if healthy else "degraded", "version": tailor.__version__, "database": database,
            "workers": workers, "models_loaded": len(services.models)}


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (see the README for the names)",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """A browser pointed at the server lands on the web console (the API's docs are at ``/docs``)."""
    return RedirectResponse("/console")
