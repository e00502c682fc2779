"""What several routers share: documented error responses, list paging arguments, and an uploaded labelled
file's rows."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from tailor.data.dataset import TextDataset
from tailor.data.files import CHAT
from tailor.errors import DataError, NotFoundError
from tailor.serve.errors import ApiError
from tailor.serve.schemas import ErrorResponse

_TEXTS = {400: "invalid request (the message names the field)", 401: "missing, unknown or revoked API key",
          403: "the API key lacks the scope", 404: "no such object for this tenant",
          409: "the object's state forbids it", 413: "the upload is over the size limit",
          415: "the body is not multipart/form-data",
          429: "a quota or rate limit of the key or tenant refuses it (rates: retry after the Retry-After "
               "header's seconds)",
          503: "busy, or the model's load just failed: retry after the Retry-After header's seconds"}


def errors(*statuses: int) -> dict:
    """OpenAPI ``responses`` for the given error statuses (400, 401, 403 and 429, the rate limits of every
    authenticated request, are always possible)."""
    return {status: {"model": ErrorResponse, "description": _TEXTS[status]}
            for status in sorted({400, 401, 403, 429, *statuses})}


Limit = Annotated[int, Query(ge=1, le=100, description="how many objects to return")]
After = Annotated[str | None, Query(min_length=1, max_length=64,
                                    description="return objects after (older than) this id")]


def labelled_file_rows(services, tenant: str, file_id: str, *, needed_by: str,
                       keep_columns: tuple[str, ...] = ()) -> tuple[TextDataset, str]:
    """The uploaded file's rows, read with the columns its upload check found (and ``keep_columns``: a missing
    one is a 400 naming ``slice_column``), and its name; ``needed_by`` (``"compare"``) names, in the refusal of a
    chat file, what needs text/label rows."""
    from tailor.data.ingest import read_dataset

    try:
        stored = services.files.get(tenant, file_id)
    except NotFoundError:
        raise ApiError(400, f"file {file_id!r} not found; upload it with POST /v1/files", param="file",
                       code="file_not_found") from None
    if stored.kind == CHAT:
        raise ApiError(400, f"file {file_id} holds chat data; {needed_by} needs text/label rows (CSV, TSV or JSONL)",
                       param="file", code="invalid_file")
    with services.files.plaintext(stored) as path:
        try:
            rows = read_dataset(path, stored.summary.get("text_column"), stored.summary.get("label_column"),
                                max_bytes=services.settings.max_file_bytes, keep_columns=keep_columns)
        except DataError as exc:  # the reader names the storage path, which the client must not see
            param = "slice_column" if exc.field is not None and exc.field in keep_columns else "file"
            raise ApiError(400, str(exc).replace(str(path), stored.filename), param=param,
                           code="invalid_file") from None
    return rows, stored.filename
