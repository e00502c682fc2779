"""An API app over a fresh storage root (no job workers) with two tenants (the trained versions to publish into
it, ``head_artifact`` and ``chat_artifact``, are in tests/conftest.py: the console's tests use them too)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api_helpers import Tenant


@pytest.fixture
def settings(fresh_home, db_url):
    from tailor.settings import Settings

    return Settings(home=fresh_home, database_url=db_url)


@pytest.fixture
def app(settings):
    from tailor.serve.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def acme(settings) -> Tenant:
    from tailor.security.keys import TenantStore

    _, secret = TenantStore(settings.registry_url).create_tenant("acme")
    return Tenant("acme", secret)


@pytest.fixture
def globex(settings) -> Tenant:
    from tailor.security.keys import TenantStore

    _, secret = TenantStore(settings.registry_url).create_tenant("globex")
    return Tenant("globex", secret)
