"""The web console: the whole customization loop in a browser, in English and Simplified Chinese.

Served by the API's own app under ``/console`` (``/`` redirects there). Pages render on the server from the
API's route functions (:mod:`tailor.serve.routes`) and stores, so no logic exists twice; their small scripts
(``static/``) call the same ``/v1`` routes, signed by the session cookie and the CSRF token
(:func:`tailor.serve.deps.get_principal`). Every asset ships in the package: nothing is fetched from outside.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse

PAGES = ("auth", "pages.data", "pages.finetune", "pages.jobs", "pages.models", "pages.playground",
         "pages.monitoring", "pages.review", "pages.keys", "pages.trust")
STATIC = Path(__file__).parent / "static"


def install_console(app: FastAPI) -> None:
    """Add the console's pages and assets to ``app``, and answer errors on its pages with pages (a 401 with
    the sign-in page), keeping the API's JSON errors everywhere else. Call after the API's error handlers."""
    for name in PAGES:
        app.include_router(importlib.import_module(f"{__name__}.{name}").router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    for exc_class, handler in list(app.exception_handlers.items()):
        app.add_exception_handler(exc_class, _page_or(handler))


def _is_page(request: Request) -> bool:
    path = request.url.path
    return (path == "/console" or path.startswith("/console/")) and not path.startswith("/console/static/")


def _page_or(api_handler):
    """The API's handler for an error, or on a console page its message as a page (the status is the API's)."""

    async def handle(request: Request, exc: Exception):
        response = await api_handler(request, exc)
        if not _is_page(request):
            return response
        status = response.status_code
        if status == 401:
            from tailor.serve.console.auth import safe_next

            reason = getattr(exc, "reason", "signin")
            target = safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            return RedirectResponse("/console/sign-in?" + urlencode({"next": target, "reason": reason}), status_code=303)
        from tailor.serve.console.render import any_page

        page = await any_page(request)
        message = json.loads(response.body)["error"]["message"]
        rendered = page.render("error.html", status=status, title=page.t("error.title", status=status),
                               status_code=status, message=message)
        if "retry-after" in response.headers:  # a rate limit's wait, as the API gives it
            rendered.headers["Retry-After"] = response.headers["retry-after"]
        return rendered

    return handle
