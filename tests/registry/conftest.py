"""Backends for the registry suite: SQLite always, PostgreSQL when TAILOR_TEST_POSTGRES_URL is set.

For example ``TAILOR_TEST_POSTGRES_URL=postgresql+psycopg://postgres@localhost/tailor_test`` (with psycopg
installed). The suite drops the registry's tables in that database before and after each test.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine

from tailor.registry.sql import SqlRegistryStore

POSTGRES_URL = os.environ.get("TAILOR_TEST_POSTGRES_URL")


def _drop_postgres_tables(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS aliases, model_versions, models, tailor_migrations CASCADE")
    engine.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not POSTGRES_URL, reason="set TAILOR_TEST_POSTGRES_URL to test PostgreSQL"),
        ),
    ]
)
def db_url(request, tmp_path):
    """The URL of a blank registry database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'tailor.db'}"
        return
    _drop_postgres_tables(POSTGRES_URL)
    yield POSTGRES_URL
    _drop_postgres_tables(POSTGRES_URL)


@pytest.fixture
def store(db_url):
    opened = SqlRegistryStore(db_url)
    yield opened
    opened.close()
