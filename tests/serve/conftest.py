"""An API app over a fresh storage root (no job workers) with two tenants, and helpers to call it."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from samples import sample_rows


@dataclass
class Tenant:
    name: str
    key: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}


def csv_bytes(rows, header=("text", "label")) -> bytes:
    out = io.StringIO()
    import csv

    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


SMALL_CSV = csv_bytes(sample_rows(per_label=12))


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


def upload(client, tenant: Tenant, content: bytes = SMALL_CSV, filename: str = "train.csv",
           purpose: str = "fine-tune"):
    return client.post("/v1/files", headers=tenant.headers, files={"file": (filename, content)},
                       data={"purpose": purpose})
