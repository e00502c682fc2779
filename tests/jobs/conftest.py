"""The jobs tests' API: an app over a fresh storage root on every database backend (a test module may narrow
``settings``)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def settings(fresh_home, db_url):
    from tailor.settings import Settings

    return Settings(home=fresh_home, database_url=db_url)


@pytest.fixture
def api(settings):
    from tailor.serve.app import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client
