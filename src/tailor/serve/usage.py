"""What a tenant has used, as far as the stores record it: requests, answers and tokens per model from the
prediction records (:mod:`tailor.monitor.records`), fine-tuning jobs and their run time, and the bytes its
uploaded files and model versions keep on disk.

The prediction records are only as complete as recording: with it off (``TAILOR_RECORD_PREDICTIONS=false``)
none are written, and records older than the tenant's retention are pruned; the report says both.
"""

from __future__ import annotations

from datetime import timedelta

from tailor.db import now
from tailor.errors import TailorError
from tailor.jobs.store import FINAL
from tailor.serve.recording import written_records

_PAGE = 100


def tenant_usage(services, tenant: str, days: int) -> dict:
    """The usage report of ``tenant`` over the last ``days`` days (files and models: what is stored now).

    Returns:
        ``{"object": "usage", "days", "since", "until", "recording", "records_kept_days", "models", "jobs",
        "files", "stored_models"}``: ``models`` from :meth:`PredictionStore.usage`; ``jobs`` ``{"created",
        "by_status", "finished", "run_seconds"}`` for the jobs created in the window (run time of the finished
        ones, from start to finish); ``files`` ``{"count", "bytes"}``; ``stored_models`` ``{"models",
        "versions", "bytes"}``.
    """
    until = now()
    since = until - timedelta(days=days)
    recording = services.recorder is not None
    kept_days = services.tenants.retention(tenant)[0] or services.settings.retention_days
    files, file_bytes = services.files.totals(tenant)
    return {"object": "usage", "days": days, "since": int(since.timestamp()), "until": int(until.timestamp()),
            "recording": recording, "records_kept_days": kept_days,
            "models": written_records(services).usage(tenant, since),
            "jobs": _job_usage(services.jobs, tenant, since), "files": {"count": files, "bytes": file_bytes},
            "stored_models": _model_usage(services.registry, tenant)}


def _job_usage(jobs, tenant: str, since) -> dict:
    by_status: dict[str, int] = {}
    finished, run_seconds, after = 0, 0.0, None
    while True:
        page, more = jobs.list(tenant, after=after, limit=_PAGE)
        recent = [job for job in page if job.created_at >= since]
        for job in recent:
            by_status[job.status] = by_status.get(job.status, 0) + 1
            if job.status in FINAL and job.started_at and job.finished_at:
                finished += 1
                run_seconds += (job.finished_at - job.started_at).total_seconds()
        if not more or len(recent) < len(page):  # newest first: the rest are older still
            break
        after = page[-1].id
    return {"created": sum(by_status.values()), "by_status": dict(sorted(by_status.items())),
            "finished": finished, "run_seconds": round(run_seconds, 1)}


def _model_usage(registry, tenant: str) -> dict:
    models = registry.store.list_models(tenant)
    versions, size = 0, 0
    for model in models:
        for version in registry.store.list_versions(tenant, model.name):
            versions += 1
            try:
                directory = registry.artifact_location(version)
            except TailorError:  # its files are missing: they take no room
                continue
            size += sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
    return {"models": len(models), "versions": versions, "bytes": size}
