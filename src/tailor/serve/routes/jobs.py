"""``/v1/fine_tuning/jobs``: create (files checked first), list, get, events, checkpoints, cancel, pause, resume."""

from __future__ import annotations

import secrets

from fastapi import APIRouter

from tailor.catalog import CATALOG
from tailor.data.files import CHAT as CHAT_FILE
from tailor.errors import NotFoundError
from tailor.jobs.spec import CHAT, CLASSIFICATION, JobCreate, resolve_training
from tailor.serve.deps import Reader, ServicesDep, Trainer
from tailor.serve.errors import ApiError
from tailor.serve.routes.common import After, Limit, errors
from tailor.serve.schemas import CheckpointList, EventList, JobList, JobObject

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


def _task_of(model: str) -> str:
    base = CATALOG.get(model)
    if base is None:
        raise ApiError(400, f"model {model!r} cannot be fine-tuned here; base models are: {', '.join(CATALOG)}",
                       param="model", code="model_not_available")
    return CHAT if base.task == "chat" else CLASSIFICATION


def _check_file(services, tenant: str, file_id: str, param: str, task: str) -> None:
    try:
        stored = services.files.get(tenant, file_id)
    except NotFoundError:
        raise ApiError(400, f"{param} {file_id!r} not found; upload it with POST /v1/files", param=param,
                       code="file_not_found") from None
    if (stored.kind == CHAT_FILE) != (task == CHAT):
        wanted = "chat examples (JSONL with messages)" if task == CHAT else "text/label rows (CSV, TSV or JSONL)"
        raise ApiError(400, f"{param} {file_id} holds {stored.kind} data, but a {task} model trains on {wanted}",
                       param=param, code="invalid_file")
    if task == CLASSIFICATION and len(stored.summary.get("labels", {})) < 2:
        raise ApiError(400, f"{param} {file_id} has {len(stored.summary.get('labels', {}))} distinct label(s); "
                            "a classifier needs at least 2", param=param, code="invalid_file")


@router.post("", response_model=JobObject, responses=errors(), summary="Create a fine-tuning job")
def create_job(body: JobCreate, principal: Trainer, services: ServicesDep) -> dict:
    """Check the model and files, then queue the job; a worker picks it up in order."""
    task = _task_of(body.model)
    _check_file(services, principal.tenant, body.training_file, "training_file", task)
    if body.validation_file:
        _check_file(services, principal.tenant, body.validation_file, "validation_file", task)
    hyperparameters, overrides = resolve_training(body, task)
    options = body.tailor_options().model_dump(exclude_none=True)
    request = {"hyperparameters": hyperparameters, "metadata": body.metadata, "overrides": overrides,
               "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters},
                          "tailor": options}}
    job = services.jobs.create(principal.tenant, model=body.model, task=task, training_file=body.training_file,
                               validation_file=body.validation_file, suffix=body.suffix,
                               seed=body.seed if body.seed is not None else secrets.randbelow(2**31), request=request)
    return job.to_openai()


@router.get("", response_model=JobList, responses=errors(404), summary="List fine-tuning jobs, newest first")
def list_jobs(principal: Reader, services: ServicesDep, after: After = None, limit: Limit = 20) -> dict:
    jobs, has_more = services.jobs.list(principal.tenant, after=after, limit=limit)
    return {"object": "list", "data": [j.to_openai() for j in jobs], "has_more": has_more}


@router.get("/{job_id}", response_model=JobObject, responses=errors(404), summary="Get a fine-tuning job")
def get_job(job_id: str, principal: Reader, services: ServicesDep) -> dict:
    return services.jobs.get(principal.tenant, job_id).to_openai()


@router.get("/{job_id}/events", response_model=EventList, responses=errors(404),
            summary="A job's events, newest first (messages, and metrics with train and validation loss)")
def list_events(job_id: str, principal: Reader, services: ServicesDep, after: After = None,
                limit: Limit = 20) -> dict:
    events, has_more = services.jobs.events(principal.tenant, job_id, after=after, limit=limit)
    return {"object": "list", "data": [e.to_openai() for e in events], "has_more": has_more}


@router.get("/{job_id}/checkpoints", response_model=CheckpointList, responses=errors(404),
            summary="A job's checkpoints (one per epoch), newest first")
def list_checkpoints(job_id: str, principal: Reader, services: ServicesDep, after: After = None,
                     limit: Limit = 10) -> dict:
    job = services.jobs.get(principal.tenant, job_id)
    found, has_more = services.jobs.checkpoints(principal.tenant, job_id, after=after, limit=limit)
    data = [c.to_openai(job.fine_tuned_model) for c in found]
    return {"object": "list", "data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


@router.post("/{job_id}/cancel", response_model=JobObject, responses=errors(404, 409), summary="Cancel a job")
def cancel_job(job_id: str, principal: Trainer, services: ServicesDep) -> dict:
    return services.jobs.cancel(principal.tenant, job_id).to_openai()


@router.post("/{job_id}/pause", response_model=JobObject, responses=errors(404, 409), summary="Pause a job")
def pause_job(job_id: str, principal: Trainer, services: ServicesDep) -> dict:
    return services.jobs.pause(principal.tenant, job_id).to_openai()


@router.post("/{job_id}/resume", response_model=JobObject, responses=errors(404, 409),
             summary="Resume a paused job from its last checkpoint")
def resume_job(job_id: str, principal: Trainer, services: ServicesDep) -> dict:
    return services.jobs.resume(principal.tenant, job_id).to_openai()
