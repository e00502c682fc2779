"""Serving an alias's release: which version answers a request, and the shadow copies run off the request path.

A request for ``name@alias`` whose alias has a candidate (:mod:`tailor.registry.release`):

* **canary**: the candidate answers ``share`` of the requests. The choice is sticky by the request's key, the
  OpenAI ``user`` field or else the ``X-Tailor-Route-Key`` header: SHA-256 of tenant, model, alias and key
  maps it to a point in [0, 1), and the candidate answers when the point is below the share, so one key
  always gets one version (and raising the share only moves keys to the candidate). A request without a key
  is drawn at random.
* **shadow**: the current version answers; the candidate then predicts on a copy of the request in a
  background task (:class:`ShadowRunner`), recorded with ``details: {"shadow": true}``, never returned.

Every inference response names the version that answered in its ``x-tailor-version`` header (``name:N``, or
a catalog base's id); the body's ``model`` stays the id the client sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Awaitable, Callable

from fastapi import Header

from tailor.catalog import CATALOG
from tailor.registry.entities import Route
from tailor.registry.service import Registry
from tailor.serve.models import NamedModel, registered

log = logging.getLogger("tailor.api")

VERSION_HEADER = "x-tailor-version"
ROUTE_KEY_HEADER = "X-Tailor-Route-Key"
SHADOW_MAX_PENDING = 64  # shadow copies running at once; one more is dropped (and counted), never waited for

RouteKey = Annotated[str | None, Header(alias=ROUTE_KEY_HEADER, max_length=256,
                                        description="keeps a client on one version during a canary (when the "
                                                    "body has no `user`)")]


class ShadowDropped(Exception):
    """A shadow copy was given up to keep serving's resources for the requests clients wait on."""


def check_room(batcher, texts: int) -> None:
    """Let a shadow copy of ``texts`` texts into the micro-batch queue only while the queue is at most half full
    with it, so the shadow never makes a client's request find the queue full (503).

    Raises:
        ShadowDropped: no room.
    """
    if batcher.pending + texts > batcher.max_pending // 2:
        raise ShadowDropped(f"{batcher.pending} texts queued")


@dataclass(frozen=True)
class Routed:
    """Who answers a request (``answering``) and who predicts on its copy in the shadow, if anyone."""

    answering: NamedModel
    shadow: NamedModel | None = None

    @property
    def version_label(self) -> str:
        """The ``x-tailor-version`` header's value: ``name:N``, or a catalog base's id."""
        named = self.answering
        return named.base.id if named.base is not None else named.version.ref


def route_point(tenant: str, name: str, alias: str, key: str) -> float:
    """The request key's fixed point in [0, 1) for this tenant's alias (the first 8 bytes of a SHA-256)."""
    digest = hashlib.sha256("\x1f".join((tenant, name, alias, key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose(route: Route, tenant: str, model_id: str, key: str | None,
           draw: Callable[[], float] = random.random) -> Routed:
    """Which of ``route``'s versions answer the request with ``key`` (see the module docstring)."""
    current = NamedModel(model_id, version=route.version)
    if route.candidate is None:
        return Routed(current)
    candidate = NamedModel(model_id, version=route.candidate)
    if route.mode == "shadow":
        return Routed(current, shadow=candidate)
    point = draw() if key is None else route_point(tenant, route.version.name, route.alias, key)
    return Routed(candidate if point < route.share else current)


def route_model(registry: Registry, tenant: str, model_id: str, key: str | None) -> Routed:
    """Resolve ``model_id`` for ``tenant`` as :func:`~tailor.serve.models.resolve_model` does, then choose the
    versions that answer a request with ``key`` (its ``user`` or route-key header, or None).

    Raises:
        NotFoundError: no such base or version for this tenant.
    """
    if model_id in CATALOG:
        return Routed(NamedModel(model_id, base=CATALOG[model_id]))
    route = registered(model_id, lambda: registry.store.route(tenant, model_id))
    return choose(route, tenant, model_id, key)


class ShadowRunner:
    """Runs shadow copies of requests as tasks on the event loop, at most ``max_pending`` at once: a copy
    beyond that is dropped, so the shadow never slows or fails the requests it copies.

    Args:
        on_outcome: called with ``done``, ``dropped`` or ``failed`` once per copy (for /metrics).
    """

    def __init__(self, max_pending: int = SHADOW_MAX_PENDING, on_outcome: Callable[[str], None] | None = None):
        self.max_pending = max_pending
        self.on_outcome = on_outcome
        self.outcomes = {"done": 0, "dropped": 0, "failed": 0}
        self._tasks: set[asyncio.Task] = set()
        self._idle = threading.Condition()

    def submit(self, work: Callable[[], Awaitable[None]]) -> bool:
        """Start ``work()`` in the background on the running loop; False when it was dropped (too many pending)."""
        with self._idle:
            if len(self._tasks) >= self.max_pending:
                self._count("dropped")
                return False
            task = asyncio.get_running_loop().create_task(self._run(work))
            self._tasks.add(task)
        task.add_done_callback(self._finished)
        return True

    async def _run(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except ShadowDropped:
            self._count("dropped")
        except Exception:  # noqa: BLE001 - a failed copy is logged and counted; no client waits for it
            log.warning("a shadow prediction failed", exc_info=True)
            self._count("failed")
        else:
            self._count("done")

    def _finished(self, task: asyncio.Task) -> None:
        with self._idle:
            self._tasks.discard(task)
            self._idle.notify_all()

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block this (non-loop) thread until no copy is pending; False if ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._tasks:
                left = deadline - time.monotonic()
                if left <= 0 or not self._idle.wait(left):
                    return not self._tasks
        return True

    def cancel(self) -> None:
        """Cancel the pending copies (the app is stopping)."""
        with self._idle:
            for task in list(self._tasks):
                task.cancel()
