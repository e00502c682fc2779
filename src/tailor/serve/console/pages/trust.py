"""Console pages for trust: a version's bias report (run on an uploaded labelled file, and the latest one stored
with the version), the tenant's release gate, and the audit log with a check of its hash chain.

Pages render on the server from the API's route functions (:mod:`tailor.serve.routes.gate`,
:mod:`tailor.serve.routes.audit`) and the stores they use; ``static/trust.js`` sends the bias report's form to
``POST /v1/models/{model}/evaluations`` and the gate's form to ``PUT /v1/release_gate``. The quotas are shown on
the Keys page (:mod:`tailor.serve.console.pages.keys`), a version's standing against the gate on its page
(:mod:`tailor.serve.console.pages.models`).
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from tailor.data.files import TEXT_LABEL
from tailor.registry.entities import ModelVersion
from tailor.registry.gate import THRESHOLDS, gate_failures
from tailor.serve.console.formats import when
from tailor.serve.console.render import Page, SignedIn, language_param
from tailor.serve.errors import ApiError
from tailor.serve.routes import audit as audit_api
from tailor.serve.routes import files as files_api
from tailor.serve.routes import gate as gate_api

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])

AUDIT_PAGE = 50  # audit rows per page
HEADER_BYTES = 64 * 1024  # what is read of a file to find its columns (a CSV header, a JSONL file's first object)
FILES_LISTED = 100  # the newest uploads offered to a bias report


@router.get("/models/{name}/{version}/bias")
async def bias_page(name: str, version: int, page: SignedIn,
                    file: Annotated[str | None, Query(min_length=1, max_length=64)] = None) -> Response:
    """A version's bias report: the form that runs one on an uploaded labelled file (a slice column from that
    file's columns, a positive label from its labels, the counterfactual check), for a key with the deploy scope
    as the API requires; and the latest report stored with the version."""
    found = await page.call(page.services.registry.store.get_version, page.principal.tenant, name, version)
    listed = await page.call(files_api.list_files, page.principal, page.services, limit=FILES_LISTED)
    files = [f for f in listed["data"] if f["kind"] == TEXT_LABEL]
    chosen = next((f for f in files if f["id"] == file), files[0] if files else None)
    columns = await page.call(_slice_columns, page, chosen["id"]) if chosen else []
    return page.render("bias.html", title=page.t("trust.bias_title", ref=found.ref), active="models",
                       name=found.name, number=found.version, ref=found.ref, classifier=found.task == "classify",
                       can_run=page.allows("deploy"), files=files, chosen=chosen, columns=columns,
                       labels=list((chosen or {}).get("summary", {}).get("labels") or {}),
                       report=_shown_report(found.metrics.get("fairness")))


def _slice_columns(page: Page, file_id: str) -> list[str]:
    """The columns of an uploaded text/label file other than its text and label: a CSV or TSV file's header, a
    JSONL file's first object's keys (the columns a slice may be drawn from)."""
    files = page.services.files
    stored = files.get(page.principal.tenant, file_id)
    summary = stored.summary
    with files.open(stored) as stream:
        head = stream.read(HEADER_BYTES).decode(summary.get("encoding") or "utf-8", errors="replace")
    first = next((line for line in head.splitlines() if line.strip()), "")
    if summary.get("format") == "jsonl":
        try:
            record = json.loads(first)
        except ValueError:  # a first line longer than what was read
            record = {}
        found = list(record) if isinstance(record, dict) else []
    else:
        delimiter = "\t" if summary.get("format") == "tsv" else ","
        found = [name.strip() for name in next(csv.reader([first], delimiter=delimiter), [])]
    used = {summary.get("text_column"), summary.get("label_column")}
    return [column for column in found if column and column not in used]


def _shown_report(stored: dict | None) -> dict | None:
    """A stored bias report (``metrics["fairness"]``) as the page shows it: its time, and its slices with
    too-small slices last."""
    if not stored:
        return None
    slices = sorted(stored.get("slices") or [], key=lambda s: (s["too_small"], -s["n"]))
    return {**stored, "slices": slices, "when": when(_moment(stored.get("created_at")))}


def _moment(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


@router.get("/gate")
async def gate_page(page: SignedIn) -> Response:
    """The tenant's release gate: each threshold a version must pass before an alias serves it; a key with the
    admin scope changes them."""
    gate = await page.call(gate_api.get_gate, page.principal, page.services)
    return page.render("gate.html", title=page.t("trust.gate_title"), active="gate", gate=gate,
                       thresholds=THRESHOLDS, can_edit=page.allows("admin"))


@router.get("/audit")
async def audit_page(page: SignedIn,
                     since: Annotated[str | None, Query(max_length=40)] = None,
                     action: Annotated[str | None, Query(max_length=200)] = None,
                     after: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                     verify: Annotated[bool, Query()] = False) -> Response:
    """The tenant's audit log for a key with the admin scope (others get a 403 page): newest first, filtered by
    time and action as ``GET /v1/audit`` is, paged by seq; ``verify`` checks the whole hash chain (every
    tenant's rows, which are one chain) and names the first row that breaks it."""
    title = page.t("trust.audit_title")
    if not page.allows("admin"):
        return page.render("audit.html", status=403, title=title, active="audit", allowed=False)
    since, action = (since or "").strip() or None, (action or "").strip() or None
    error = None
    try:
        listed = await page.call(audit_api.list_audit, page.principal, page.services, since=since, action=action,
                                 after=after, limit=AUDIT_PAGE)
    except ApiError as exc:  # a since that is no date: said beside its field
        error, listed = {"param": exc.param, "message": exc.message}, {"data": [], "has_more": False}
    rows = [{**row, "when": when(_moment(row["at"]))} for row in listed["data"]]
    chain = (await page.call(page.services.audit.verify)).to_dict() if verify else None
    if chain and not chain["intact"]:
        chain["own_row"] = await page.call(_own_row, page, chain["bad_seq"])
    older = page.url("/console/audit", since=since, action=action, after=rows[-1]["seq"]) \
        if listed["has_more"] and rows else None
    return page.render("audit.html", title=title, active="audit", allowed=True, rows=rows, since=since or "",
                       action=action or "", after=after, older=older, error=error, chain=chain,
                       newest=page.url("/console/audit", since=since, action=action))


def _own_row(page: Page, seq: int) -> bool:
    """Whether row ``seq`` of the chain is this tenant's (the page then links to it)."""
    rows, _ = page.services.audit.list(page.principal.tenant, after=seq + 1, limit=1)
    return bool(rows) and rows[0].seq == seq


def gate_standing(page: Page, version: ModelVersion) -> dict:
    """How ``version`` stands against its tenant's release gate: ``{"active", "failures"}`` (no failures: it
    passes; an inactive gate checks nothing)."""
    policy = page.services.gates.get(page.principal.tenant)
    return {"active": policy.active, "failures": gate_failures(policy, version) if policy.active else []}

