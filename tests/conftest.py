"""Shared fixtures: an isolated TAILOR_HOME, database backends, the shipped sample data, and small trained
versions.

Database tests run on SQLite always and on PostgreSQL when ``TAILOR_TEST_POSTGRES_URL`` is set (``.ci/run``
starts a server), e.g. ``postgresql+psycopg://postgres@127.0.0.1:55432/postgres``; its public schema is
emptied before and after each such test. Under pytest-xdist (``make test`` runs two workers) each worker gets a
database of its own on that server (``<database>_gw0``, ...), so two workers never empty each other's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api_helpers import SMALL_CSV, Tenant
from samples import SAMPLE_TEST, sample_rows, write_csv



def _worker_database(url: str | None) -> str | None:
    """``url`` itself, or under an xdist worker the URL of that worker's database on the same server (created
    when missing)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database or 'postgres'}_{worker}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first():
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


POSTGRES_URL = _worker_database(os.environ.get("TAILOR_TEST_POSTGRES_URL"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory):
    """Every test runs against a temporary storage root unless it sets its own."""
    home = tmp_path_factory.mktemp("tailor-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAILOR_HOME", str(home))
        yield home


@pytest.fixture(scope="module", autouse=True)
def _release_memory_after_module():
    """After each test file, drop the shared base encoders of its storage roots, collect its models and hand
    the freed heap back to the OS (glibc keeps it otherwise), so that a worker's memory does not grow with every
    file it has run (two xdist workers share this 23 GB machine)."""
    yield
    import ctypes
    import gc

    from tailor.models.runtimes import forget_default_bases

    forget_default_bases()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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


@pytest.fixture
def acme(settings) -> Tenant:
    """Tenant acme with its admin key, in the database of the requesting test's ``settings`` fixture."""
    from tailor.security.keys import TenantStore

    _, secret = TenantStore(settings.registry_url).create_tenant("acme")
    return Tenant("acme", secret)


@pytest.fixture
def globex(settings) -> Tenant:
    from tailor.security.keys import TenantStore

    _, secret = TenantStore(settings.registry_url).create_tenant("globex")
    return Tenant("globex", secret)


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


@pytest.fixture(scope="session")
def head_artifact(tmp_path_factory):
    """One frozen-encoder classifier (minilm-l6 + linear head, 1 epoch on SMALL_CSV), trained once per session in
    its own storage root; returns ``(artifact_dir, version)`` to publish copies of into each test's registry."""
    import tailor
    from tailor.registry.service import open_registry
    from tailor.settings import Settings

    home = tmp_path_factory.mktemp("head-home")
    data = home / "small.csv"
    data.write_bytes(SMALL_CSV)
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'tailor.db'}")
    result = tailor.fine_tune(data, name="head", method="head", epochs=1, seed=0, settings=settings)
    return open_registry(settings).artifact_dir(result.version), result.version


@pytest.fixture(scope="session")
def chat_artifact(tmp_path_factory):
    """A tiny chat version (random 2-layer Llama + LoRA, 1 epoch on 40 review conversations), trained once per
    session in its own storage root; returns ``(artifact_dir, version)``."""
    from tiny_chat import build_tiny_chat_model, review_conversations, write_jsonl

    from tailor.registry.service import open_registry
    from tailor.settings import Settings
    from tailor.train.chat_job import run_chat_job

    home = tmp_path_factory.mktemp("chat-home")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'tailor.db'}")
    tiny = build_tiny_chat_model(home / "tiny-llama")
    data = write_jsonl(home / "reviews.jsonl", review_conversations(40))
    result = run_chat_job(data, name="reviews", settings=settings, base=str(tiny), epochs=1, batch_size=4,
                          grad_accum=1, max_length=64, lr=1e-2, samples=1, sample_max_tokens=4, eval_examples=4)
    return open_registry(settings).artifact_dir(result.version), result.version
