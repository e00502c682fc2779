"""Console page: how each fine-tuned model is doing in production.

``/console/monitoring`` lists the tenant's models; ``/console/monitoring/{model}`` (any id the API takes:
``name``, ``name:N``, ``name@alias``) shows the version's monitoring report (``GET /v1/models/{id}/monitoring``)
as headline figures and charts over time, its drift tests, its alerts and its monitoring settings, with a
form for them (``PUT .../monitoring/config``, the ``deploy`` scope) and a button that judges the rules now.
The page's script redraws the charts from the same report and fetches it again every few seconds.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from tailor.monitor.config import METRICS, OPS
from tailor.serve.console.render import SignedIn, language_param
from tailor.serve.routes import models as models_api
from tailor.serve.routes import monitoring as monitoring_api

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])
WINDOWS = (1, 6, 24, 168, 720)  # the windows offered, in hours
BUCKETS_PER_WINDOW = 24


@router.get("/monitoring")
async def monitoring_index(page: SignedIn) -> Response:
    """The tenant's fine-tuned models, each a link to its monitoring page."""
    models = await page.call(models_api.list_models, page.principal, page.services)
    tuned = [m for m in models["data"] if m["version"] is not None]
    return page.render("monitoring_index.html", title=page.t("monitoring.title"), active="monitoring",
                       models=tuned)


@router.get("/monitoring/{model_id}")
async def monitoring_model(page: SignedIn, model_id: str,
                           hours: Annotated[float, Query(gt=0, le=24 * 366, description="the window")] = 24.0,
                           bucket_minutes: Annotated[float | None, Query(gt=0)] = None) -> Response:
    """One model's report over the last ``hours`` (in :data:`BUCKETS_PER_WINDOW` buckets unless
    ``bucket_minutes`` is given), its alerts and its settings. Another tenant's model is a 404 page."""
    bucket = bucket_minutes or hours * 60 / BUCKETS_PER_WINDOW
    report = await page.call(monitoring_api.get_monitoring, model_id, page.principal, page.services,
                             hours=hours, bucket_minutes=bucket)
    config = await page.call(monitoring_api.get_monitoring_config, model_id, page.principal, page.services)
    alerts = await page.call(monitoring_api.list_alerts, model_id, page.principal, page.services, state=None,
                             limit=50)
    chat = report.get("task") == "chat"
    totals = report["totals"]
    quiet = totals["requests"] == 0 and totals.get("errors", 0) == 0 and totals.get("client_errors", 0) == 0
    return page.render("monitoring.html", title=page.t("monitoring.model_title", model=report["model"]),
                       active="monitoring", model_id=model_id, report=report, chat=chat, quiet=quiet,
                       config=config, alerts=alerts["data"], hours=hours, windows=_windows(hours),
                       bucket_minutes=bucket, metrics=list(METRICS), ops=list(OPS),
                       can_deploy=page.allows("deploy"))


def _windows(hours: float) -> list[float]:
    return sorted(set(WINDOWS) | {hours})
