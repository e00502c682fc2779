"""``/v1/keys``: the tenant's API keys, for a key with the ``admin`` scope: list them, create one (its secret
is in the answer, this once; ``expires_in_days`` for one that expires) and revoke one. A revoked key is refused at once, a console session signed in with
it included (see :mod:`tailor.security.keys`)."""

from __future__ import annotations

from fastapi import APIRouter

from tailor.security.keys import ApiKey
from tailor.serve.deps import Admin, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.routes.common import errors
from tailor.serve.schemas import KeyCreate, KeyCreated, KeyList, KeyObject

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def _key_object(key: ApiKey) -> dict:
    def ts(moment):
        return int(moment.timestamp()) if moment else None

    return {"id": key.id, "object": "api_key", "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
            "created_at": ts(key.created_at), "last_used_at": ts(key.last_used_at), "revoked_at": ts(key.revoked_at),
            "expires_at": ts(key.expires_at)}


@router.get("", response_model=KeyList, responses=errors(), summary="Tailor: the tenant's API keys (never their "
                                                                    "secrets), revoked ones included")
def list_keys(principal: Admin, services: ServicesDep) -> dict:
    return {"object": "list", "data": [_key_object(k) for k in services.tenants.list_keys(principal.tenant)]}


@router.post("", response_model=KeyCreated, responses=errors(),
             summary="Tailor: create an API key for the tenant; its secret is in this answer only")
def create_key(body: KeyCreate, principal: Admin, services: ServicesDep) -> dict:
    if not body.name.strip():
        raise ApiError(400, "name: give the key a name (what it is for)", param="name")
    key, secret = services.tenants.create_key(principal.tenant, body.name.strip(), body.scopes, body.expires_in_days)
    return {**_key_object(key), "secret": secret}


@router.post("/{key_id}/revoke", response_model=KeyObject, responses=errors(404),
             summary="Tailor: revoke one of the tenant's API keys (at once; revoking again changes nothing)")
def revoke_key(key_id: str, principal: Admin, services: ServicesDep) -> dict:
    return _key_object(services.tenants.revoke_key(key_id, tenant=principal.tenant))
