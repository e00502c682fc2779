"""Console pages: the tenant's fine-tuning jobs with live status, and one job with its events, curves,
checkpoints and cancel / pause / resume.

Both pages render complete on the server from the API's route functions (:mod:`tailor.serve.routes.jobs`);
``static/jobs.js`` then polls the same ``/v1/fine_tuning/jobs`` routes while a job can still change, and sends
the buttons' cancel, pause and resume to them.
"""

from __future__ import annotations

from typing import get_args

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from tailor.jobs.spec import CHAT, CLASSIFICATION, TailorOptions
from tailor.jobs.store import (CANCELLABLE, CANCELLED, FAILED, FINAL, PAUSABLE, PAUSED, QUEUED, RESUMABLE, RUNNING,
                               SUCCEEDED, VALIDATING)
from tailor.serve.console.render import Page, SignedIn, language_param
from tailor.serve.routes import jobs as jobs_api
from tailor.serve.routes.common import After

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])

PAGE_SIZE = 20
STATUSES = (VALIDATING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, PAUSED)
TASKS = (CLASSIFICATION, CHAT)
METHODS = get_args(TailorOptions.model_fields["method"].annotation)
CHANGING = (VALIDATING, QUEUED, RUNNING)  # the statuses a job leaves by itself: the list polls while one shows
EVENTS_SHOWN = 200  # the newest events listed on the job page (its curves use every event)
EVENTS_READ = 5000  # the most events read for a job page's curves
API_PAGE = 100  # the most objects one call of the API returns

# The curves of each task: (chart, [(key of a metrics event's data, label key)], y range). Keys are those the
# training loops report: tailor.train.classify (fit, fit_head) and tailor.train.sft.
CURVES = {
    CLASSIFICATION: (
        ("loss", (("train_loss", "jobs.metric.train_loss"), ("valid_loss", "jobs.metric.valid_loss")), {}),
        ("f1", (("valid_macro_f1", "jobs.metric.valid_macro_f1"),), {"yMin": 0, "yMax": 1}),
    ),
    CHAT: (
        ("loss", (("train_loss", "jobs.metric.train_loss"), ("valid_loss", "jobs.metric.valid_loss")), {}),
        ("accuracy", (("train_mean_token_accuracy", "jobs.metric.train_mean_token_accuracy"),
                      ("valid_mean_token_accuracy", "jobs.metric.valid_mean_token_accuracy")),
         {"yMin": 0, "yMax": 1}),
    ),
}
# metrics of events and checkpoints, and of a finished job's test set (a chat job's are under "test")
METRICS = ("epoch", "train_loss", "valid_loss", "valid_macro_f1", "valid_accuracy", "train_mean_token_accuracy",
           "valid_mean_token_accuracy", "seconds")
RESULTS = ("macro_f1", "accuracy", "weighted_f1", "roc_auc", "ece", "loss", "perplexity", "token_accuracy",
           "exact_match")



def method_of(job: dict) -> str:
    """The training method the job used (a finished job's), else the one it asked for (maybe ``auto``)."""
    return (job.get("result") or {}).get("method") or job["method"].get("tailor", {}).get("method", "auto")


def model_name_of(job: dict) -> str | None:
    """The registered model the job made (its name, for a link to the model's page), or None."""
    if not job["fine_tuned_model"]:
        return None
    return (job.get("result") or {}).get("name") or job["fine_tuned_model"]


def results_of(job: dict) -> list[tuple[str, float]]:
    """A finished job's test metrics worth a line: ``(key, value)`` in ``RESULTS`` order."""
    metrics = (job.get("result") or {}).get("metrics") or {}
    metrics = metrics.get("test", metrics) if isinstance(metrics.get("test"), dict) else metrics
    return [(key, metrics[key]) for key in RESULTS
            if isinstance(metrics.get(key), (int, float)) and not isinstance(metrics[key], bool)]


def metrics_of(checkpoint: dict) -> list[tuple[str, object]]:
    """A checkpoint's metrics but its step, in ``METRICS`` order, then any others by name (as ``jobs.js``)."""
    order = {key: i for i, key in enumerate(METRICS)}
    return sorted(((k, v) for k, v in checkpoint["metrics"].items() if k != "step"),
                  key=lambda item: (order.get(item[0], len(order)), item[0]))


