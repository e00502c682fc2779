"""``/v1/release_gate``: the tenant's release gate, the accuracy floor and bias thresholds a version must pass
before an alias serves it (see :mod:`tailor.registry.gate`); anyone may read it, an admin key sets it."""

from __future__ import annotations

from fastapi import APIRouter

from tailor.registry.gate import GatePolicy
from tailor.serve.deps import Admin, Reader, ServicesDep
from tailor.serve.routes.common import errors
from tailor.serve.schemas import ReleaseGateObject, ReleaseGateSet

router = APIRouter(prefix="/v1/release_gate", tags=["release gate"])


def _gate_object(tenant: str, policy: GatePolicy) -> dict:
    return {"object": "release_gate", "tenant": tenant, "active": policy.active, **policy.to_dict()}


@router.get("", response_model=ReleaseGateObject, responses=errors(),
            summary="Tailor: the tenant's release gate (thresholds not set are not checked)")
def get_gate(principal: Reader, services: ServicesDep) -> dict:
    return _gate_object(principal.tenant, services.gates.get(principal.tenant))


@router.put("", response_model=ReleaseGateObject, responses=errors(),
            summary="Tailor: replace the tenant's release gate (admin); an empty body removes it")
def set_gate(body: ReleaseGateSet, principal: Admin, services: ServicesDep) -> dict:
    policy = GatePolicy(**body.model_dump())
    services.gates.set(principal.tenant, policy, actor=principal.actor)
    return _gate_object(principal.tenant, policy)
