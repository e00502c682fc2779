"""``GET /v1/models/{model_id}/export``: a fine-tuned version as a download, in a format of its task (a
Hugging Face directory, a PEFT adapter, ONNX, or GGUF for chat), packed as a .zip or .tar.gz
(see :mod:`tailor.models.export`), the hf and peft layouts with the version's model card as README.md. Built
once per version, format and archive (and card) into the storage root's cache; with a master key configured
(encryption at rest) built for each download in a private memory-backed workspace instead, never cached."""

from __future__ import annotations

import re
import shutil
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from tailor.models.export import (ARCHIVES, export_archive, export_card, export_formats, exports_cache_dir,
                                  private_export_archive)
from tailor.serve.deps import Reader, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.models import resolve_model
from tailor.serve.routes.common import errors

router = APIRouter(prefix="/v1/models", tags=["models"])
_DOWNLOAD = {200: {"description": "the archive", "content": {media: {} for media in ARCHIVES.values()}}}


def download_name(ref: str, fmt: str) -> str:
    """The archive's folder and file stem for version ``ref`` (``name:N``): ``name-vN-fmt``, with anything but
    letters, digits, ``.``, ``_`` and ``-`` (an ``ft:`` name's colons) made ``_``."""
    name, version = ref.rsplit(":", 1)
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)}-v{version}-{fmt}"


@router.get("/{model_id}/export", response_class=FileResponse, responses={**_DOWNLOAD, **errors(404)},
            summary="Tailor: download a fine-tuned version as a Hugging Face directory, a PEFT adapter, ONNX or "
                    "GGUF, in a .zip or .tar.gz")
def export_model(model_id: str, principal: Reader, services: ServicesDep,
                 format: Annotated[Literal["hf", "peft", "onnx", "gguf"], Query(
                     description="hf, peft (LoRA versions) or onnx for a classifier (a head-only one: onnx); hf, "
                                 "peft or gguf for a chat model")],
                 archive: Annotated[Literal["zip", "tar.gz"], Query(description="the download's packing")] = "zip"
                 ) -> FileResponse:
    """The version ``model_id`` names (``name``, ``name:N``, ``name@alias``) exported as ``format``. The first
    download of a version in a format builds it (ONNX and GGUF convert the model: seconds to minutes); later
    ones are served from the cache. A base model, or a format the version's task and method lack, is a 400
    naming the parameter; another tenant's model a 404."""
    named = resolve_model(services.registry, principal.tenant, model_id)
    if named.version is None:
        raise ApiError(400, f"{model_id!r} is a base model of the catalog; export a fine-tuned version",
                       param="model_id")
    version = named.version
    formats = export_formats(version.task, version.method)
    if format not in formats:
        raise ApiError(400, f"format {format!r} is not available for {version.ref} (a {version.task} version "
                            f"trained with method {version.method}); formats: {', '.join(formats)}",
                       param="format", code="invalid_format")
    stem = download_name(version.ref, format)
    artifact = services.registry.artifact_dir(version)
    card = export_card(services.registry.store, version, format)
    if services.registry.artifacts.keyring is not None:  # encryption at rest: built in memory, sent, removed
        path = private_export_archive(artifact, format, archive, stem, card=card)
        return FileResponse(path, media_type=ARCHIVES[archive], filename=f"{stem}.{archive}",
                            background=BackgroundTask(shutil.rmtree, path.parent, ignore_errors=True))
    path = export_archive(artifact, format, archive, exports_cache_dir(services.settings.home) / version.artifact_path,
                          stem, card=card)
    return FileResponse(path, media_type=ARCHIVES[archive], filename=f"{stem}.{archive}")