def number(value) -> str:
    """A value as the page shows it: numbers to 4 decimals, whole ones without (as ``jobs.js`` shows them)."""
    if isinstance(value, float):
        value = round(value, 4)
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


def labels(page: Page) -> dict:
    """The words the script shows for statuses, tasks, methods and metrics, in the page's language."""
    return {"status": {s: page.t(f"status.{s}") for s in STATUSES},
            "task": {s: page.t(f"jobs.task.{s}") for s in TASKS},
            "method": {s: page.t(f"jobs.method.{s}") for s in METHODS},
            "metric": {s: page.t(f"jobs.metric.{s}") for s in METRICS}}


def charts(page: Page, task: str, events_oldest_first: list[dict]) -> list[dict]:
    """The job's curves for ``TailorChart.line``: per chart, a series per metric with its ``[step, value]``
    points from the metrics events (a later event at the same step replaces an earlier one)."""
    out = []
    for chart, series, y_range in CURVES[task]:
        lines = []
        for key, label in series:
            points: dict[int, float] = {}
            for event in events_oldest_first:
                data = event["data"]
                if event["type"] == "metrics" and isinstance(data.get("step"), int) and key in data:
                    points[data["step"]] = data[key]
            lines.append({"key": key, "label": page.t(label), "points": [[s, points[s]] for s in sorted(points)]})
        out.append({"id": chart, "title": page.t(f"jobs.chart.{chart}"), "xLabel": page.t("jobs.chart.step"),
                    "yLabel": page.t(f"jobs.chart.{chart}.y"), "empty": page.t("jobs.chart.empty"),
                    "series": lines, **y_range})
    return out


async def _all(page: Page, function, job_id: str, most: int) -> list[dict]:
    """Every object (up to ``most``) of a job's newest-first listing route, paging with ``after``."""
    found, after = [], None
    while len(found) < most:
        listing = await page.call(function, job_id, page.principal, page.services, after=after, limit=API_PAGE)
        found += listing["data"]
        if not listing["has_more"] or not listing["data"]:
            break
        after = listing["data"][-1]["id"]
    return found[:most]


@router.get("/jobs")
async def jobs_page(page: SignedIn, after: After = None) -> Response:
    """The tenant's jobs, newest first, a page of ``PAGE_SIZE`` after the job ``after``."""
    listing = await page.call(jobs_api.list_jobs, page.principal, page.services, after=after, limit=PAGE_SIZE)
    jobs = listing["data"]
    config = {"after": after, "limit": PAGE_SIZE, "changing": CHANGING, "labels": labels(page)}
    return page.render("jobs.html", title=page.t("jobs.title"), active="jobs", jobs=jobs, after=after,
                       next_after=jobs[-1]["id"] if listing["has_more"] else None, config=config,
                       method_of=method_of, model_name_of=model_name_of)


@router.get("/jobs/{job_id}")
async def job_page(page: SignedIn, job_id: str) -> Response:
    """One job: what it is, its outcome, its events and curves, its checkpoints, and the buttons to steer it."""
    job = await page.call(jobs_api.get_job, job_id, page.principal, page.services)
    events = await _all(page, jobs_api.list_events, job_id, EVENTS_READ)
    checkpoints = await _all(page, jobs_api.list_checkpoints, job_id, API_PAGE)
    config = {
        "job": job, "final": FINAL, "labels": labels(page), "metrics": METRICS,
        "actions": {"cancel": CANCELLABLE, "pause": PAUSABLE, "resume": RESUMABLE} if page.allows("train") else {},
        "charts": charts(page, job["task"], events[::-1]),
    }
    shown = events[:EVENTS_SHOWN]
    return page.render("job.html", title=page.t("jobs.job_title", id=job["id"]), active="jobs", job=job,
                       events=shown, events_hidden=len(events) - len(shown), checkpoints=checkpoints,
                       config=config, number=number, method_of=method_of, model_name_of=model_name_of,
                       results=results_of(job), metrics_of=metrics_of, metric_labels=config["labels"]["metric"])
