"""An API app over a fresh storage root (no job workers) on every database backend. The tenants ``acme`` and
``globex`` and the trained versions to publish into it (``head_artifact``, ``chat_artifact``) are fixtures of
tests/conftest.py, which the console's tests share."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


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
