"""Console page: the tenant's API keys (create one, its secret shown once; revoke one), the tenant's usage and its
quotas with what it uses of each now, for a key with the ``admin`` scope; other keys get a message.

The page renders from the API's route functions (:mod:`tailor.serve.routes.keys`, :mod:`tailor.serve.routes.usage`,
:mod:`tailor.serve.routes.quotas`);
``static/keys.js`` creates and revokes keys through the same ``/v1/keys`` routes.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from tailor.security.keys import SCOPES
from tailor.security.quotas import LIMITS
from tailor.serve.console.render import SignedIn, language_param
from tailor.serve.routes import keys as keys_api
from tailor.serve.routes import quotas as quotas_api
from tailor.serve.routes import usage as usage_api

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])
USAGE_DAYS = 30


@router.get("/keys")
async def keys_page(page: SignedIn) -> Response:
    """The tenant's keys with create and revoke, its usage over the last 30 days, and its quotas (set by the
    server's operator: ``tailor tenants quota``) with their use now."""
    title = page.t("keys.title")
    if not page.allows("admin"):
        return page.render("keys.html", title=title, active="keys", allowed=False)
    keys = await page.call(keys_api.list_keys, page.principal, page.services)
    usage = await page.call(usage_api.get_usage, page.principal, page.services, days=USAGE_DAYS)
    quotas = await page.call(quotas_api.get_quotas, page.principal, page.services) if page.services.limits else None
    return page.render("keys.html", title=title, active="keys", allowed=True, keys=keys["data"], usage=usage,
                       own_key=page.principal.key_id, scopes=SCOPES, quotas=quotas, limits=LIMITS)
