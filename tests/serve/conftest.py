"""An API app over a fresh storage root (no job workers) with two tenants, and a trained head classifier."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api_helpers import SMALL_CSV, Tenant


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
