"""Executors run the job queue's workers. The local one keeps N worker processes alive on this machine.

The interface is small on purpose so that a cluster executor (Ray) can stand beside the local one: start,
stop, and a status for ``/health``. The queue itself lives in the database (:mod:`tailor.jobs.store`), so
any executor's workers claim from the same queue.
"""

from __future__ import annotations

import abc
import logging
import os
import secrets
import subprocess
import sys
import threading
import time

from tailor.jobs.store import JobStore
from tailor.runtime import usable_cores
from tailor.settings import Settings

log = logging.getLogger("tailor.executor")


class Executor(abc.ABC):
    """Runs workers that claim jobs from the queue; at most ``limit`` jobs run at once."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the workers (returns at once)."""

    @abc.abstractmethod
    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the workers; their running jobs go back to the queue to resume later."""

    @abc.abstractmethod
    def status(self) -> dict:
        """``{"kind", "limit", "alive", "workers": [{"id", "pid", "alive"}]}`` for /health."""


def core_groups(n_workers: int, cores: list[int]) -> list[list[int]]:
    """Split ``cores`` into ``n_workers`` groups so concurrent jobs do not fight for the same cores.

    With more workers than cores, workers share cores round-robin.
    """
    if n_workers <= len(cores):
        size = len(cores) // n_workers
        return [cores[i * size:(i + 1) * size] if i < n_workers - 1 else cores[i * size:] for i in range(n_workers)]
    return [[cores[i % len(cores)]] for i in range(n_workers)]


class _Slot:
    def __init__(self, cores: list[int]):
        self.cores = cores
        self.worker_id: str | None = None
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.next_start = 0.0


class LocalExecutor(Executor):
    """``workers`` worker processes on this machine, restarted when they die.

    When a worker dies (killed, out of memory), its job is queued again at once and resumes from its last
    checkpoint in another worker; jobs whose worker went silent (a server killed earlier) are recovered
    after ``settings.heartbeat_timeout_s``.
    """

    def __init__(self, settings: Settings, workers: int | None = None):
        self.settings = settings
        self.limit = workers or settings.workers
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(usable_cores()))
        self._slots = [_Slot(group) for group in core_groups(self.limit, cores)]
        self._store = JobStore(settings.registry_url)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        (settings.home / "logs").mkdir(parents=True, exist_ok=True)
        self._log = open(settings.home / "logs" / "workers.log", "ab")

    def start(self) -> None:
        self._store.recover_lost(stale_after_s=self.settings.heartbeat_timeout_s)
        with self._lock:
            for slot in self._slots:
                self._spawn(slot)
        self._thread = threading.Thread(target=self._supervise, name="tailor-executor", daemon=True)
        self._thread.start()

    def _spawn(self, slot: _Slot) -> None:
        slot.worker_id = f"w-{os.getpid()}-{secrets.token_hex(3)}"
        command = [sys.executable, "-m", "tailor.jobs.worker", "--id", slot.worker_id, "--parent-pid",
                   str(os.getpid()), "--cores", ",".join(map(str, slot.cores))]
        slot.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                        env={**os.environ, "TAILOR_HOME": str(self.settings.home)})
        log.info("started worker %s (pid %d, cores %s)", slot.worker_id, slot.process.pid, slot.cores)

    def _supervise(self) -> None:
        last_sweep = time.monotonic()
        while not self._stopping.wait(self.settings.worker_poll_s):
            dead = []
            with self._lock:
                for slot in self._slots:
                    if slot.process is not None and slot.process.poll() is not None:
                        log.warning("worker %s exited with %s", slot.worker_id, slot.process.returncode)
                        dead.append(slot.worker_id)
                        slot.process, slot.restarts = None, slot.restarts + 1
                        slot.next_start = time.monotonic() + min(30.0, 0.5 * 2 ** min(slot.restarts, 6))
                    if slot.process is None and time.monotonic() >= slot.next_start and not self._stopping.is_set():
                        self._spawn(slot)
            try:
                if dead:
                    self._store.recover_lost(stale_after_s=self.settings.heartbeat_timeout_s, worker_ids=tuple(dead))
                if time.monotonic() - last_sweep > self.settings.heartbeat_timeout_s / 2:
                    last_sweep = time.monotonic()
                    self._store.recover_lost(stale_after_s=self.settings.heartbeat_timeout_s)
            except Exception:
                log.warning("recovering lost jobs failed", exc_info=True)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            running = [s for s in self._slots if s.process is not None]
            for slot in running:
                slot.process.terminate()
            deadline = time.monotonic() + timeout_s
            for slot in running:
                try:
                    slot.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    slot.process.kill()
                    slot.process.wait()
            self._store.recover_lost(stale_after_s=self.settings.heartbeat_timeout_s,
                                     worker_ids=tuple(s.worker_id for s in running))
        self._log.close()

    def status(self) -> dict:
        with self._lock:
            workers = [{"id": s.worker_id, "pid": s.process.pid if s.process else None,
                        "alive": s.process is not None and s.process.poll() is None} for s in self._slots]
        return {"kind": "local", "limit": self.limit, "alive": sum(w["alive"] for w in workers), "workers": workers}
