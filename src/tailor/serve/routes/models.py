"""``/v1/models``: the base catalog plus the tenant's registered models; get and delete by id or reference;
Tailor's alias routes (set or move, remove, list with history) and release routes on an alias (canary, shadow,
promote, rollback, abort) so a tenant releases, promotes and rolls back itself. Every alias change records
who made it (the API key) and why (the optional ``reason``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from tailor.catalog import CATALOG
from tailor.errors import NotFoundError, PermissionDeniedError, UsageError
from tailor.registry.entities import Alias, AliasEvent
from tailor.registry.gate import GateRefused, check_release
from tailor.registry.refs import parse_ref, validate_alias
from tailor.serve.deps import Deployer, Reader, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.models import NamedModel, resolve_model
from tailor.serve.routes.common import errors
from tailor.serve.schemas import (AliasList, AliasObject, AliasSet, CanarySet, Deleted, ModelList, ModelObject,
                                  ModelStatus, PromoteRequest, ReasonOnly, ShadowSet)

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
    if "@" in model_id:  # name@latest too: it names one version, and deleting the whole model would surprise
        raise ApiError(400, f"delete {ref.name!r} or one version ({ref.name}:N), not an alias", param="model_id")
    if ref.version is not None:
        services.registry.delete_version(principal.tenant, ref.name, ref.version)
    else:
        services.registry.delete_model(principal.tenant, ref.name)
    return {"id": model_id, "object": "model", "deleted": True}


def _model_name(model_id: str) -> str:
    """The registered model ``model_id`` names; a version, an alias or a catalog base is refused (400), an id no
    model could have is not found (404), as :func:`resolve_model` answers."""
    if model_id in CATALOG:
        raise ApiError(400, f"{model_id!r} is a base model of the catalog; aliases name versions of fine-tuned "
                            "models", param="model_id")
    try:
        ref = parse_ref(model_id)
    except UsageError as exc:
        raise NotFoundError(f"model {model_id!r} not found ({exc})") from None
    if ref.version is not None or "@" in model_id:
        raise ApiError(400, f"give the model's name ({ref.name}), not a version or an alias", param="model_id")
    return ref.name


def _alias_name(alias: str) -> str:
    try:
        return validate_alias(alias)
    except UsageError as exc:
        raise ApiError(400, str(exc), param="alias") from None


def _alias_object(alias: Alias) -> dict:
    return {"object": "model.alias", "model": alias.name, "alias": alias.alias, "version": alias.version,
            "candidate": alias.candidate.to_dict() if alias.candidate else None}


def _event_object(event: AliasEvent) -> dict:
    return {"alias": event.alias, "version": event.version, "action": event.action,
            "candidate": event.candidate.to_dict() if event.candidate else None, "actor": event.actor,
            "reason": event.reason, "created_at": int(event.created_at.timestamp())}


def _target(model_id: str, alias: str, principal, services) -> tuple[str, str]:
    """The model's name and the alias, checked, for a change of ``alias``; the model must be the tenant's."""
    name, alias = _model_name(model_id), _alias_name(alias)
    services.registry.store.get_model(principal.tenant, name)
    return name, alias


def _at_param(change):
    """``change()``; a missing version or alias (the model was checked first) answers 404 naming the ``version``
    or ``alias`` parameter, as the other refusals name theirs."""
    try:
        return change()
    except NotFoundError as exc:
        if str(exc).startswith("version "):
            raise ApiError(404, str(exc), param="version", code="not_found") from None
        raise ApiError(404, str(exc), param="alias", code="not_found") from None


@router.get("/{model_id}/aliases", response_model=AliasList, responses=errors(404),
            summary="Tailor: a fine-tuned model's aliases and their history (who changed what, when and why)")
def list_aliases(model_id: str, principal: Reader, services: ServicesDep) -> dict:
    name = _model_name(model_id)
    store = services.registry.store
    model = store.get_model(principal.tenant, name)
    history = store.alias_history(principal.tenant, name)
    return {"object": "list", "model": name,
            "data": [_alias_object(store.get_alias(principal.tenant, name, alias)) for alias in sorted(model.aliases)],
            "history": [_event_object(e) for e in history]}


@router.get("/{model_id}/aliases/{alias}", response_model=AliasObject, responses=errors(404),
            summary="Tailor: one alias: its version and the candidate it tries out (canary or shadow)")
def get_alias(model_id: str, alias: str, principal: Reader, services: ServicesDep) -> dict:
    name, alias = _target(model_id, alias, principal, services)
    return _alias_object(_at_param(lambda: services.registry.store.get_alias(principal.tenant, name, alias)))


def _gated(principal, services, name: str, version: int | None, body, alias: str | None = None) -> str | None:
    """The reason to record for a release change to ``version`` (None: the alias's candidate), after the tenant's
    release gate (:mod:`tailor.registry.gate`): a failing version is a 409 naming each failing number; an
    ``override`` needs the admin scope (403) and a reason (400), and is recorded with the failing numbers."""
    if body.override and not principal.allows("admin"):
        raise PermissionDeniedError("overriding the release gate needs the 'admin' scope "
                                    f"(this API key has: {', '.join(principal.scopes)})")
    try:
        return check_release(services.gates, services.registry.store, principal.tenant,
                             name, version, alias=alias, override=body.override, reason=body.reason)
    except GateRefused as exc:
        raise ApiError(409, str(exc), param="version", code="release_gate_failed") from None
    except NotFoundError:  # a missing version or alias: _at_param names it
        raise
    except UsageError as exc:  # an override without a reason
        raise ApiError(400, str(exc), param="reason") from None


@router.put("/{model_id}/aliases/{alias}", response_model=AliasObject, responses=errors(404, 409),
            summary="Tailor: point an alias (e.g. production) at a version of a fine-tuned model, or move it "
                    "(checked against the tenant's release gate)")
def set_alias(model_id: str, alias: str, body: AliasSet, principal: Deployer, services: ServicesDep) -> dict:
    name, alias = _target(model_id, alias, principal, services)
    store = services.registry.store
    _at_param(lambda: store.set_alias(principal.tenant, name, alias, body.version, actor=principal.actor,
                                      reason=_gated(principal, services, name, body.version, body)))
    return _alias_object(store.get_alias(principal.tenant, name, alias))


@router.delete("/{model_id}/aliases/{alias}", response_model=Deleted, responses=errors(404),
               summary="Tailor: remove an alias of a fine-tuned model (its version stays)")
def delete_alias(model_id: str, alias: str, principal: Deployer, services: ServicesDep,
                 reason: Annotated[str | None, Query(max_length=1000, description="why (kept in the history)")] = None
                 ) -> dict:
    name, alias = _target(model_id, alias, principal, services)
    _at_param(lambda: services.registry.store.delete_alias(principal.tenant, name, alias, actor=principal.actor,
                                                                reason=reason))
    return {"id": f"{name}@{alias}", "object": "model.alias", "deleted": True}


@router.post("/{model_id}/aliases/{alias}/canary", response_model=AliasObject, responses=errors(404, 409),
             summary="Tailor: send a share of the alias's requests to a candidate version (sticky by user)")
def start_canary(model_id: str, alias: str, body: CanarySet, principal: Deployer, services: ServicesDep) -> dict:
    name, alias = _target(model_id, alias, principal, services)
    return _alias_object(_at_param(lambda: services.registry.store.set_candidate(
        principal.tenant, name, alias, body.version, "canary", body.share, actor=principal.actor,
        reason=_gated(principal, services, name, body.version, body))))


@router.post("/{model_id}/aliases/{alias}/shadow", response_model=AliasObject, responses=errors(404, 409),
             summary="Tailor: run a candidate classifier in the shadow of the alias (a copy of its requests, "
                     "recorded, never returned)")
def start_shadow(model_id: str, alias: str, body: ShadowSet, principal: Deployer, services: ServicesDep) -> dict:
    name, alias = _target(model_id, alias, principal, services)
    return _alias_object(_at_param(lambda: services.registry.store.set_candidate(
        principal.tenant, name, alias, body.version, "shadow", actor=principal.actor, reason=body.reason)))


@router.post("/{model_id}/aliases/{alias}/promote", response_model=AliasObject, responses=errors(404, 409),
             summary="Tailor: move the alias to its candidate (or a given version) and end the canary or shadow")
def promote(model_id: str, alias: str, principal: Deployer, services: ServicesDep,
            body: PromoteRequest | None = None) -> dict:
    name, alias = _target(model_id, alias, principal, services)
    body = body or PromoteRequest()
    return _alias_object(_at_param(lambda: services.registry.store.promote(
        principal.tenant, name, alias, body.version, actor=principal.actor,
        reason=_gated(principal, services, name, body.version, body, alias))))


@router.post("/{model_id}/aliases/{alias}/rollback", response_model=AliasObject, responses=errors(404, 409),
             summary="Tailor: move the alias back to the version it pointed at before its last move")
def rollback(model_id: str, alias: str, principal: Deployer, services: ServicesDep,
             body: ReasonOnly | None = None) -> dict:
    name, alias = _target(model_id, alias, principal, services)
    reason = body.reason if body else None
    return _alias_object(_at_param(lambda: services.registry.store.rollback(
        principal.tenant, name, alias, actor=principal.actor, reason=reason)))


@router.post("/{model_id}/aliases/{alias}/abort", response_model=AliasObject, responses=errors(404, 409),
             summary="Tailor: stop the alias's canary or shadow; it keeps its version")
def abort(model_id: str, alias: str, principal: Deployer, services: ServicesDep,
          body: ReasonOnly | None = None) -> dict:
    name, alias = _target(model_id, alias, principal, services)
    reason = body.reason if body else None
    return _alias_object(_at_param(lambda: services.registry.store.clear_candidate(
        principal.tenant, name, alias, actor=principal.actor, reason=reason)))
