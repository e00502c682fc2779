"""What every console page handler gets: the request's services, its signed-in user, its language, and
:meth:`Page.render` for a template of ``templates/``.

Templates are Jinja2 with autoescaping on, so every text from data (file contents, labels, model names, error
messages) is escaped wherever it is shown; only the console's own strings and rendered charts are marked safe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import tailor
from tailor.errors import AuthenticationError
from tailor.security.keys import Principal
from tailor.security.sessions import Session
from tailor.serve.audit import note_caller
from tailor.serve.console.formats import GLOBALS
from tailor.serve.console.i18n import LANG_COOKIE, LANGUAGE_NAMES, LANGUAGES, catalog, pick_language
from tailor.serve.deps import SESSION_COOKIE, Services

_TEMPLATES = Path(__file__).parent / "templates"
_ENV = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.globals.update(GLOBALS)

# Pages only load what this server sends: no CDN, no outside font, no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
                               "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NAV = ("data", "finetune", "jobs", "models", "playground", "monitoring", "review", "gate", "keys", "audit")
NAV_SCOPES = {"audit": "admin"}  # pages listed only for keys with this scope (the others refuse them too)


@dataclass
class Page:
    """One page request: its services, session (None on the sign-in page) and language."""

    request: Request
    services: Services
    session: Session | None
    lang: str
    started: float = field(default_factory=time.perf_counter)

    @property
    def principal(self) -> Principal:
        assert self.session is not None, "a signed-in page"
        return self.session.principal

    def allows(self, scope: str) -> bool:
        return self.session is not None and self.session.principal.allows(scope)

    @property
    def nav(self) -> list[str]:
        """The pages this user's side navigation lists."""
        return [name for name in NAV if name not in NAV_SCOPES or self.allows(NAV_SCOPES[name])]

    def t(self, key: str, **fields) -> str:
        return catalog().text(self.lang, key, **fields)

    async def call(self, function, *args, **kwargs):
        """Run one of the API's route functions (or a store's method) off the event loop, as the API does."""
        return await run_in_threadpool(function, *args, **kwargs)

    def url(self, path: str, **query) -> str:
        """``path`` with ``query`` (None values left out) as a link."""
        shown = {k: v for k, v in query.items() if v is not None}
        return path + ("?" + urlencode(shown) if shown else "")

    def lang_url(self, lang: str) -> str:
        """This page in ``lang``: the same path and query, with ``lang`` set."""
        query = {k: v for k, v in self.request.query_params.items() if k != "lang"}
        return self.url(self.request.url.path, **query, lang=lang)

    def render(self, template: str, *, status: int = 200, title: str, active: str = "", **context) -> HTMLResponse:
        """The page ``templates/<template>`` in this request's language, with the console's security headers."""
        html = _ENV.get_template(template).render(
            page=self, t=self.t, lang=self.lang, languages=LANGUAGES, language_names=LANGUAGE_NAMES,
            title=title, active=active, nav=self.nav, session=self.session, version=tailor.__version__,
            strings=catalog().table(self.lang), **context)
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        response.headers["Server-Timing"] = f"page;dur={(time.perf_counter() - self.started) * 1000:.1f}"
        if self.request.query_params.get("lang") in LANGUAGES:
            remember(response, LANG_COOKIE, self.lang, max_age=365 * 24 * 3600, http_only=False,
                     secure=self.services.settings.console_secure_cookies)
        return response


def remember(response, name: str, value: str, *, max_age: int, http_only: bool = True, secure: bool = False) -> None:
    """Set a console cookie: for the whole site, SameSite=Lax (sent on top-level links, never by other sites'
    forms or scripts), HttpOnly unless a script must read it."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=http_only, samesite="lax", secure=secure)


async def language_param(lang: Annotated[Literal["en", "zh"] | None,
                                         Query(description="the page's language (remembered)")] = None) -> None:
    """Declares ``?lang=`` on every console route (the app refuses query parameters a route does not take)."""


async def any_page(request: Request) -> Page:
    """A page that needs no sign-in; it still knows the session if there is one."""
    services = request.app.state.services
    token = request.cookies.get(SESSION_COOKIE)
    session = None
    if token:
        try:
            session = services.sessions.get(token)
        except AuthenticationError:
            session = None
    return Page(request, services, session, pick_language(request))


async def signed_in_page(request: Request) -> Page:
    """A page of a signed-in user, counted against its key's and tenant's request rates.

    Raises:
        AuthenticationError: no session cookie; SessionError: the session ended or its key was revoked (the
            console answers both with the sign-in page and the reason).
        QuotaExceededError: the key's or the tenant's requests per minute are used up (a 429 page).
    """
    services = request.app.state.services
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise AuthenticationError("sign in with an API key")
    session = services.sessions.get(token)
    note_caller(request, session.principal, console=True)
    if services.limits is not None:
        services.limits.check_request(session.principal)
    return Page(request, services, session, pick_language(request))


AnyPage = Annotated[Page, Depends(any_page)]
SignedIn = Annotated[Page, Depends(signed_in_page)]
