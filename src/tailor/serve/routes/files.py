"""``/v1/files``: upload (checked on arrival), list, get, download, delete, and Tailor's data report."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from tailor.errors import ConflictError, DataError, UsageError
from tailor.serve.deps import Reader, ServicesDep, Trainer
from tailor.serve.errors import ApiError
from tailor.serve.routes.common import After, Limit, errors
from tailor.serve.schemas import Deleted, FileList, FileObject
from tailor.serve.uploads import receive_upload

router = APIRouter(prefix="/v1/files", tags=["files"])

_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "CSV, TSV or JSONL"},
                   "purpose": {"type": "string", "enum": ["fine-tune"]}}}}}}}


@router.post("", response_model=FileObject, responses=errors(413, 415), openapi_extra=_UPLOAD_BODY,
             summary="Upload a training or validation file")
async def upload_file(request: Request, principal: Trainer, services: ServicesDep) -> dict:
    """Stream the file to disk under the size limit, then check it as training will read it. An upload past the
    room the tenant's storage quota leaves is stopped and refused with 429; nothing of it is kept."""
    store = services.files
    limit = services.settings.max_file_bytes
    room = await run_in_threadpool(services.limits.upload_room, principal.tenant, store)
    try:
        upload = await receive_upload(request, store.incoming_path(), limit if room is None else min(limit, room),
                                      open_sink=lambda path: store.incoming_writer(principal.tenant, path))
    except ApiError as exc:
        if exc.code == "file_too_large" and room is not None and room < limit:
            raise services.limits.storage_refusal(principal.tenant, store) from None
        raise
    purpose = upload.fields.get("purpose")
    if not purpose:
        upload.path.unlink(missing_ok=True)
        raise ApiError(400, "missing form field 'purpose' (use purpose=fine-tune)", param="purpose")
    try:
        stored = await run_in_threadpool(store.add, principal.tenant, upload.path, filename=upload.filename,
                                         purpose=purpose, sha256=upload.sha256, max_bytes=limit)
    except DataError as exc:
        raise ApiError(400, f"{upload.filename}: {exc}", param=exc.field or "file", code="invalid_file") from None
    except UsageError as exc:  # the only one store.add raises: an unknown purpose
        raise ApiError(400, str(exc), param="purpose") from None
    return stored.to_openai()


@router.get("", response_model=FileList, responses=errors(404), summary="List the tenant's files")
def list_files(principal: Reader, services: ServicesDep, after: After = None, limit: Limit = 100,
               purpose: Annotated[str | None, Query(min_length=1, max_length=32)] = None) -> dict:
    files, has_more = services.files.list(principal.tenant, purpose=purpose, after=after, limit=limit)
    data = [f.to_openai() for f in files]
    return {"object": "list", "data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


@router.get("/{file_id}", response_model=FileObject, responses=errors(404), summary="Get a file")
def get_file(file_id: str, principal: Reader, services: ServicesDep) -> dict:
    return services.files.get(principal.tenant, file_id).to_openai()


@router.get("/{file_id}/content", response_class=FileResponse, responses=errors(404),
            summary="Download a file's content")
def get_file_content(file_id: str, principal: Reader, services: ServicesDep) -> FileResponse:
    stored = services.files.get(principal.tenant, file_id)
    media = "application/jsonl" if stored.filename.lower().endswith((".jsonl", ".json")) else "text/csv"
    if services.files.keys is None:
        return FileResponse(services.files.path(stored), media_type=media, filename=stored.filename)
    stream = services.files.open(stored)  # decrypted chunk by chunk as the response is sent
    return StreamingResponse(_chunks(stream), media_type=media,
                             headers={"Content-Disposition": _attachment(stored.filename)})


def _attachment(filename: str) -> str:
    """A Content-Disposition for ``filename``, RFC 5987-encoded when it is not plain ASCII (as FileResponse)."""
    quoted = quote(filename)
    return f'attachment; filename="{filename}"' if quoted == filename else f"attachment; filename*=utf-8''{quoted}"


def _chunks(stream, size: int = 1024 * 1024):
    with stream:
        while chunk := stream.read(size):
            yield chunk


@router.get("/{file_id}/report", response_model=dict, responses=errors(404),
            summary="Tailor: the data report of a file (label balance, lengths, likely label errors, PII)")
def get_file_report(file_id: str, principal: Reader, services: ServicesDep) -> dict:
    """Built on first request and kept beside the file. A text/label file's report also has
    ``length_histogram`` (kept rows per text length in characters) and ``blockers`` (why its rows cannot train a
    classifier, e.g. one class left after cleaning; empty when they can)."""
    stored = services.files.get(principal.tenant, file_id)
    cached = services.files.read_note(stored, "report.json")
    if cached is not None:
        return json.loads(cached)
    with services.files.plaintext(stored) as path:
        report = _build_report(stored, path, services.settings)
    services.files.write_note(stored, "report.json", json.dumps(report, ensure_ascii=False))
    return report


def _build_report(stored, path, settings) -> dict:
    if stored.kind == "chat":
        from tailor.data.chat import chat_report_for_file

        return chat_report_for_file(path)
    from tailor.data.clean import clean_dataset
    from tailor.data.ingest import read_dataset
    from tailor.data.report import build_data_report, length_histogram

    raw = read_dataset(path, max_bytes=settings.max_file_bytes)
    cleaned = clean_dataset(raw, max_chars=settings.max_text_chars)
    report = build_data_report(raw, cleaned)
    report["source"]["path"] = stored.filename
    report["length_histogram"] = length_histogram([len(text) for text in cleaned.dataset.texts])
    report["blockers"] = _training_blockers(cleaned.dataset)
    return report


def _training_blockers(cleaned) -> list[str]:
    """Why the cleaned rows cannot train a classifier (the check a job makes first), or nothing."""
    from tailor.data.validate import check_trainable

    try:
        check_trainable(cleaned, what="the file's rows after cleaning")
    except DataError as exc:
        return [str(exc)]
    return []


@router.delete("/{file_id}", response_model=Deleted, responses=errors(404, 409), summary="Delete a file")
def delete_file(file_id: str, principal: Trainer, services: ServicesDep) -> dict:
    services.files.get(principal.tenant, file_id)
    users = services.jobs.uses_file(principal.tenant, file_id)
    if users:
        raise ConflictError(f"file {file_id} is used by unfinished job {users[0]}; cancel it or wait for it to end")
    services.files.delete(principal.tenant, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
