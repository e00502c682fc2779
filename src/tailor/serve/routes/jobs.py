"""``/v1/fine_tuning/jobs``: create (files checked first), list, get, events, checkpoints, cancel, pause, resume.

A job's ``model`` is a base model of the catalog, or one of the tenant's fine-tuned classifiers (``ft:...``,
``name:N``, ``name@alias``): a retrain that continues that version's weights (:mod:`tailor.train.retrain`).
A ``zero_shot`` job (``method.tailor.method``) builds a classifier from ``method.tailor.labels`` on a base encoder
(:mod:`tailor.train.zero_shot`): no training file; a validation file scores it.
"""

from __future__ import annotations

import secrets
from contextlib import ExitStack

from fastapi import APIRouter

from tailor.catalog import CATALOG
from tailor.data.files import CHAT as CHAT_FILE, TEXTS as TEXTS_FILE
from tailor.errors import DataError, NotFoundError, TailorError
from tailor.jobs.spec import CHAT, CLASSIFICATION, ZERO_SHOT, JobCreate, OptionError, resolve_training
from tailor.jobs.store import RESUMABLE
from tailor.serve.deps import Reader, ServicesDep, Trainer
from tailor.serve.errors import ApiError
from tailor.serve.routes.common import After, Limit, errors
from tailor.serve.schemas import CheckpointList, EventList, JobEstimate, JobList, JobObject

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


def _not_available(model: str) -> ApiError:
    return ApiError(400, f"model {model!r} cannot be fine-tuned here; base models are: {', '.join(CATALOG)}, "
                         "or one of your fine-tuned classifiers", param="model", code="model_not_available")


def _task_of(model: str) -> str:
    base = CATALOG.get(model)
    if base is None:
        raise _not_available(model)
    return CHAT if base.task == "chat" else CLASSIFICATION


def _retrain_parent(services, tenant: str, body: JobCreate):
    """The tenant's fine-tuned classifier version that ``body.model`` names (None for a catalog base), resolved
    now so that the job continues the version an alias named when it was created."""
    retrain = body.tailor_options().retrain_options()
    if body.model in CATALOG:
        if retrain:
            raise ApiError(400, f"method.tailor.{next(iter(retrain))} is for a retrain: set model to one of your "
                                "fine-tuned classifiers", param=f"method.tailor.{next(iter(retrain))}")
        return None
    try:
        version = services.registry.store.resolve(tenant, body.model)
    except TailorError:  # an unknown name, another tenant's model, or no model reference at all
        raise _not_available(body.model) from None
    if version.task != "classify":
        raise ApiError(400, f"{version.ref} is a {version.task} model; only fine-tuned classifiers can be "
                            "retrained from here", param="model", code="model_not_available")
    method = body.tailor_options().method
    if method not in ("auto", version.method):
        raise ApiError(400, f"method.tailor.method {method!r} differs from {version.ref}'s method "
                            f"{version.method!r}: a retrain continues its weights", param="method.tailor.method")
    return version


def _stored_file(services, tenant: str, file_id: str, param: str):
    """The tenant's uploaded file ``file_id``; a 400 naming ``param`` when there is none."""
    try:
        return services.files.get(tenant, file_id)
    except NotFoundError:
        raise ApiError(400, f"{param} {file_id!r} not found; upload it with POST /v1/files", param=param,
                       code="file_not_found") from None


def _check_file(services, tenant: str, file_id: str, param: str, task: str) -> None:
    stored = _stored_file(services, tenant, file_id, param)
    if stored.kind == TEXTS_FILE:
        raise ApiError(400, f"{param} {file_id} holds unlabelled texts (no label column); a model trains on labelled "
                            "rows: give it as method.tailor.unlabeled_file to learn from it by self-training",
                       param=param, code="invalid_file")
    if (stored.kind == CHAT_FILE) != (task == CHAT):
        wanted = "chat examples (JSONL with messages)" if task == CHAT else "text/label rows (CSV, TSV or JSONL)"
        raise ApiError(400, f"{param} {file_id} holds {stored.kind} data, but a {task} model trains on {wanted}",
                       param=param, code="invalid_file")
    if task == CLASSIFICATION and len(stored.summary.get("labels", {})) < 2:
        raise ApiError(400, f"{param} {file_id} has {len(stored.summary.get('labels', {}))} distinct label(s); "
                            "a classifier needs at least 2", param=param, code="invalid_file")


def _check_unlabeled_file(services, tenant: str, file_id: str) -> None:
    """A job's ``method.tailor.unlabeled_file`` must be the tenant's file of texts (labelled ones too: their
    labels are ignored), not chat examples."""
    param = "method.tailor.unlabeled_file"
    if _stored_file(services, tenant, file_id, param).kind == CHAT_FILE:
        raise ApiError(400, f"{param} {file_id} holds chat data; self-training reads texts (a .txt file, or CSV, "
                            "TSV or JSONL with a text column)", param=param, code="invalid_file")


def _check_zero_shot(body: JobCreate) -> None:
    """A zero_shot job's model is a catalog base and it has no training file."""
    if body.model not in CATALOG:
        raise ApiError(400, f"model {body.model!r}: a zero_shot job embeds its labels with a base model; base models "
                            f"are: {', '.join(CATALOG)}", param="model", code="model_not_available")
    if body.training_file is not None:
        raise ApiError(400, "training_file: a zero_shot job trains nothing; leave it out, give the labels in "
                            "method.tailor.labels and, to score the model, a validation_file", param="training_file")


