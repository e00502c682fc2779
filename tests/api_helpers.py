"""Helpers for API tests: tenants with keys, CSV bytes, uploads, and publishing a trained classifier."""

from __future__ import annotations

import base64
import csv
import io
import secrets
from dataclasses import dataclass

from samples import SAMPLE_TEST, sample_rows


@dataclass
class Tenant:
    name: str
    key: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}


def csv_bytes(rows, header=("text", "label")) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


SMALL_CSV = csv_bytes(sample_rows(per_label=12))


def region_csv() -> bytes:
    """80 labelled tweets with a region (north/south alternating); every fourth starts with "He says"."""
    rows = sample_rows(SAMPLE_TEST)[:80]
    return csv_bytes([(("He says " if i % 4 == 0 else "") + text, label, "north" if i % 2 else "south")
                      for i, (text, label) in enumerate(rows)], header=("text", "label", "region"))


def new_master_key() -> str:
    """A fresh master key as TAILOR_MASTER_KEY takes it (32 random bytes, URL-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def upload(client, tenant: Tenant, content: bytes = SMALL_CSV, filename: str = "train.csv",
           purpose: str = "fine-tune"):
    return client.post("/v1/files", headers=tenant.headers, files={"file": (filename, content)},
                       data={"purpose": purpose})


def publish_copy(settings, head_artifact, tenant: str, name: str):
    """Register a copy of a session-trained version (``(artifact_dir, version)``) as the next version of
    ``tenant``'s ``name``."""
    import shutil

    from tailor.registry.artifacts import MARKER
    from tailor.registry.service import open_registry

    source, version = head_artifact
    registry = open_registry(settings)
    with registry.artifacts.stage() as staged:
        shutil.copytree(source, staged, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER))
        return registry.publish_version(tenant, name, staged, task=version.task, base_model=version.base_model,
                                        method=version.method, params=version.params, metrics=version.metrics,
                                        lineage=version.lineage)


def error_of(response, status: int) -> dict:
    """The OpenAI-shaped error of ``response``, after checking its status and that shape exactly."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]
