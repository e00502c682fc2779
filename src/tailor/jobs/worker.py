"""A worker process: claims jobs from the database queue and runs them one at a time.

Started by the executor as ``python -m tailor.jobs.worker --id ID``. It beats a heartbeat for the job it
runs (a missed heartbeat tells the server the worker is gone), stops a job that was cancelled or paused at
its next heartbeat, and on SIGTERM puts its job back in the queue to resume later. It exits by itself when
the server process that started it is gone.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from tailor.jobs.runner import StopSignal, run_job
from tailor.jobs.store import JobStore
from tailor.settings import Settings, get_settings

log = logging.getLogger("tailor.worker")


def _beat(store: JobStore, job_id: str, worker_id: str, stop: StopSignal, done: threading.Event,
          interval_s: float) -> None:
    while not done.wait(interval_s):
        try:
            if not store.heartbeat(job_id, worker_id):
                stop.stopped.set()
        except Exception:  # a database hiccup: try again at the next beat
            log.warning("heartbeat for %s failed", job_id, exc_info=True)


def serve_jobs(worker_id: str, settings: Settings, parent_pid: int | None = None) -> None:
    """Claim and run jobs until SIGTERM, or until the parent process ``parent_pid`` is gone."""
    store = JobStore(settings.registry_url)
    stop = StopSignal()
    signal.signal(signal.SIGTERM, lambda *_: stop.shutdown.set())
    log.info("worker %s ready (pid %d)", worker_id, os.getpid())
    while not stop.shutdown.is_set():
        if parent_pid is not None and os.getppid() != parent_pid:
            break
        job = store.claim(worker_id)
        if job is None:
            stop.shutdown.wait(settings.worker_poll_s)
            continue
        log.info("worker %s runs %s (attempt %d)", worker_id, job.id, job.attempts)
        stop.stopped.clear()
        done = threading.Event()
        beat = threading.Thread(target=_beat, args=(store, job.id, worker_id, stop, done, settings.heartbeat_s),
                                daemon=True)
        beat.start()
        try:
            run_job(job, store=store, settings=settings, worker_id=worker_id, signal=stop)
        finally:
            done.set()
            beat.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tailor.jobs.worker")
    parser.add_argument("--id", required=True, help="this worker's id")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    parser.add_argument("--cores", help="comma-separated CPU cores to run on (training uses all of them)")
    args = parser.parse_args(argv)
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve_jobs(args.id, get_settings(), args.parent_pid)


if __name__ == "__main__":
    main()
