"""``/v1/models``: the base catalog plus the tenant's registered models; get and delete by id or reference."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from tailor.catalog import CATALOG
from tailor.registry.refs import parse_ref
from tailor.serve.deps import Deployer, Reader, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.models import NamedModel, resolve_model
from tailor.serve.routes.common import errors
from tailor.serve.schemas import Deleted, ModelList, ModelObject, ModelStatus

router = APIRouter(prefix="/v1/models", tags=["models"])
_TAILOR_EPOCH = 1735689600  # catalog bases have no creation time of their own: 2025-01-01


def _model_object(named: NamedModel) -> dict:
    if named.base is not None:
        return {"id": named.id, "object": "model", "created": _TAILOR_EPOCH, "owned_by": "tailor",
                "task": named.base.task, "base_model": None, "version": None, "aliases": [],
                "description": named.base.description}
    version = named.version
    return {"id": named.id, "object": "model", "created": int(version.created_at.timestamp()),
            "owned_by": version.tenant, "task": version.task, "base_model": version.base_model,
            "version": version.version, "aliases": list(version.aliases), "description": None}


@router.get("", response_model=ModelList, responses=errors(), summary="List base models and the tenant's models")
def list_models(principal: Reader, services: ServicesDep) -> dict:
    data = [_model_object(NamedModel(base_id, base=base)) for base_id, base in CATALOG.items()]
    store = services.registry.store
    for model in store.list_models(principal.tenant):
        if model.latest_version is not None:
            version = store.get_version(principal.tenant, model.name, model.latest_version)
            data.append(_model_object(NamedModel(model.name, version=version)))
    return {"object": "list", "data": data}


@router.get("/{model_id}", response_model=ModelObject, responses=errors(404),
            summary="Get a model by id, name:version or name@alias")
def get_model(model_id: str, principal: Reader, services: ServicesDep) -> dict:
    return _model_object(resolve_model(services.registry, principal.tenant, model_id))


def _status(named: NamedModel, services) -> dict:
    status = services.models.status(services.models.key_of(named))
    serving = named.version.metrics.get("serving") if named.version else None
    return {"id": named.id, "object": "model.status", **status, "serving": serving}


@router.get("/{model_id}/status", response_model=ModelStatus, responses=errors(404),
            summary="Tailor: the model's lifecycle in the inference cache (loading, ready, evicted, errored)")
def model_status(model_id: str, principal: Reader, services: ServicesDep) -> dict:
    return _status(resolve_model(services.registry, principal.tenant, model_id), services)


@router.post("/{model_id}/load", response_model=ModelStatus, responses=errors(404, 503),
             summary="Tailor: load the model now (warm it before traffic); returns its status")
async def load_model(model_id: str, principal: Deployer, services: ServicesDep) -> dict:
    named = resolve_model(services.registry, principal.tenant, model_id)
    if named.task == "chat":
        await run_in_threadpool(services.models.chat, named)
    elif named.version is not None:
        await run_in_threadpool(services.models.classifier, named)
    else:
        await run_in_threadpool(services.models.encoder, named)
    return _status(named, services)


@router.delete("/{model_id}", response_model=Deleted, responses=errors(404),
               summary="Delete a fine-tuned model (every version), or one version with name:version")
def delete_model(model_id: str, principal: Deployer, services: ServicesDep) -> dict:
    if resolve_model(services.registry, principal.tenant, model_id).base is not None:
        raise ApiError(400, f"{model_id!r} is a base model of the catalog and cannot be deleted", param="model_id")
    ref = parse_ref(model_id)
    if ref.alias is not None:
        raise ApiError(400, f"delete {ref.name!r} or one version ({ref.name}:N), not an alias", param="model_id")
    if ref.version is not None:
        services.registry.delete_version(principal.tenant, ref.name, ref.version)
    else:
        services.registry.delete_model(principal.tenant, ref.name)
    return {"id": model_id, "object": "model", "deleted": True}
