"""Every state-changing request to the API goes into the audit log (:mod:`tailor.security.audit`).

:class:`AuditMiddleware` records each ``POST``, ``PUT``, ``PATCH`` and ``DELETE`` that reached a route, refused
ones included (4xx, with the error's message), before its response leaves: a client that saw the answer can find
the row. The console's form posts (sign-in, sign-out) and its scripts' calls go through the same routes and are
recorded the same way. The actor comes from :func:`note_caller`, which authentication calls as soon as it knows
the key; a request refused before that (an unknown query parameter) is attributed from its credentials here.

Not recorded, because they change nothing and are the hot path of serving (an audit row would add a write to
every answer): :data:`NOT_STATE_CHANGES`, inference (classifications, embeddings, chat and text completions) and
computations that only read (comparing two versions, estimating a job). Requests to no route are not recorded
either: they name no action.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
from collections.abc import Sequence

import anyio
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tailor.errors import AuthenticationError
from tailor.security.audit import ANONYMOUS, AuditLog
from tailor.security.keys import Principal

log = logging.getLogger("tailor.audit")

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_STATE_CHANGES = frozenset({
    "/v1/classifications", "/v1/embeddings", "/v1/chat/completions", "/v1/completions",  # inference
    "/v1/models/compare", "/v1/fine_tuning/jobs/estimate",  # read-only computations
})
_CALLER = "audit_caller"  # request.state key: (tenant, actor)
_MAX_HELD_BODY = 256 * 1024  # a longer answer is sent on without its id read (no audited route answers so much)


def note_caller(request: Request, principal: Principal, *, console: bool = False) -> None:
    """Tell the audit log who makes this request: the key's id, as ``console:<key id>`` from the web console."""
    setattr(request.state, _CALLER, (principal.tenant, f"console:{principal.key_id}" if console else principal.key_id))


class TrustedProxies:
    """The reverse proxies whose ``X-Forwarded-For`` is believed (``Settings.forwarded_allow_ips``)."""

    def __init__(self, entries: Sequence[str]):
        self.any = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]

    def trusts(self, host: str) -> bool:
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client_address(self, scope: Scope) -> str | None:
        """The caller's address: the peer's, or, when the peer is a trusted proxy, the nearest address in
        ``X-Forwarded-For`` that is not a trusted proxy (the left-most when every proxy is trusted), as uvicorn
        reads it with ``--forwarded-allow-ips``."""
        peer = scope["client"][0] if scope.get("client") else None
        if peer is None or not self.trusts(peer):
            return peer
        hops = [hop.strip() for name, value in scope["headers"] if name == b"x-forwarded-for"
                for hop in value.decode("latin-1").split(",") if hop.strip()]
        if not hops:
            return peer
        if self.any:
            return hops[0]
        return next((hop for hop in reversed(hops) if not self.trusts(hop)), hops[0])


class AuditMiddleware:
    """Appends one audit row per state-changing request (see the module's docstring)."""

    def __init__(self, app: ASGIApp, audit: AuditLog, proxies: TrustedProxies):
        self.app, self.audit, self.proxies = app, audit, proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in STATE_CHANGING_METHODS
                or scope["path"] in NOT_STATE_CHANGES):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # shared with the request, whose authentication notes the caller in it
        held: list[Message] = []  # the response's start, held until its body is read (or grows too long)
        body = bytearray()
        done = False

        async def record_then_send(message: Message) -> None:
            nonlocal done
            if done:
                await send(message)
            elif message["type"] == "http.response.start":
                held.append(message)
            elif message["type"] != "http.response.body":  # a file sent by path, trailers: no body to read
                done = True
                await self._record_and_release(scope, held.pop(), None, [message], send)
            else:
                body.extend(message.get("body", b""))
                more = message.get("more_body", False)
                if more and len(body) <= _MAX_HELD_BODY:
                    return
                start = held.pop()
                rest = {"type": "http.response.body", "body": bytes(body), "more_body": more}
                done = True
                await self._record_and_release(scope, start, None if more else _json_of(start, bytes(body)), [rest],
                                               send)

        try:
            await self.app(scope, receive, record_then_send)
        except Exception as exc:
            if not done:
                await self._record(scope, 500, {"error": {"message": f"{type(exc).__name__}: {exc}"}})
            raise

    async def _record_and_release(self, scope: Scope, start: Message, answer: dict | None, rest: list[Message],
                                  send: Send) -> None:
        """Record the request, then send the held start of its response and what followed it."""
        await self._record(scope, start["status"], answer)
        await send(start)
        for message in rest:
            await send(message)

    async def _record(self, scope: Scope, status: int, answer: dict | None) -> None:
        """Append the request's row: its caller, route, path ids (and the id of what it created), status and
        error message (from ``answer``, the JSON body of the response, when it has one)."""
        route = scope.get("route")
        if route is None:
            return
        tenant, actor = scope["state"].get(_CALLER) or await anyio.to_thread.run_sync(self._identify, scope)
        target = dict(scope.get("path_params", {}))
        answer = answer or {}
        problem = answer.get("error") if status >= 400 else None
        error = str(problem.get("message")) if isinstance(problem, dict) else None
        if status < 400 and isinstance(answer.get("id"), str) and answer["id"] not in target.values():
            target["id"] = answer["id"]  # what a create made: the new file, job or key
        write = functools.partial(self.audit.record, tenant=tenant, actor=actor,
                                  action=f"{scope['method']} {route.path}", target=target,
                                  client=self.proxies.client_address(scope), result=str(status), error=error)
        try:
            await anyio.to_thread.run_sync(write)
        except Exception:  # the action is done; a failed audit write must be loud, not turn it into a 500
            log.exception("could not write the audit row of %s %s", scope["method"], scope["path"])

    def _identify(self, scope: Scope) -> tuple[str | None, str]:
        """The caller of a request refused before its authentication ran, from its key or console session."""
        from tailor.serve.deps import SESSION_COOKIE  # here: deps imports this module (note_caller)

        request = Request(scope)
        services = scope["app"].state.services
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() == "bearer" and secret:
                principal = services.tenants.authenticate(secret.strip())
                return principal.tenant, principal.key_id
            if SESSION_COOKIE in request.cookies:
                principal = services.sessions.get(request.cookies[SESSION_COOKIE]).principal
                return principal.tenant, f"console:{principal.key_id}"
        except AuthenticationError:
            pass
        return None, ANONYMOUS


def _json_of(start: Message, body: bytes) -> dict | None:
    """The JSON object of a response body; None for another kind of body."""
    content_type = dict(start.get("headers", [])).get(b"content-type", b"")
    if not content_type.startswith(b"application/json"):
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None
