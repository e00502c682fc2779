"""``POST /v1/feedback`` (the true label of classification answers, ratings and corrections of completions) and
``GET /v1/models/{model}/monitoring`` (a classifier version's report over a window, see
:mod:`tailor.monitor.report`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from tailor.errors import UsageError
from tailor.monitor.feedback import give_feedback
from tailor.monitor.report import check_window, version_report
from tailor.serve.deps import Reader, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.recording import written_records
from tailor.serve.routes.common import errors
from tailor.serve.models import resolve_model
from tailor.serve.schemas import FeedbackItem, FeedbackList, MonitoringReport

router = APIRouter(prefix="/v1", tags=["monitoring"])
Items = Annotated[FeedbackItem | list[FeedbackItem], Body(description="one item, or a list of up to 1,000")]


@router.post("/feedback", response_model=FeedbackList, response_model_exclude_none=True, responses=errors(404),
             summary="Tailor: feedback on answers (a classification's true label; a completion's rating or correction)")
def post_feedback(body: Items, principal: Reader, services: ServicesDep) -> dict:
    """Checked as a whole before anything is written: an unknown id (or another tenant's) is a 404 and a label
    the answering version does not know a 400, each naming the item (``feedback[3]``). Feedback on an answer
    replaces earlier feedback on it. The key needs the ``read`` scope, as the inference that made the answer."""
    items = [body] if isinstance(body, FeedbackItem) else body
    if not 1 <= len(items) <= 1000:
        raise ApiError(400, f"feedback: 1 to 1,000 items per request, got {len(items)}", param="body")
    given = give_feedback(written_records(services), services.feedback, principal.tenant,
                          [item.model_dump() for item in items])
    return {"object": "list", "data": [f.to_dict() for f in given]}


@router.get("/models/{model_id}/monitoring", response_model=MonitoringReport, responses=errors(404),
            summary="Tailor: how a classifier version is doing (traffic, latency, label mix, estimated accuracy)")
def get_monitoring(model_id: str, principal: Reader, services: ServicesDep,
                   hours: Annotated[float, Query(gt=0, le=24 * 366, description="the window: the last this many "
                                                                              "hours")] = 24.0,
                   bucket_minutes: Annotated[float, Query(gt=0, description="the width of each time bucket")] = 60.0
                   ) -> dict:
    """The report for the version ``model_id`` resolves to (``name`` is its latest version, ``name@prod`` the
    alias's), over the last ``hours``; a window without traffic gives the same shape with zero counts."""
    try:
        check_window(hours, bucket_minutes)
    except UsageError as exc:
        raise ApiError(400, str(exc), param="bucket_minutes") from None
    named = resolve_model(services.registry, principal.tenant, model_id)
    if named.version is None or named.task != "classify":
        raise ApiError(400, f"{model_id!r} is not a fine-tuned classifier; monitoring reports cover those",
                       param="model_id")
    return version_report(written_records(services), services.feedback, named.version, hours, bucket_minutes)
