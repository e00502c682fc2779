"""What routes depend on: the services of the running app and the caller's tenant, checked against a scope."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tailor.data.files import FileStore
from tailor.errors import AuthenticationError, PermissionDeniedError
from tailor.jobs.executor import Executor
from tailor.jobs.store import JobStore
from tailor.monitor.alerts import AlertLoop, AlertStore
from tailor.monitor.config import ConfigStore
from tailor.monitor.drift import EmbeddingCache
from tailor.monitor.feedback import FeedbackStore
from tailor.monitor.recorder import Recorder
from tailor.monitor.records import PredictionStore
from tailor.registry.gate import GateStore
from tailor.registry.service import Registry
from tailor.security.keys import Principal, TenantStore
from tailor.security.sessions import SessionStore, csrf_matches
from tailor.security.audit import AuditLog
from tailor.serve.audit import note_caller
from tailor.serve.batching import MicroBatcher
from tailor.serve.limits import ServerLimits
from tailor.serve.models import ModelCache
from tailor.serve.release import ShadowRunner
from tailor.settings import Settings


@dataclass
class Services:
    """The app's long-lived objects, built once in :func:`tailor.serve.app.create_app`."""

    settings: Settings
    tenants: TenantStore
    sessions: SessionStore
    files: FileStore
    jobs: JobStore
    registry: Registry
    models: ModelCache
    batcher: MicroBatcher
    executor: Executor | None
    metrics: object
    predictions: PredictionStore
    feedback: FeedbackStore
    recorder: Recorder | None  # None when recording is off (settings.record_predictions)
    monitor_configs: ConfigStore
    alerts: AlertStore
    alert_loop: AlertLoop
    drift_embeddings: EmbeddingCache = field(default_factory=EmbeddingCache)  # texts the drift test embedded
    shadow: ShadowRunner = field(default_factory=ShadowRunner)  # shadow copies of requests, off their path
    audit: AuditLog | None = None  # the audit log (tailor.serve.audit records every state change in it)
    limits: ServerLimits | None = None  # quotas and rate limits (tailor.serve.limits)
    gates: GateStore | None = None  # the tenants' release gates (tailor.registry.gate)


# The dependencies below are ``async def`` although they do not await: FastAPI runs a plain ``def`` dependency
# in its thread pool, and a hop there costs more than the work itself (the key lookup is one indexed query).


async def get_services(request: Request) -> Services:
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False, description="an API key from `tailor tenants create` or `tailor keys create`")
SESSION_COOKIE = "tailor_session"  # the web console's sign-in (see tailor.security.sessions)
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_principal(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The tenant and scopes of the request's API key, or of the console session whose cookie it carries,
    counted against the key's and the tenant's request rates.

    A request signed by the session cookie alone must echo the session's CSRF token in ``X-CSRF-Token`` to
    change anything: a page on another site can make the browser send the cookie, never read the token.

    Raises:
        AuthenticationError: no ``Authorization: Bearer`` header nor session cookie, an unknown or revoked key,
            or an ended session.
        PermissionDeniedError: a change signed by the session cookie without its CSRF token.
        QuotaExceededError: the key's or the tenant's requests per minute are used up (429).
    """
    services = request.app.state.services
    if credentials is not None:
        principal = services.tenants.authenticate(credentials.credentials)
        note_caller(request, principal)
        if services.limits is not None:
            services.limits.check_request(principal)
        return principal
    token = request.cookies.get(SESSION_COOKIE)
    if token is None:
        raise AuthenticationError("missing API key: send the header 'Authorization: Bearer <key>'")
    session = services.sessions.get(token)
    note_caller(request, session.principal, console=True)
    if request.method not in SAFE_METHODS and not csrf_matches(session.csrf, request.headers.get(CSRF_HEADER)):
        raise PermissionDeniedError(f"missing or wrong {CSRF_HEADER} header: a change signed by the console's "
                                    "session cookie must carry the session's CSRF token")
    if services.limits is not None:
        services.limits.check_request(session.principal)
    return session.principal


_METADATA_PARAM = re.compile(r"metadata\[([^\[\]]{1,64})\]")


async def metadata_query(request: Request) -> dict[str, str]:
    """OpenAI's ``metadata[key]=value`` query filters (as the ``openai`` client sends ``metadata={...}``)."""
    return {match.group(1): value for name, value in request.query_params.items()
            if (match := _METADATA_PARAM.fullmatch(name))}


async def reject_unknown_query_parameters(request: Request) -> None:
    """A query parameter the route does not take is an error, never silently ignored."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    from tailor.serve.errors import ApiError

    known = {param.alias for param in _query_params(dependant)}
    takes_metadata = any(sub.call is metadata_query for sub in dependant.dependencies)
    for name in request.query_params:
        if takes_metadata and _METADATA_PARAM.fullmatch(name):
            known.add(name)
        if name not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise ApiError(400, f"unknown query parameter {name!r} (this route takes: {allowed})", param=name)
        given = len(request.query_params.getlist(name))
        if given > 1:  # every query parameter takes one value: a repeat is an error, not "the last one wins"
            raise ApiError(400, f"query parameter {name!r} given {given} times; give it once", param=name)


def _query_params(dependant):
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _query_params(sub)


def _require(scope: str):
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.allows(scope):
            raise PermissionDeniedError(f"this API key lacks the '{scope}' scope (it has: {', '.join(principal.scopes)})")
        return principal

    return check


ServicesDep = Annotated[Services, Depends(get_services)]
Reader = Annotated[Principal, Depends(_require("read"))]
Trainer = Annotated[Principal, Depends(_require("train"))]
Deployer = Annotated[Principal, Depends(_require("deploy"))]
Admin = Annotated[Principal, Depends(_require("admin"))]
