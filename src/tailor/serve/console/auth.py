"""Sign in with an API key, sign out, and the console's home page.

Signing in opens a session (:mod:`tailor.security.sessions`) whose token lives in an HttpOnly, SameSite
cookie; the page scripts never see the key nor the token. Every form that changes something carries the
session's CSRF token (the sign-in form, before a session exists, a token of its own in a cookie: a page on
another site can submit a form here, never read the token).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import RedirectResponse, Response

from tailor.errors import AuthenticationError, PermissionDeniedError
from tailor.security.sessions import csrf_matches
from tailor.serve.audit import note_caller
from tailor.serve.console.render import AnyPage, SignedIn, language_param, remember
from tailor.serve.deps import SESSION_COOKIE
from tailor.serve.routes import files as files_api
from tailor.serve.routes import jobs as jobs_api
from tailor.serve.routes import models as models_api

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])
SIGNIN_COOKIE = "tailor_signin"  # the sign-in form's own CSRF token
SIGN_IN_REASONS = ("expired", "revoked", "key_expired", "signed_out", "signin")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this server, never another site."""
    if target and target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


def _sign_in_form(page, *, next_path: str, reason: str | None = None, error: str | None = None,
                  status: int = 200) -> Response:
    token = page.request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    response = page.render("signin.html", status=status, title=page.t("signin.title"), next_path=next_path,
                           reason=reason, error=error, form_csrf=token)
    remember(response, SIGNIN_COOKIE, token, max_age=3600, secure=page.services.settings.console_secure_cookies)
    return response


@router.get("/sign-in")
async def sign_in_page(page: AnyPage, next: Annotated[str | None, Query(max_length=2000)] = None,
                       reason: Annotated[str | None, Query(pattern="^(" + "|".join(SIGN_IN_REASONS) + ")$")] = None
                       ) -> Response:
    return _sign_in_form(page, next_path=safe_next(next), reason=reason)


@router.post("/sign-in")
async def sign_in(page: AnyPage, key: Annotated[str, Form(max_length=200)] = "",
                  csrf: Annotated[str, Form(max_length=200)] = "",
                  next: Annotated[str, Form(max_length=2000)] = "/console") -> Response:
    if not csrf_matches(page.request.cookies.get(SIGNIN_COOKIE, ""), csrf):
        raise PermissionDeniedError(page.t("error.csrf"))
    if not key.strip():
        return _sign_in_form(page, next_path=safe_next(next), error=page.t("signin.key_missing"), status=400)
    try:
        token, session = await page.call(page.services.sessions.open, key.strip())
    except AuthenticationError as exc:
        return _sign_in_form(page, next_path=safe_next(next), error=str(exc), status=401)
    note_caller(page.request, session.principal, console=True)
    response = RedirectResponse(safe_next(next), status_code=303)
    settings = page.services.settings
    remember(response, SESSION_COOKIE, token, max_age=int(settings.console_session_hours * 3600),
             secure=settings.console_secure_cookies)
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(page: SignedIn, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    if not csrf_matches(page.session.csrf, csrf):
        raise PermissionDeniedError(page.t("error.csrf"))
    await page.call(page.services.sessions.close, page.request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/console/sign-in?reason=signed_out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("")
async def home(page: SignedIn) -> Response:
    """Where the tenant stands in the loop: its files, jobs and models, and the next step."""
    files = await page.call(files_api.list_files, page.principal, page.services, limit=5)
    jobs = await page.call(jobs_api.list_jobs, page.principal, page.services, limit=5)
    models = await page.call(models_api.list_models, page.principal, page.services)
    tuned = [m for m in models["data"] if m["version"] is not None]
    return page.render("home.html", title=page.t("home.title"), active="", files=files["data"], jobs=jobs["data"],
                       models=tuned)