def _check_labels_scored(services, tenant: str, body: JobCreate) -> None:
    """A zero_shot job's validation file must hold rows of its labels (the others are left out)."""
    labels, _ = body.tailor_options().zero_shot_labels()
    found = services.files.get(tenant, body.validation_file).summary.get("labels", {})
    if not set(found) & set(labels):
        raise ApiError(400, f"validation_file {body.validation_file} has no row of the job's labels "
                            f"({', '.join(labels)}); its labels are: {', '.join(sorted(found))}",
                       param="validation_file", code="invalid_file")


@router.post("", response_model=JobObject, responses=errors(), summary="Create a fine-tuning job")
def create_job(body: JobCreate, principal: Trainer, services: ServicesDep) -> dict:
    """Check the model and files, then queue the job; a worker picks it up in order. Refused with 429 while the
    tenant has its limit of jobs queued or running, or once its jobs used its training minutes of the day (UTC)."""
    options = body.tailor_options()
    if options.method == ZERO_SHOT:
        _check_zero_shot(body)
        parent = None
    else:
        parent = _retrain_parent(services, principal.tenant, body)
    task = CLASSIFICATION if parent else _task_of(body.model)
    if body.training_file is None and not options.feedback and options.method != ZERO_SHOT:
        raise ApiError(400, "training_file: required unless method.tailor.feedback is true (a retrain of a "
                            "fine-tuned classifier from its feedback alone)", param="training_file",
                       code="missing_required_parameter")
    if body.training_file is not None:
        _check_file(services, principal.tenant, body.training_file, "training_file", task)
    if body.validation_file:
        _check_file(services, principal.tenant, body.validation_file, "validation_file", task)
        if options.method == ZERO_SHOT:
            _check_labels_scored(services, principal.tenant, body)
    if options.unlabeled_file and task == CLASSIFICATION and options.method != ZERO_SHOT:
        _check_unlabeled_file(services, principal.tenant, options.unlabeled_file)
    try:
        hyperparameters, overrides = resolve_training(body, task, method=parent.method if parent else None)
    except OptionError as exc:
        raise ApiError(400, str(exc), param=exc.param) from None
    request = {"hyperparameters": hyperparameters, "metadata": body.metadata, "overrides": overrides,
               "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters},
                          "tailor": options.model_dump(exclude_none=True)}}
    if parent:
        request["retrain"] = {"parent": parent.ref, "base_model": parent.base_model, "feedback": False,
                              "new_labels": False, **options.retrain_options()}
    services.limits.check_new_job(principal.tenant, services.jobs)
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
    """Refused with 429 as a new job is, when the tenant's job or training-minute quota has no room."""
    if services.jobs.get(principal.tenant, job_id).status in RESUMABLE:  # else resume's own 409
        services.limits.check_new_job(principal.tenant, services.jobs)
    return services.jobs.resume(principal.tenant, job_id).to_openai()


@router.post("/estimate", response_model=JobEstimate, responses=errors(),
             summary="Tailor: how long a job would take here, per method, and the method auto would choose")
def estimate_job(body: JobCreate, principal: Trainer, services: ServicesDep) -> dict:
    """Take a job's body and answer its estimate without creating it: the job's own reading, split and
    estimate, at the base's speed on this machine. The first estimate for a base (at a batch shape) loads it
    to measure that speed (seconds); the speed is then cached in the storage root. Catalog bases only."""
    if body.tailor_options().method == ZERO_SHOT:
        raise ApiError(400, "method.tailor.method: a zero_shot job trains nothing, so there is nothing to estimate",
                       param="method.tailor.method")
    if body.model not in CATALOG:
        raise ApiError(400, f"model {body.model!r}: estimates are for the catalog's base models "
                            f"({', '.join(CATALOG)})", param="model", code="model_not_available")
    task = _task_of(body.model)
    if body.training_file is None:
        raise ApiError(400, "training_file: required for an estimate", param="training_file",
                       code="missing_required_parameter")
    _check_file(services, principal.tenant, body.training_file, "training_file", task)
    if body.validation_file:
        _check_file(services, principal.tenant, body.validation_file, "validation_file", task)
    hyperparameters, overrides = resolve_training(body, task)
    unlabeled_file = body.tailor_options().unlabeled_file
    if unlabeled_file:
        _check_unlabeled_file(services, principal.tenant, unlabeled_file)
    files = services.files
    seed = {"seed": body.seed} if body.seed is not None else {}
    with ExitStack() as plaintexts:  # sealed files: private plaintext copies, removed after the estimate
        def plaintext(file_id):
            return plaintexts.enter_context(files.plaintext(files.get(principal.tenant, file_id))) if file_id else None

        if unlabeled_file:  # self-training's rounds join the estimate
            overrides = {**overrides, "unlabeled": plaintext(unlabeled_file)}
        return _estimate(body, task, plaintext(body.training_file), plaintext(body.validation_file), seed,
                         services.settings, hyperparameters, overrides)


def _estimate(body, task, train_path, eval_path, seed, settings, hyperparameters, overrides) -> dict:
    try:
        if task == CHAT:
            from tailor.train.chat_job import estimate_chat_job

            found = estimate_chat_job(train_path, eval_file=eval_path, settings=settings, base=body.model,
                                      **seed, **overrides)
        else:
            from tailor.train.job import estimate_classification_job

            found = estimate_classification_job(train_path, eval_file=eval_path, settings=settings,
                                                base=body.model, **seed, **overrides)
    except DataError as exc:
        raise ApiError(400, f"training_file {body.training_file}: {exc}", param="training_file",
                       code="invalid_file") from None
    return {"object": "fine_tuning.job.estimate", "model": body.model, **found, "hyperparameters": hyperparameters}
