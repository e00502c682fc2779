"""Prediction records written off the request path: a request appends its records to a list (no I/O); a
thread writes what gathered every ``flush_s`` seconds, or sooner once ``max_batch`` wait, in one transaction,
and prunes every tenant's records to its retention limits every ``prune_every_s`` seconds.

Before a write, the inputs and outputs of tenants that redact personal data (``redacting()``, read once per
write) have it replaced by placeholders (:func:`tailor.data.pii.redact`), so it never reaches the database.

A write that fails (the database is briefly away) keeps its records for the next try; only beyond
``max_pending`` waiting records are the oldest dropped, and counted (:attr:`Recorder.dropped`), so a long
outage cannot exhaust memory. Reads that must see a request's own records (a stored completion fetched right
after it was made) call :meth:`Recorder.flush` first.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import timedelta
from typing import Callable

from tailor.data.pii import redact
from tailor.db import now
from tailor.monitor.records import PredictionRecord, PredictionStore

log = logging.getLogger(__name__)


class Recorder:
    """Batches :class:`PredictionRecord` writes to a :class:`PredictionStore`.

    Args:
        store: where records go.
        limits: ``tenant -> (days, rows)``: how long and how many of a tenant's records are kept.
        flush_s: the longest a record waits before it is written.
        max_batch: a write starts at once when this many records wait.
        max_pending: beyond this many waiting records (writes failing), the oldest are dropped.
        prune_every_s: how often every tenant's records are pruned to its ``limits``.
        redacting: the tenants whose records' inputs and outputs are redacted (None: no one's).
    """

    def __init__(self, store: PredictionStore, limits: Callable[[str], tuple[int, int]], *, flush_s: float = 0.5,
                 max_batch: int = 2000, max_pending: int = 200_000, prune_every_s: float = 300.0,
                 redacting: Callable[[], set[str]] | None = None):
        self.store, self.limits, self.redacting = store, limits, redacting
        self.flush_s, self.max_batch, self.max_pending, self.prune_every_s = flush_s, max_batch, max_pending, prune_every_s
        self.written = self.dropped = self.pruned = self.failures = 0
        self._pending: list[PredictionRecord] = []
        self._lock = threading.Lock()  # guards _pending and the counters
        self._write_lock = threading.Lock()  # one write at a time, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, records: list[PredictionRecord]) -> None:
        """Queue ``records`` for the next write (never blocks on the database)."""
        with self._lock:
            self._pending.extend(records)
            excess = len(self._pending) - self.max_pending
            if excess > 0:
                del self._pending[:excess]
                self.dropped += excess
            full = len(self._pending) >= self.max_batch
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write every waiting record now; returns how many were written (0 when the write failed: they
        wait for the next try)."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                batch = self._redacted(batch)
                self.store.add(batch)
            except Exception:  # noqa: BLE001 - the database may be briefly away; the records wait for it
                log.exception("writing %d prediction records failed; they wait for the next try", len(batch))
                with self._lock:
                    self._pending[:0] = batch
                    self.failures += 1
                return 0
            with self._lock:
                self.written += len(batch)
            return len(batch)

    def _redacted(self, batch: list[PredictionRecord]) -> list[PredictionRecord]:
        """``batch`` with the personal data of redacting tenants' inputs and outputs replaced."""
        tenants = self.redacting() if self.redacting is not None else set()
        if not tenants:
            return batch
        return [replace(r, input=_redact_strings(r.input), output=_redact_strings(r.output)) if r.tenant in tenants
                else r for r in batch]

    def prune(self) -> int:
        """Prune every tenant's records to its ``limits``: older than its days, beyond its newest rows."""
        removed = 0
        for tenant in self.store.tenants():
            days, rows = self.limits(tenant)
            removed += self.store.prune(tenant, now() - timedelta(days=days), rows)
        with self._lock:
            self.pruned += removed
        return removed

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tailor-recorder", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last write."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        self.flush()

    def _run(self) -> None:
        last_prune = float("-inf")  # prune once at start: the server may have been down past a limit
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()
            if time.monotonic() - last_prune >= self.prune_every_s:
                last_prune = time.monotonic()
                try:
                    self.prune()
                except Exception:  # noqa: BLE001 - pruning is retried at the next period
                    log.exception("pruning prediction records failed")


def _redact_strings(value):
    """``value`` (a stored input: text, prompt or messages; or an output) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)[0]
    if isinstance(value, dict):
        return {key: _redact_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item) for item in value]
    return value
