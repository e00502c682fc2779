"""Every error leaves the API as OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with a 4xx
status that fits it; an unexpected exception is logged and answered with a plain 500 body."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tailor.errors import (AuthenticationError, ConflictError, DataError, NotFoundError, PermissionDeniedError,
                           QuotaExceededError, TailorError, UnavailableError)

log = logging.getLogger("tailor.api")


class ApiError(Exception):
    """An error with its HTTP status, raised by routes for what the library does not check itself."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type


def error_response(status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _tailor_error(exc: TailorError) -> JSONResponse:
    if isinstance(exc, AuthenticationError):
        return error_response(401, str(exc), type="authentication_error", code="invalid_api_key",
                              headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, PermissionDeniedError):
        return error_response(403, str(exc), type="permission_error", code="insufficient_scope")
    if isinstance(exc, NotFoundError):
        return error_response(404, str(exc), code="not_found")
    if isinstance(exc, ConflictError):
        return error_response(409, str(exc), code="conflict")
    if isinstance(exc, QuotaExceededError):  # OpenAI's 429: type "requests" for a rate, else "insufficient_quota"
        rate = exc.limit in ("rpm", "key_rpm")
        return error_response(429, str(exc), type="requests" if rate else "insufficient_quota",
                              code="rate_limit_exceeded" if rate else "quota_exceeded",
                              headers={"Retry-After": str(exc.retry_after)} if exc.retry_after else None)
    if isinstance(exc, UnavailableError):
        return error_response(503, str(exc), type="server_error", code="unavailable",
                              headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, DataError):
        return error_response(400, str(exc), param=exc.field, code="invalid_file")
    return error_response(400, str(exc), code="invalid_request")


def status_of(exc: BaseException) -> int:
    """The HTTP status the API answers ``exc`` with."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, TailorError):
        return _tailor_error(exc).status_code
    return 500


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    # A union (a text or a list of texts) reports one error per member; the "wrong type" ones come from the
    # members the input is not (a list is not a string), so report the others when there are any.
    problems = [e for e in exc.errors() if not e.get("type", "").endswith("_type")] or list(exc.errors())
    first = problems[0]
    location = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    # Union members add their type names to the location (input.str, input.list[str]); keep the field names.
    fields = [p for p in location if not any(ch in p for ch in "[]") and p not in ("str", "int", "float", "bool")
              and not p.startswith("constrained-")]
    if first.get("type") == "json_invalid":  # its location is a character offset, not a field
        fields = []
    param = ".".join(fields) or None
    detail = first.get("msg", "invalid value")
    if first.get("type") == "value_error":  # our validators' own messages, without pydantic's "Value error, "
        detail = str(first.get("ctx", {}).get("error", detail.removeprefix("Value error, ")))
    elif first.get("type") == "extra_forbidden":
        detail = "unknown field"
    elif first.get("type") == "json_invalid":
        detail = f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
    elif first.get("type") == "model_attributes_type":
        detail = "the body must be a JSON object"
    message = f"{param}: {detail}" if param else detail
    extra = len(problems) - 1
    if extra > 0:
        message += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return error_response(400, message, param=param, code="invalid_value")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= set(route_methods)
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through OpenAI's error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code)

    @app.exception_handler(TailorError)
    async def tailor_error(_: Request, exc: TailorError):
        return _tailor_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        return _validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            message = f"method {request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        elif exc.status_code == 404:
            message = f"unknown route: {request.method} {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error; the server log has the details", type="server_error")
