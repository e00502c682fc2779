"""Run one claimed job: the training job of its task, with progress written as the job's events.

The :class:`JobReporter` is the training loop's :class:`~tailor.train.progress.Reporter`; it also carries the
worker's stop signal into the loop (a cancel, a pause, or the server stopping), so training stops between
two steps and keeps its last checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack

from tailor.errors import DataError, TailorError
from tailor.jobs.spec import CHAT, ZERO_SHOT, TailorOptions
from tailor.jobs.store import FAILED, SUCCEEDED, Job, JobStore
from tailor.security.quotas import QuotaStore

log = logging.getLogger(__name__)
_STEP_EVENT_INTERVAL_S = 5.0


class JobStopped(Exception):
    """Raised inside the training loop when the worker must stop the job; ``shutdown`` says why."""

    def __init__(self, shutdown: bool):
        super().__init__("server stopping" if shutdown else "job cancelled or paused")
        self.shutdown = shutdown


class StopSignal:
    """Set by the worker's heartbeat thread (job cancelled or paused) or its signal handler (shutdown)."""

    def __init__(self):
        self.stopped = threading.Event()
        self.shutdown = threading.Event()

    def check(self) -> None:
        if self.shutdown.is_set():
            raise JobStopped(shutdown=True)
        if self.stopped.is_set():
            raise JobStopped(shutdown=False)


class JobReporter:
    """Writes a job's progress as OpenAI-style events: messages, and metrics with ``step`` and losses."""

    def __init__(self, store: JobStore, job_id: str, signal: StopSignal):
        self.store, self.job_id, self.signal = store, job_id, signal
        self.step = 0
        self._total = 0
        self._last_step_event = 0.0

    def message(self, text: str, **data) -> None:
        self.store.add_event(self.job_id, text, data=_jsonable(data) or None)

    def start(self, description: str, total: int) -> None:
        self._total = total
        self.signal.check()

    def advance(self, steps: int = 1, *, step: int | None = None, **stats) -> None:
        self.step = step if step is not None else self.step + steps  # a resumed run's own count goes on
        moment = time.monotonic()
        if "loss" in stats and moment - self._last_step_event >= _STEP_EVENT_INTERVAL_S:
            self._last_step_event = moment
            self.store.add_event(self.job_id, f"Step {self.step}: training loss={stats['loss']:.4f}",
                                 type="metrics", data={"step": self.step, "train_loss": round(stats["loss"], 5)})
        self.signal.check()

    def metrics(self, step: int, data: dict) -> None:
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items())
        self.store.add_event(self.job_id, f"Step {step}: {shown}", type="metrics",
                             data=_jsonable({"step": step, **data}))

    def checkpoint(self, step: int, metrics: dict) -> None:
        self.store.add_checkpoint(self.job_id, step, _jsonable(metrics))

    def finish(self) -> None:
        self.signal.check()


def _jsonable(data: dict) -> dict:
    import json

    return json.loads(json.dumps(data, default=str))


def fine_tuned_model_id(job: Job) -> str:
    """OpenAI's id shape: ``ft:<base>:<tenant>:<suffix>:<job-id>`` (the suffix may be empty; a retrain's base
    is its parent's)."""
    base = job.request["retrain"]["base_model"] if "retrain" in job.request else job.model
    return f"ft:{base}:{job.tenant}:{job.suffix or ''}:{job.id}"


def _run_retrain(job: Job, train_path, common: dict):
    """A retrain job: the next version of the parent's model, or a new model ``ft:...`` with a suffix."""
    from tailor.train.retrain import run_retrain

    retrain = job.request["retrain"]
    options = {k: v for k, v in retrain.items() if k not in ("parent", "base_model")}
    common = {**common, "name": common["name"] if job.suffix else None}
    return run_retrain(retrain["parent"], file=train_path, **options, **common)


