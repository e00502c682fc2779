"""``/v1/quotas``: the caller's tenant's quotas and rate limits, with what it uses of each now
(see :mod:`tailor.serve.limits`)."""

from __future__ import annotations

from fastapi import APIRouter

from tailor.serve.deps import Admin, ServicesDep
from tailor.serve.limits import quota_usage
from tailor.serve.routes.common import errors
from tailor.serve.schemas import QuotaReport

router = APIRouter(prefix="/v1/quotas", tags=["keys"])


@router.get("", response_model=QuotaReport, responses=errors(),
            summary="Tailor: the tenant's quotas (requests per minute, jobs, storage, training minutes) and use")
def get_quotas(principal: Admin, services: ServicesDep) -> dict:
    """Limits of 0 are unlimited. The request rates are this server process's counts."""
    limits = services.limits
    quota = limits.quotas(principal.tenant)
    report = quota_usage(quota, principal.tenant, services.files, services.jobs,
                         limits.rate_use(principal.tenant, principal.key_id))
    return {"object": "quota", "tenant": principal.tenant, **report}
