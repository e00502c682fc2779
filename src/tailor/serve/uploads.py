"""Receive a ``multipart/form-data`` upload straight to disk, stopping as soon as it passes the size limit.

Starlette's form parser would spool the whole body before a route sees it; this parser streams the
``file`` part into the file store's incoming directory, hashing it on the way, and keeps only the small
``purpose`` field in memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from tailor.data.ingest import format_mib
from tailor.serve.errors import ApiError

_MAX_FIELD_BYTES = 1024


@dataclass
class Upload:
    """The received parts: the file's path, name, size and SHA-256, and the form's other fields."""

    path: Path
    filename: str | None = None
    size: int = 0
    sha256: str = ""
    fields: dict[str, str] = field(default_factory=dict)


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise ApiError(415, f"Content-Type must be multipart/form-data, not {content_type.decode() or 'missing'!r}",
                       code="unsupported_media_type")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed multipart body: the Content-Type header has no boundary",
                       code="invalid_multipart")
    return boundary


async def receive_upload(request: Request, target: Path, max_bytes: int,
                         open_sink: Callable[[Path], BinaryIO] | None = None) -> Upload:
    """Stream the request's ``file`` part to ``target`` and collect the other form fields.

    Args:
        open_sink: opens ``target`` for writing (the file store's, which seals the bytes as they arrive when
            encryption is on); plain ``open(target, "wb")`` by default. ``max_bytes`` counts the bytes received.

    Raises:
        ApiError: 415 for another content type, 413 past ``max_bytes``, 400 for a malformed body or a
            missing ``file`` part. ``target`` is removed on any failure.
    """
    boundary = _boundary(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise ApiError(413, f"the upload is {format_mib(int(declared))}, over the limit of {format_mib(max_bytes)}",
                       param="file", code="file_too_large")
    upload = Upload(target)
    digest = hashlib.sha256()
    state: dict = {"headers": {}, "field": b"", "field_value": b"", "name": None, "value": bytearray(), "sink": None}
    problems: list[ApiError] = []

    def on_part_begin():
        state.update(headers={}, name=None, value=bytearray(), sink=None)

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["field_value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["field_value"]
        state.update(field=b"", field_value=b"")

    def on_headers_finished():
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = params.get(b"name", b"").decode("utf-8", "replace")
        if state["name"] == "file":
            upload.filename = params.get(b"filename", b"").decode("utf-8", "replace") or "upload"
            state["sink"] = open_sink(target) if open_sink is not None else open(target, "wb")

    def on_part_data(data, start, end):
        chunk = data[start:end]
        if state["sink"] is not None:
            upload.size += len(chunk)
            if upload.size > max_bytes:
                if not problems:
                    problems.append(ApiError(413, f"the file is over the limit of {format_mib(max_bytes)}",
                                             param="file", code="file_too_large"))
                return
            digest.update(chunk)
            state["sink"].write(chunk)
        elif len(state["value"]) + len(chunk) <= _MAX_FIELD_BYTES:
            state["value"].extend(chunk)
        elif not problems:
            problems.append(ApiError(400, f"form field {state['name']!r} is too long", param=state["name"]))

    def on_part_end():
        if state["sink"] is not None:
            state["sink"].close()
            state["sink"] = None
        elif state["name"]:
            upload.fields[state["name"]] = state["value"].decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if problems:
                raise problems[0]
        parser.finalize()
        if upload.filename is None:
            raise ApiError(400, "the form has no 'file' part: send the file as multipart field 'file'", param="file",
                           code="missing_file")
        if upload.size == 0:
            raise ApiError(400, "the uploaded file is empty", param="file", code="empty_file")
    except ApiError:
        _discard(state, target)
        raise
    except Exception as exc:  # the parser's own errors: a malformed body
        _discard(state, target)
        raise ApiError(400, f"malformed multipart body: {exc}", code="invalid_multipart") from None
    upload.sha256 = digest.hexdigest()
    return upload


def _discard(state: dict, target: Path) -> None:
    if state["sink"] is not None:
        state["sink"].close()
    target.unlink(missing_ok=True)