def _run_training(job: Job, train_path, unlabeled_path, common: dict):
    """A job that trains: a retrain, a chat job or a classification job."""
    if unlabeled_path is not None:  # a classification job's or a retrain's (a chat job's is refused)
        common = {**common, "unlabeled": unlabeled_path}
    if "retrain" in job.request:
        return _run_retrain(job, train_path, common)
    if job.task == CHAT:
        from tailor.train.chat_job import run_chat_job

        return run_chat_job(train_path, base=job.model, **common)
    from tailor.train.job import run_classification_job

    return run_classification_job(train_path, base=job.model, **common)


def _run_zero_shot(job: Job, common: dict):
    """A zero_shot job: the classifier of its labels on its base, scored on its validation file if it has one."""
    from tailor.train.zero_shot import run_zero_shot_job

    labels, descriptions = TailorOptions.model_validate(job.request["method"]["tailor"]).zero_shot_labels()
    return run_zero_shot_job(labels, descriptions=descriptions, base=job.model, **common)


def run_job(job: Job, *, store: JobStore, settings, worker_id: str, signal: StopSignal) -> None:
    """Train, evaluate and register ``job``'s model, recording the outcome in ``store``."""
    from tailor.data.files import FileStore

    reporter = JobReporter(store, job.id, signal)
    if job.attempts > 1:
        reporter.message(f"Attempt {job.attempts}: resuming from the last checkpoint, if any")
    else:
        reporter.message("Fine-tuning job started")
    try:
        files = FileStore(settings.registry_url, settings.files_dir, settings)
        train_file = files.get(job.tenant, job.training_file) if job.training_file else None
        eval_file = files.get(job.tenant, job.validation_file) if job.validation_file else None
        unlabeled_file = files.get(job.tenant, job.unlabeled_file) if job.unlabeled_file else None
        for param, stored in (("training_file", train_file), ("validation_file", eval_file),
                              ("unlabeled_file", unlabeled_file)):
            if stored is not None and not files.path(stored).is_file():  # say which file, never the storage path
                raise DataError(f"{param} {stored.id} is missing from the file store; upload it again and create a "
                                "new job")
        # sealed files are decrypted into a private temporary directory for the job's run, removed after it
        with ExitStack() as plaintexts:
            train_path, eval_path, unlabeled_path = (
                None if stored is None else plaintexts.enter_context(files.plaintext(stored))
                for stored in (train_file, eval_file, unlabeled_file))
            name = fine_tuned_model_id(job)
            common = dict(eval_file=eval_path, name=name, tenant=job.tenant, reporter=reporter, settings=settings,
                          **job.request["overrides"])
            # the tenant's switch, read at each start
            if QuotaStore(settings.registry_url).get(job.tenant).redact_pii:
                common["redact_pii"] = True
            if job.request["method"].get("tailor", {}).get("method") == ZERO_SHOT:
                result = _run_zero_shot(job, common)
            else:
                result = _run_training(job, train_path, unlabeled_path, {
                    **common, "resume": True, "run_dir": settings.home / "runs" / job.id, "seed": job.seed})
    except JobStopped as stopped:
        if stopped.shutdown:
            store.requeue(job.id, worker_id, "Server stopping; job queued again and will resume from its last "
                                             "checkpoint")
        else:
            store.release(job.id, worker_id)
        return
    except TailorError as exc:
        code = "invalid_training_file" if isinstance(exc, DataError) else "invalid_request"
        store.finish(job.id, worker_id, FAILED, error={"code": code, "message": str(exc), "param": None},
                     message=f"Fine-tuning failed: {exc}")
        return
    except Exception as exc:  # a bug or a broken environment: the job fails, the worker lives on
        log.exception("job %s failed", job.id)
        store.finish(job.id, worker_id, FAILED,
                     error={"code": "internal_error", "message": f"{type(exc).__name__}: {exc}", "param": None},
                     message=f"Fine-tuning failed with an internal error: {type(exc).__name__}: {exc}")
        return
    summary = _jsonable(result.summary())
    if "retrain" in job.request:  # the next version of the parent's model (or of the suffix's new one)
        name = result.version.ref
    store.finish(job.id, worker_id, SUCCEEDED, fine_tuned_model=name, result=summary,
                 message=f"The job has successfully completed; fine-tuned model: {name}")

