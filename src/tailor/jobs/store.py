"""Fine-tuning jobs, their events and checkpoints, and the queue that hands them to workers.

The queue is the ``jobs`` table itself: a worker claims the oldest queued job with a conditional
``UPDATE ... WHERE status = 'queued' AND worker_id IS NULL``, which exactly one worker can win on SQLite
and PostgreSQL alike. A running job's worker writes a heartbeat; a job whose heartbeat stops (its worker
was killed) is queued again and resumes from its last checkpoint.

Status changes a user asks for (cancel, pause) are written at once; the worker sees them at its next
heartbeat and stops.

With a master key configured, what a job holds of the tenant's data is sealed under the tenant's data key
(:mod:`tailor.security.sealing`): its request (metadata, column names, label lists, options), result and error (a
data error quotes a row), and every event's message and data. Ids, numbers, statuses and checkpoint metrics stay
plain (the queue and the quotas query them). Keys are loaded before a write transaction and values opened after
the connection is closed; rows written before encryption read as they are.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, func, insert, or_, select, update

from tailor.db import JsonText, UtcDateTime, listed_after, now, open_engine
from tailor.errors import ConflictError, NotFoundError
from tailor.security.crypto import open_keyring
from tailor.security.sealing import SealableJson, open_json, open_str, preload, seal_json, seal_str

VALIDATING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, PAUSED = (
    "validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused")
FINAL = (SUCCEEDED, FAILED, CANCELLED)
# the statuses a user's cancel, pause and resume start from (the console shows its buttons by them)
CANCELLABLE, PAUSABLE, RESUMABLE = (VALIDATING, QUEUED, RUNNING, PAUSED), (QUEUED, RUNNING), (PAUSED,)
MAX_ATTEMPTS = 3

_metadata = MetaData()
_jobs = Table(
    "jobs", _metadata,
    Column("id", String(40), primary_key=True), Column("tenant", String(64)), Column("model", Text),
    Column("task", String(32)), Column("training_file", String(40)), Column("validation_file", String(40)),
    Column("suffix", String(64)), Column("seed", Integer), Column("request", SealableJson),
    Column("status", String(32)),
    Column("fine_tuned_model", Text), Column("error", SealableJson), Column("result", SealableJson),
    Column("attempts", Integer), Column("worker_id", String(64)), Column("heartbeat_at", UtcDateTime),
    Column("created_at", UtcDateTime), Column("started_at", UtcDateTime), Column("finished_at", UtcDateTime),
)
_events = Table(
    "job_events", _metadata,
    Column("id", Integer, primary_key=True), Column("job_id", String(40)), Column("created_at", UtcDateTime),
    Column("level", String(16)), Column("type", String(16)), Column("message", Text), Column("data", SealableJson),
)
_checkpoints = Table(
    "job_checkpoints", _metadata,
    Column("id", Integer, primary_key=True), Column("job_id", String(40)), Column("step", Integer),
    Column("metrics", JsonText), Column("created_at", UtcDateTime),
)


def _ts(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


@dataclass(frozen=True)
class Job:
    """A fine-tuning job.

    Attributes:
        request: the validated create request (model, files, method, hyperparameters, Tailor's options),
            with ``hyperparameters`` resolved to the values training uses.
        result: what the finished job produced (metrics, the registered version, timings).
        attempts: how many times a worker started it (a killed worker's job starts again).
    """

    id: str
    tenant: str
    model: str
    task: str
    training_file: str | None  # None: a retrain from feedback alone
    validation_file: str | None
    suffix: str | None
    seed: int
    request: dict
    status: str
    fine_tuned_model: str | None
    error: dict | None
    result: dict | None
    attempts: int
    worker_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def unlabeled_file(self) -> str | None:
        """The id of the file of unlabelled texts the job learns from by self-training (None: none)."""
        return _unlabeled_file(self.request)

    def to_openai(self) -> dict:
        """OpenAI's fine_tuning.job object, with Tailor's ``task`` and ``result`` added."""
        return {
            "object": "fine_tuning.job", "id": self.id, "model": self.model, "created_at": _ts(self.created_at),
            "finished_at": _ts(self.finished_at), "fine_tuned_model": self.fine_tuned_model,
            "organization_id": self.tenant, "result_files": [], "status": self.status,
            "validation_file": self.validation_file, "training_file": self.training_file,
            "hyperparameters": self.request["hyperparameters"], "trained_tokens": None, "error": self.error,
            "user_provided_suffix": self.suffix, "seed": self.seed, "estimated_finish": None, "integrations": [],
            "metadata": self.request.get("metadata"), "method": self.request["method"], "task": self.task,
            "result": self.result,
        }


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: str
    created_at: datetime
    level: str
    type: str
    message: str
    data: dict | None = field(default=None)

    def to_openai(self) -> dict:
        return {"object": "fine_tuning.job.event", "id": f"ftevent-{self.id}", "created_at": _ts(self.created_at),
                "level": self.level, "message": self.message, "data": self.data or {}, "type": self.type}


@dataclass(frozen=True)
class JobCheckpoint:
    id: int
    job_id: str
    step: int
    metrics: dict
    created_at: datetime

    def to_openai(self, fine_tuned_model: str | None) -> dict:
        return {"object": "fine_tuning.job.checkpoint", "id": f"ftckpt-{self.id}",
                "created_at": _ts(self.created_at), "fine_tuning_job_id": self.job_id,
                "fine_tuned_model_checkpoint": f"{fine_tuned_model or self.job_id}:ckpt-step-{self.step}",
                "step_number": self.step, "metrics": self.metrics}




def _after_id(prefix: str, after: str | None) -> int | None:
    if after is None:
        return None
    digits = after.removeprefix(prefix)
    if not digits.isdigit():
        raise NotFoundError(f"{after!r} not found")
    return int(digits)


def _unlabeled_file(request: dict) -> str | None:
    return request.get("method", {}).get("tailor", {}).get("unlabeled_file")


def _first_event(training_file: str | None, request: dict) -> str:
    if training_file:
        return f"Validated training file: {training_file}"
    labels = request.get("method", {}).get("tailor", {}).get("labels")
    if labels:
        return f"No training file: a zero-shot classifier from {len(labels)} labels"
    return "No training file: training on feedback labels"


class JobStore:
    """Jobs of every tenant in the database at ``url``. Tenant-facing methods take the tenant first.

    Args:
        settings: where the master key comes from (default: the environment's); without one nothing is sealed.
    """

    def __init__(self, url: str, settings=None):
        self._engine = open_engine(url)
        self.keys = open_keyring(url, settings)
        self._tenants: dict[str, str] = {}  # job id -> tenant, which never changes

    def _to_job(self, row) -> Job:
        """The job of a row, its sealed fields opened (call it once the connection is closed)."""
        keys, tenant = self.keys, row.tenant
        return Job(row.id, tenant, row.model, row.task, row.training_file or None, row.validation_file, row.suffix,
                   row.seed, open_json(keys, tenant, row.request), row.status, row.fine_tuned_model,
                   open_json(keys, tenant, row.error), open_json(keys, tenant, row.result), row.attempts,
                   row.worker_id, row.created_at, row.started_at, row.finished_at)

    def _tenant_of(self, job_id: str) -> str | None:
        """The tenant of job ``job_id`` (None: no such job), with its data key loaded for what follows."""
        tenant = self._tenants.get(job_id)
        if tenant is None:
            with self._engine.connect() as conn:
                tenant = conn.scalar(select(_jobs.c.tenant).where(_jobs.c.id == job_id))
            if tenant is not None:
                self._tenants[job_id] = tenant
        preload(self.keys, tenant)
        return tenant

    # --- what the API does -------------------------------------------------------------------------------

    def create(self, tenant: str, *, model: str, task: str, training_file: str | None, validation_file: str | None,
               suffix: str | None, seed: int, request: dict) -> Job:
        """Record a new job as queued, with its first events."""
        job_id = "ftjob-" + secrets.token_hex(12)
        moment = now()
        preload(self.keys, tenant)
        with self._engine.begin() as conn:
            conn.execute(insert(_jobs).values(
                # the column predates file-less retrains and is NOT NULL: "" stands for none
                id=job_id, tenant=tenant, model=model, task=task, training_file=training_file or "",
                validation_file=validation_file, suffix=suffix, seed=seed,
                request=seal_json(self.keys, tenant, request), status=QUEUED, attempts=0, created_at=moment))
            self._event(conn, tenant, job_id, _first_event(training_file, request))
            self._event(conn, tenant, job_id, "Job queued")
        return self.get(tenant, job_id)

    def get(self, tenant: str, job_id: str) -> Job:
        """The tenant's job ``job_id``. Raises NotFoundError (also for another tenant's job)."""
        with self._engine.begin() as conn:
            row = conn.execute(select(_jobs).where(_jobs.c.id == job_id, _jobs.c.tenant == tenant)).one_or_none()
        if row is None:
            raise NotFoundError(f"fine-tuning job {job_id!r} not found")
        return self._to_job(row)

    def list(self, tenant: str | None, *, after: str | None = None, limit: int = 20) -> tuple[list[Job], bool]:
        """Jobs newest first (``tenant=None``: every tenant's, for the operator); ``(jobs, has_more)``."""
        query = select(_jobs)
        if tenant is not None:
            query = query.where(_jobs.c.tenant == tenant)
        if after and tenant is not None:
            anchor = self.get(tenant, after)
            query = query.where(listed_after(_jobs, anchor.created_at, anchor.id))
        with self._engine.begin() as conn:
            rows = conn.execute(query.order_by(_jobs.c.created_at.desc(), _jobs.c.id.desc()).limit(limit + 1)).all()
        return [self._to_job(r) for r in rows[:limit]], len(rows) > limit

    def uses_file(self, tenant: str, file_id: str) -> list[str]:
        """Ids of the tenant's unfinished jobs that read ``file_id``: as their training, validation or unlabelled
        file, oldest first."""
        preload(self.keys, tenant)
        with self._engine.connect() as conn:
            rows = conn.execute(select(_jobs.c.id, _jobs.c.training_file, _jobs.c.validation_file, _jobs.c.request)
                                .where(_jobs.c.tenant == tenant, _jobs.c.status.not_in(FINAL))
                                .order_by(_jobs.c.created_at, _jobs.c.id)).all()
        # the unlabelled file is named in the request, which may be sealed: matched here, not in SQL
        return [row.id for row in rows if file_id in (row.training_file, row.validation_file)
                or _unlabeled_file(open_json(self.keys, tenant, row.request)) == file_id]

    def cancel(self, tenant: str, job_id: str) -> Job:
        """Cancel a job that has not finished; a running one stops at its worker's next heartbeat.

        Raises:
            ConflictError: the job already finished.
        """
        return self._user_transition(tenant, job_id, CANCELLED, CANCELLABLE, "Job cancelled by the user", final=True)

    def pause(self, tenant: str, job_id: str) -> Job:
        """Pause a queued or running job; it keeps its checkpoints. Raises ConflictError otherwise."""
        return self._user_transition(tenant, job_id, PAUSED, PAUSABLE, "Job paused by the user")

    def resume(self, tenant: str, job_id: str) -> Job:
        """Queue a paused job again; it continues from its last checkpoint. Raises ConflictError otherwise."""
        return self._user_transition(tenant, job_id, QUEUED, RESUMABLE,
                                     "Job resumed by the user; it continues from its last checkpoint")

    def _user_transition(self, tenant: str, job_id: str, status: str, allowed: tuple[str, ...], message: str,
                         final: bool = False) -> Job:
        job = self.get(tenant, job_id)
        if job.status not in allowed:
            verb = {CANCELLED: "cancel", PAUSED: "pause", QUEUED: "resume"}[status]
            raise ConflictError(f"cannot {verb} job {job_id}: its status is {job.status}")
        preload(self.keys, tenant)
        with self._engine.begin() as conn:
            done = conn.execute(update(_jobs).where(_jobs.c.id == job_id, _jobs.c.status == job.status).values(
                status=status, finished_at=now() if final else None)).rowcount
            if done:
                self._event(conn, tenant, job_id, message)
        return self.get(tenant, job_id) if done else self._user_transition(tenant, job_id, status, allowed,
                                                                             message, final)

    def events(self, tenant: str, job_id: str, *, after: str | None = None,
               limit: int = 20) -> tuple[list[JobEvent], bool]:
        """The job's events newest first, older than event ``after``; ``(events, has_more)``."""
        rows, has_more = self._newest_first(tenant, job_id, _events, "ftevent-", after, limit)
        return [JobEvent(r.id, r.job_id, r.created_at, r.level, r.type, open_str(self.keys, tenant, r.message),
                         open_json(self.keys, tenant, r.data)) for r in rows], has_more

    def checkpoints(self, tenant: str, job_id: str, *, after: str | None = None,
                    limit: int = 10) -> tuple[list[JobCheckpoint], bool]:
        """The job's checkpoints newest first, older than checkpoint ``after``; ``(checkpoints, has_more)``."""
        rows, has_more = self._newest_first(tenant, job_id, _checkpoints, "ftckpt-", after, limit)
        return [JobCheckpoint(r.id, r.job_id, r.step, r.metrics, r.created_at) for r in rows], has_more

    def _newest_first(self, tenant: str, job_id: str, table: Table, prefix: str, after: str | None,
                      limit: int) -> tuple[list, bool]:
        """A page of the tenant's job's rows of ``table`` by descending id, below the id ``after`` names."""
        self.get(tenant, job_id)
        query = select(table).where(table.c.job_id == job_id)
        after_id = _after_id(prefix, after)
        if after_id is not None:
            query = query.where(table.c.id < after_id)
        with self._engine.begin() as conn:
            rows = conn.execute(query.order_by(table.c.id.desc()).limit(limit + 1)).all()
        return rows[:limit], len(rows) > limit

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self._engine.connect() as conn:
                conn.scalar(select(1))
            return True
        except Exception:
            return False

    def count_by_status(self) -> dict[str, int]:
        """Jobs of every tenant per status (for /metrics)."""
        with self._engine.begin() as conn:
            return dict(conn.execute(select(_jobs.c.status, func.count()).group_by(_jobs.c.status)).all())

    def active_count(self, tenant: str) -> int:
        """How many of the tenant's jobs are validating, queued or running (a paused job is not)."""
        with self._engine.connect() as conn:
            return int(conn.scalar(select(func.count()).where(
                _jobs.c.tenant == tenant, _jobs.c.status.in_((VALIDATING, QUEUED, RUNNING)))))

    def run_seconds_since(self, tenant: str, since: datetime) -> float:
        """Seconds the tenant's jobs ran after ``since``: each job from its start to its end (to now while it
        runs; to its last heartbeat when it was paused or lost its worker), clipped to ``since``."""
        moment = now()
        query = select(_jobs.c.status, _jobs.c.started_at, _jobs.c.finished_at, _jobs.c.heartbeat_at).where(
            _jobs.c.tenant == tenant, _jobs.c.started_at.is_not(None),
            or_(_jobs.c.finished_at.is_(None), _jobs.c.finished_at > since))
        total = 0.0
        with self._engine.connect() as conn:
            for status, started, finished, heartbeat in conn.execute(query):
                end = moment if status == RUNNING else finished or heartbeat or started
                total += max(0.0, (end - max(started, since)).total_seconds())
        return total

    # --- what workers do ---------------------------------------------------------------------------------

    def claim(self, worker_id: str) -> Job | None:
        """Take the oldest queued job for ``worker_id``, or None when the queue is empty."""
        while True:
            with self._engine.begin() as conn:
                job_id = conn.scalar(select(_jobs.c.id).where(_jobs.c.status == QUEUED, _jobs.c.worker_id.is_(None))
                                     .order_by(_jobs.c.created_at, _jobs.c.id).limit(1))
                if job_id is None:
                    return None
                moment = now()
                won = conn.execute(update(_jobs).where(_jobs.c.id == job_id, _jobs.c.status == QUEUED,
                                                       _jobs.c.worker_id.is_(None)).values(
                    status=RUNNING, worker_id=worker_id, heartbeat_at=moment, attempts=_jobs.c.attempts + 1,
                    started_at=func.coalesce(_jobs.c.started_at, moment))).rowcount
                row = conn.execute(select(_jobs).where(_jobs.c.id == job_id)).one() if won else None
            if row is not None:
                return self._to_job(row)

    def heartbeat(self, job_id: str, worker_id: str) -> bool:
        """Record that the worker is alive; False when it should stop (cancelled, paused, or taken away)."""
        with self._engine.begin() as conn:
            return bool(conn.execute(update(_jobs).where(
                _jobs.c.id == job_id, _jobs.c.worker_id == worker_id, _jobs.c.status == RUNNING).values(
                heartbeat_at=now())).rowcount)

    def release(self, job_id: str, worker_id: str) -> None:
        """The worker stopped working on the job (after a cancel or pause): let it be claimed again."""
        with self._engine.begin() as conn:
            conn.execute(update(_jobs).where(_jobs.c.id == job_id, _jobs.c.worker_id == worker_id)
                         .values(worker_id=None))

    def requeue(self, job_id: str, worker_id: str, reason: str) -> None:
        """Put a running job of ``worker_id`` back in the queue (the server is stopping)."""
        tenant = self._tenant_of(job_id)
        with self._engine.begin() as conn:
            if conn.execute(update(_jobs).where(_jobs.c.id == job_id, _jobs.c.worker_id == worker_id,
                                                _jobs.c.status == RUNNING)
                            .values(status=QUEUED, worker_id=None, attempts=_jobs.c.attempts - 1)).rowcount:
                self._event(conn, tenant, job_id, reason)
            else:
                conn.execute(update(_jobs).where(_jobs.c.id == job_id, _jobs.c.worker_id == worker_id)
                             .values(worker_id=None))

    def finish(self, job_id: str, worker_id: str, status: str, *, fine_tuned_model: str | None = None,
               result: dict | None = None, error: dict | None = None, message: str) -> bool:
        """Record the end of a running job (unless it was cancelled or paused meanwhile); True if recorded."""
        tenant = self._tenant_of(job_id)
        if tenant is None:
            return False
        with self._engine.begin() as conn:
            done = conn.execute(update(_jobs).where(
                _jobs.c.id == job_id, _jobs.c.worker_id == worker_id, _jobs.c.status == RUNNING).values(
                status=status, fine_tuned_model=fine_tuned_model, result=seal_json(self.keys, tenant, result),
                error=seal_json(self.keys, tenant, error), worker_id=None, finished_at=now())).rowcount
            if done:
                self._event(conn, tenant, job_id, message, level="error" if status == FAILED else "info")
            else:
                conn.execute(update(_jobs).where(_jobs.c.id == job_id, _jobs.c.worker_id == worker_id)
                             .values(worker_id=None))
        return bool(done)

    def recover_lost(self, *, stale_after_s: float, worker_ids: tuple[str, ...] = ()) -> list[str]:
        """Queue again the running jobs whose worker is gone: one of ``worker_ids`` (known dead) or
        silent for ``stale_after_s``. A job that lost its worker ``MAX_ATTEMPTS`` times fails instead."""
        cutoff = now() - timedelta(seconds=stale_after_s)
        lost = [_jobs.c.status == RUNNING, _jobs.c.heartbeat_at < cutoff]
        if worker_ids:
            lost[1] = or_(lost[1], _jobs.c.worker_id.in_(worker_ids))
        # the data keys of the tenants concerned are loaded first; a job lost meanwhile by another tenant waits for
        # the next sweep
        with self._engine.connect() as conn:
            tenants = set(conn.scalars(select(_jobs.c.tenant).where(*lost).distinct()))
        if not tenants:
            return []
        preload(self.keys, *tenants)
        recovered = []
        with self._engine.begin() as conn:
            for row in conn.execute(select(_jobs).where(*lost, _jobs.c.tenant.in_(tenants))).all():
                if row.attempts >= MAX_ATTEMPTS:
                    error = {"code": "worker_lost", "param": None,
                             "message": f"the job's worker stopped {row.attempts} times; giving up"}
                    conn.execute(update(_jobs).where(_jobs.c.id == row.id).values(
                        status=FAILED, worker_id=None, finished_at=now(),
                        error=seal_json(self.keys, row.tenant, error)))
                    self._event(conn, row.tenant, row.id, f"Worker lost for the {row.attempts}th time; job failed",
                                level="error")
                else:
                    conn.execute(update(_jobs).where(_jobs.c.id == row.id).values(status=QUEUED, worker_id=None))
                    self._event(conn, row.tenant, row.id, "Worker lost; job queued again and will resume from its "
                                "last checkpoint", level="warn", data={"worker_id": row.worker_id})
                recovered.append(row.id)
        return recovered

    def add_event(self, job_id: str, message: str, *, level: str = "info", type: str = "message",
                  data: dict | None = None) -> None:
        tenant = self._tenant_of(job_id)
        if tenant is None:
            raise NotFoundError(f"fine-tuning job {job_id!r} not found")
        with self._engine.begin() as conn:
            self._event(conn, tenant, job_id, message, level=level, type=type, data=data)

    def add_checkpoint(self, job_id: str, step: int, metrics: dict) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(_checkpoints).values(job_id=job_id, step=step, metrics=metrics, created_at=now()))

    def _event(self, conn, tenant: str, job_id: str, message: str, *, level: str = "info", type: str = "message",
               data: dict | None = None) -> None:
        """Insert an event, its message and data sealed (the tenant's key must be loaded: see :func:`preload`)."""
        conn.execute(insert(_events).values(job_id=job_id, created_at=now(), level=level, type=type,
                                            message=seal_str(self.keys, tenant, message),
                                            data=seal_json(self.keys, tenant, data)))
