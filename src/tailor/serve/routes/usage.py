"""``/v1/usage``: what the tenant has used, as far as the server records it (see :mod:`tailor.serve.usage`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tailor.serve.deps import Admin, ServicesDep
from tailor.serve.routes.common import errors
from tailor.serve.schemas import UsageReport
from tailor.serve.usage import tenant_usage

router = APIRouter(prefix="/v1/usage", tags=["keys"])


@router.get("", response_model=UsageReport, responses=errors(),
            summary="Tailor: the tenant's requests and tokens per model, jobs and their run time, stored files "
                    "and models")
def get_usage(principal: Admin, services: ServicesDep,
              days: Annotated[int, Query(ge=1, le=366, description="the window: the last this many days")] = 30
              ) -> dict:
    return tenant_usage(services, principal.tenant, days)
