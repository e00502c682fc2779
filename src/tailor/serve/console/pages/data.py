"""Console page: data. The tenant's files, an upload zone (through ``POST /v1/files``, its size limit shown and
checked in the browser first), and each file's data report rendered as a page, what blocks training first."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from tailor.data.pii import KIND_NAMES, KINDS
from tailor.serve.console.formats import size, when
from tailor.serve.console.render import SignedIn, language_param
from tailor.serve.routes import files as files_api

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])
ACCEPTED = ".csv,.tsv,.jsonl,.json,.txt"


def file_row(stored: dict) -> dict:
    """What the list shows of a file object: rows (conversations for chat), labels, size and creation time."""
    summary = stored["summary"]
    return {**stored, "rows": summary.get("rows", summary.get("examples")),
            "labels": len(summary["labels"]) if "labels" in summary else None,
            "size": size(stored["bytes"]), "created": when(stored["created_at"])}


@router.get("/data")
async def data_page(page: SignedIn) -> Response:
    """The tenant's files and the upload zone."""
    found = await page.call(files_api.list_files, page.principal, page.services, limit=100)
    settings = page.services.settings
    return page.render("data.html", title=page.t("data.title"), active="data",
                       files=[file_row(f) for f in found["data"]], has_more=found["has_more"],
                       can_upload=page.allows("train"), max_bytes=settings.max_file_bytes,
                       max_mb=f"{settings.max_file_mb:g}", accepted=ACCEPTED)


@router.get("/data/{file_id}")
async def report_page(file_id: str, page: SignedIn) -> Response:
    """A file's data report (``GET /v1/files/{id}/report``) as a page; another tenant's file is a 404 page."""
    stored = await page.call(files_api.get_file, file_id, page.principal, page.services)
    report = await page.call(files_api.get_file_report, file_id, page.principal, page.services)
    template = "data_chat_report.html" if stored["kind"] == "chat" else "data_report.html"
    context = {"chat": chat_context(report)} if stored["kind"] == "chat" else {"text": text_context(report)}
    return page.render(template, title=page.t("data.report.title", name=stored["filename"]), active="data",
                       file=file_row(stored), report=report, can_train=page.allows("train"), **context)


def text_context(report: dict) -> dict:
    """Figures a text/label report's page shows beside the report's own: shares, bar widths, the histogram's
    ranges, PII rows and the removed rows with their examples."""
    counts = report["labels"]["counts"]
    kept = report["rows"]["kept"]
    top = max(counts.values(), default=0) or 1
    labels = [{"label": label, "count": n, "share": f"{100 * n / kept:.1f}%" if kept else "",
               "width": f"{100 * n / top:.1f}"} for label, n in counts.items()]
    histogram = report.get("length_histogram") or {"edges": [], "counts": []}
    peak = max(histogram["counts"], default=0) or 1
    bins = [{"low": low, "high": high - 1, "count": n, "width": f"{100 * n / peak:.1f}"}
            for low, high, n in zip(histogram["edges"], histogram["edges"][1:], histogram["counts"])]
    removed = [{"reason": reason, "count": n, "examples": report["rows"]["examples"].get(reason, [])}
               for reason, n in report["rows"]["removed"].items()]
    pii = [{"kind": kind, "name": KIND_NAMES[kind], "count": report["pii"][kind]} for kind in KINDS]
    return {"labels": labels, "bins": bins, "removed": removed, "removed_total": sum(r["count"] for r in removed),
            "pii": pii}


def chat_context(report: dict) -> dict:
    """The chat report's length rows (tokens, assistant tokens, messages per conversation)."""
    rows = [("tokens", report["tokens"]), ("assistant_tokens", report["assistant_tokens"]), ("turns", report["turns"])]
    return {"lengths": [{"name": name, "stats": stats or {}} for name, stats in rows]}
