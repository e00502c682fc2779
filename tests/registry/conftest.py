"""The registry store on each backend (``db_url`` comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from tailor.registry.sql import SqlRegistryStore


@pytest.fixture
def store(db_url):
    opened = SqlRegistryStore(db_url)
    yield opened
    opened.close()
