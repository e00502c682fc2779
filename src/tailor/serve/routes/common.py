"""What several routers share: documented error responses and list paging arguments."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

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
