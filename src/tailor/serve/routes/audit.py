"""``GET /v1/audit``: the tenant's rows of the audit log (:mod:`tailor.security.audit`), for a key with the
``admin`` scope, newest first, filtered by time and action and paged by ``after`` (a seq). Checking the whole
chain covers every tenant, so it is the operator's: ``tailor audit verify``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query

from tailor.serve.deps import Admin, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.routes.common import errors
from tailor.serve.schemas import AuditList

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_ISO_MOMENT = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?$"


def _moment(text: str) -> datetime:
    """The UTC moment of an ISO 8601 text (a date alone is its midnight; no zone is UTC).

    Raises:
        ApiError: not a real date or time (month 13), or out of the calendar once in UTC.
    """
    try:
        moment = datetime.fromisoformat(text)
        return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise ApiError(400, f"since: {text!r} is not a date or time (e.g. 2026-11-30T08:00:00Z)", param="since") \
            from None


@router.get("", response_model=AuditList, responses=errors(),
            summary="Tailor: the tenant's audit log: who changed what, when, from where, and the result")
def list_audit(principal: Admin, services: ServicesDep,
               since: Annotated[str | None, Query(pattern=_ISO_MOMENT, description="only rows at or after this "
                                                  "moment: ISO 8601, e.g. 2026-11-30 or 2026-11-30T08:00:00Z (UTC when "
                                                  "no zone is given)")] = None,
               action: Annotated[str | None, Query(min_length=1, max_length=200,
                                                   description="only this action, e.g. 'POST /v1/files'")] = None,
               after: Annotated[int | None, Query(ge=1, le=2**62, description="only rows older than this seq (the "
                                                                         "last seq of the previous page)")] = None,
               limit: Annotated[int, Query(ge=1, le=1000, description="most rows returned")] = 100) -> dict:
    rows, has_more = services.audit.list(principal.tenant, since=_moment(since) if since else None, action=action,
                                         after=after, limit=limit)
    return {"object": "list", "data": [{"object": "audit.event", **row.to_dict()} for row in rows],
            "has_more": has_more}
