"""The console over an app with a fresh storage root (no job workers), and a client signed in as acme (the
tenants ``acme`` and ``globex`` are fixtures of tests/conftest.py)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def settings(fresh_home):
    from tailor.settings import Settings

    return Settings(home=fresh_home)


@pytest.fixture
def app(settings):
    from tailor.serve.app import create_app

    return create_app(settings)


def sign_in(client: TestClient, key: str, lang: str = "en") -> str:
    """Sign ``client`` in with ``key`` through the sign-in form; return the session's CSRF token."""
    client.get(f"/console/sign-in?lang={lang}")
    response = client.post("/console/sign-in", data={"key": key, "csrf": client.cookies["tailor_signin"],
                                                      "next": "/console"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/console").text)


def csrf_of(html: str) -> str:
    """The session's CSRF token in a page's ``<meta name="csrf-token">``."""
    return re.search(r'<meta name="csrf-token" content="([^"]*)">', html).group(1)


@pytest.fixture
def console(app, acme):
    """A client signed in as acme's admin key; ``console.csrf`` is its session's CSRF token."""
    with TestClient(app, raise_server_exceptions=False) as client:
        client.csrf = sign_in(client, acme.key)
        yield client
