"""Shared fixtures: an isolated TAILOR_HOME, database backends, the shipped sample data, and small trained
versions.

Database tests run on SQLite always and on PostgreSQL when ``TAILOR_TEST_POSTGRES_URL`` is set (``.ci/run``
starts a server), e.g. ``postgresql+psycopg://postgres@127.0.0.1:55432/postgres``; its public schema is
emptied before and after each such test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from samples import SAMPLE_TEST, sample_rows, write_csv

POSTGRES_URL = os.environ.get("TAILOR_TEST_POSTGRES_URL")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory):
    """Every test runs against a temporary storage root unless it sets its own."""
    home = tmp_path_factory.mktemp("tailor-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAILOR_HOME", str(home))
        yield home


def _empty_postgres(url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="set TAILOR_TEST_POSTGRES_URL to test PostgreSQL"))])
def db_url(request, tmp_path):
    """The URL of a blank database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'tailor.db'}"
        return
    _empty_postgres(POSTGRES_URL)
    yield POSTGRES_URL
    _empty_postgres(POSTGRES_URL)


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """An empty storage root for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("TAILOR_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def small_train_csv(tmp_path_factory) -> Path:
    """60 real finance tweets, 20 per label."""
    return write_csv(tmp_path_factory.mktemp("data") / "small.csv", sample_rows(per_label=20))


@pytest.fixture(scope="session")
def small_test_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "small_test.csv", sample_rows(SAMPLE_TEST)[:40])


@pytest.fixture(scope="session")
def trained(session_home, small_train_csv, small_test_csv):
    """One registered version per method, trained briefly on the small set: {method: TrainResult}."""
    import tailor

    return {method: tailor.fine_tune(small_train_csv, eval_file=small_test_csv, name=f"small-{method}",
                                     method=method, epochs=2, batch_size=8, seed=0)
            for method in ("full", "lora", "head")}
