"""``POST /v1/feedback`` (the true label of classification answers, ratings and corrections of completions;
``DELETE /v1/feedback/{answer_id}`` takes it back),
``GET /v1/models/{model}/monitoring`` (a classifier version's report over a window, see
:mod:`tailor.monitor.report`), a model's monitoring settings (``.../monitoring/config``: store inputs, alert
rules, webhook), its alerts (``.../alerts``), and the review queue with labels coming back in bulk
(``.../review_queue``, ``POST /v1/feedback/import``)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from tailor.errors import DataError, NotFoundError, UsageError
from tailor.monitor.config import MonitoringConfig, check_webhook_url, check_window_hours, parse_rules
from tailor.monitor.feedback import give_feedback
from tailor.monitor.report import chat_version_report, check_window
from tailor.monitor.review import export, read_labels
from tailor.serve.deps import Deployer, Reader, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.monitoring import queue_of, report_of
from tailor.serve.recording import written_records
from tailor.serve.routes.common import errors
from tailor.serve.models import resolve_model
from tailor.serve.uploads import receive_upload
from tailor.serve.schemas import (
    AlertList, ChatMonitoringReport, Deleted, FeedbackImport, FeedbackItem, FeedbackList, MonitoringConfigObject, MonitoringConfigSet, MonitoringReport,
)

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


@router.delete("/feedback/{answer_id}", response_model=Deleted, responses=errors(404),
               summary="Tailor: take back the feedback on an answer (undo a label)")
def delete_feedback(answer_id: str, principal: Reader, services: ServicesDep) -> dict:
    """Remove the tenant's feedback on the answer ``answer_id`` (a ``pred-...`` or completion id), as if
    none had been given: the answer goes back into the review queue and out of the next retrain. The key needs
    the ``read`` scope, as giving it did.

    Raises:
        NotFoundError: the tenant has no feedback on that answer (another tenant's answer included).
    """
    if not services.feedback.remove(principal.tenant, answer_id):
        raise NotFoundError(f"no feedback on answer {answer_id!r}")
    return {"id": answer_id, "object": "feedback", "deleted": True}


@router.get("/models/{model_id}/monitoring", response_model=MonitoringReport | ChatMonitoringReport,
            responses=errors(404), summary="Tailor: how a model version is doing (traffic, latency, label mix, "
                                           "estimated accuracy, drift; for chat: tokens, refusals, ratings)")
def get_monitoring(model_id: str, principal: Reader, services: ServicesDep,
                   hours: Annotated[float, Query(gt=0, le=24 * 366, description="the window: the last this many "
                                                                              "hours")] = 24.0,
                   bucket_minutes: Annotated[float, Query(gt=0, description="the width of each time bucket")] = 60.0
                   ) -> dict:
    """The report for the version ``model_id`` resolves to (``name`` is its latest version, ``name@prod`` the
    alias's), over the last ``hours``; a window without traffic gives the same shape with zero counts. A chat
    version's report has its own shape (``"task": "chat"``: tokens, empty answers, refusals, ratings)."""
    try:
        check_window(hours, bucket_minutes)
    except UsageError as exc:
        raise ApiError(400, str(exc), param="bucket_minutes") from None
    named = resolve_model(services.registry, principal.tenant, model_id)
    if named.version is None:
        raise ApiError(400, f"{model_id!r} is a base model; monitoring reports cover fine-tuned versions",
                       param="model_id")
    if named.task == "chat":
        return chat_version_report(written_records(services), services.feedback, named.version, hours,
                                   bucket_minutes)
    return report_of(services, named.version, hours, bucket_minutes)


def _registered_model(services, tenant: str, model_id: str):
    """The tenant's registered model ``model_id`` names (``name``, or a version or alias of it).

    Raises:
        NotFoundError: no such model for this tenant.
    """
    from tailor.registry.refs import parse_ref

    try:
        name = parse_ref(model_id).name
    except UsageError:
        raise NotFoundError(f"model {model_id!r} not found") from None
    return services.registry.store.get_model(tenant, name)


@router.get("/models/{model_id}/monitoring/config", response_model=MonitoringConfigObject, responses=errors(404),
            summary="Tailor: a model's monitoring settings (store inputs, alert rules, webhook)")
def get_monitoring_config(model_id: str, principal: Reader, services: ServicesDep) -> dict:
    """The settings every version of the model shares; the defaults (nothing stored, no rules) until set."""
    model = _registered_model(services, principal.tenant, model_id)
    return services.monitor_configs.get(principal.tenant, model.name).to_dict()


@router.put("/models/{model_id}/monitoring/config", response_model=MonitoringConfigObject,
            responses=errors(400, 404), summary="Tailor: set a model's monitoring settings")
def put_monitoring_config(model_id: str, body: MonitoringConfigSet, principal: Deployer,
                          services: ServicesDep) -> dict:
    """Replace the model's settings. ``store_inputs: true`` keeps the input of every answer whose request
    does not say ``"store"`` (read by the servers within 5 seconds); rules are judged every minute (the
    server's ``TAILOR_ALERT_EVERY_S``) on each version's report over the last ``window_hours``, and each
    alert that fires or resolves is posted to ``webhook_url``."""
    model = _registered_model(services, principal.tenant, model_id)
    try:
        rules = parse_rules(body.rules)
        config = MonitoringConfig(principal.tenant, model.name, body.store_inputs,
                                  check_window_hours(body.window_hours), rules, check_webhook_url(body.webhook_url))
    except UsageError as exc:
        raise ApiError(400, str(exc), param=str(exc).split(":")[0]) from None
    if rules and _latest_task(services, principal.tenant, model.name) != "classify":
        raise ApiError(400, "rules: alert rules judge classifier reports; this model is not a classifier",
                       param="rules")
    return services.monitor_configs.put(config).to_dict()


def _latest_task(services, tenant: str, name: str) -> str | None:
    try:
        return services.registry.store.resolve(tenant, name).task
    except NotFoundError:
        return None


@router.get("/models/{model_id}/alerts", response_model=AlertList, responses=errors(404),
            summary="Tailor: a model's alerts, newest first")
def list_alerts(model_id: str, principal: Reader, services: ServicesDep,
                state: Annotated[Literal["firing", "resolved"] | None, Query(description="only these")] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    model = _registered_model(services, principal.tenant, model_id)
    return {"object": "list",
            "data": [a.to_dict() for a in services.alerts.list(principal.tenant, model.name, state, limit)]}


@router.post("/models/{model_id}/alerts/check", response_model=AlertList, responses=errors(404),
             summary="Tailor: judge a model's alert rules now")
def check_alerts(model_id: str, principal: Deployer, services: ServicesDep) -> dict:
    """Judge the rules now instead of at the next minute; returns the alerts that fired or resolved (their
    webhook posts are queued, not awaited)."""
    model = _registered_model(services, principal.tenant, model_id)
    config = services.monitor_configs.get(principal.tenant, model.name)
    return {"object": "list", "data": [a.to_dict() for a in services.alert_loop.check(config)]}


@router.get("/models/{model_id}/review_queue", response_model=None, responses=errors(400, 404),
            summary="Tailor: the stored answers worth labelling first (active learning), or their export")
def get_review_queue(model_id: str, principal: Reader, services: ServicesDep,
                     limit: Annotated[int, Query(ge=1, le=1000, description="most answers")] = 50,
                     hours: Annotated[float, Query(gt=0, le=24 * 366, description="answers of the last this many "
                                                                                  "hours")] = 24 * 7,
                     format: Annotated[Literal["json", "csv", "jsonl", "label_studio"],
                                       Query(description="json (the API's list), csv or jsonl with an empty "
                                                         "true_label column, or Label Studio's import JSON")] = "json"):
    """The version's stored answers without feedback, the most useful to label first: uncertain ones, spread
    over the regions of input space farthest from the training texts, near-duplicates removed (see
    :mod:`tailor.monitor.review`). Label them and send them back through ``POST /v1/feedback`` or
    ``POST /v1/feedback/import``. The JSON list also counts the labels a retrain with ``feedback`` would
    train on (``feedback_labels.total``: stored texts of the model with a feedback label, one per text) and
    how many of them were given since this version was registered (``since_version``)."""
    named = resolve_model(services.registry, principal.tenant, model_id)
    if named.version is None or named.task != "classify":
        raise ApiError(400, f"{model_id!r} is not a fine-tuned classifier; the review queue covers those",
                       param="model_id")
    items = queue_of(services, named.version, limit, hours)
    if format == "json":
        from tailor.train.retrain import feedback_rows

        version = named.version
        counts = {"total": len(feedback_rows(services.feedback, principal.tenant, version.name)),
                  "since_version": len(feedback_rows(services.feedback, principal.tenant, version.name,
                                                     since=version.created_at))}
        return {"object": "list", "model": version.ref, "data": items, "feedback_labels": counts}
    body, media_type = export(items, format, named.version.ref)
    filename = f"review-{named.version.name}-{named.version.version}." + {"label_studio": "json"}.get(format, format)
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/models/{model_id}/corrections", response_class=Response, responses=errors(400, 404),
            summary="Tailor: corrected chat answers as chat fine-tuning rows (JSONL)")
def get_corrections(model_id: str, principal: Reader, services: ServicesDep) -> Response:
    """Every correction given (``POST /v1/feedback`` with ``completion_id`` and ``correction``) on the chat
    model's stored completions, as JSONL rows of OpenAI's chat fine-tuning format: the conversation as it was
    sent, the correction as the assistant's answer. Upload it as a training file for the next LoRA job."""
    named = resolve_model(services.registry, principal.tenant, model_id)
    if named.version is None or named.task != "chat":
        raise ApiError(400, f"{model_id!r} is not a fine-tuned chat model; corrections are kept for those",
                       param="model_id")
    written_records(services)
    rows = services.feedback.corrections(principal.tenant, named.version.name)
    return Response("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    media_type="application/x-ndjson", headers={
                        "Content-Disposition": f'attachment; filename="corrections-{named.version.name}.jsonl"'})


_IMPORT_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "CSV or JSONL with prediction_id and true_label (or label), or a "
                                           "Label Studio export JSON of tasks from the review queue"}}}}}}}


@router.post("/feedback/import", response_model=FeedbackImport, responses=errors(400, 404, 413, 415),
             openapi_extra=_IMPORT_BODY, summary="Tailor: true labels in bulk from a labelled file")
async def import_feedback(request: Request, principal: Reader, services: ServicesDep) -> dict:
    """The labelled review queue (or any CSV/JSONL of ``prediction_id`` and ``true_label``/``label``, or a
    Label Studio export) as feedback: checked as a whole like ``POST /v1/feedback`` (an unknown id is a 404, a
    label the version does not know a 400, each naming the row), then written at once."""
    upload = await receive_upload(request, services.files.incoming_path(), services.settings.max_file_bytes)
    try:
        content = upload.path.read_bytes()
    finally:
        upload.path.unlink(missing_ok=True)
    try:
        items = read_labels(content, upload.filename or "upload.csv")
    except (DataError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"{upload.filename}: {exc}", param="file", code="invalid_file") from None
    if not items:
        raise ApiError(400, f"{upload.filename}: no labelled rows (fill in true_label)", param="file")
    given = await run_in_threadpool(give_feedback, written_records(services), services.feedback, principal.tenant,
                                    items)
    return {"object": "feedback.import", "rows": len(given), "data": [f.to_dict() for f in given]}
