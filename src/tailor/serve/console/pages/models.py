"""Console pages: the tenant's fine-tuned models; one model's versions, aliases and their history with the
release actions; one version's evaluation report, calibration, lineage and export downloads, and its model
card; and two versions side by side.

Pages render on the server from the API's route functions (:mod:`tailor.serve.routes.models`) and the registry
store they use; ``static/models.js`` sends the release buttons to the ``/v1`` alias routes and the paired
comparison to ``POST /v1/models/compare``.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from tailor.eval.metrics import HEADLINE_KEYS, compare
from tailor.eval.report import confused_pairs
from tailor.models.card import version_card
from tailor.models.export import ARCHIVES, export_formats
from tailor.registry.entities import ModelVersion
from tailor.serve.console.formats import when
from tailor.serve.console.markdown import markdown_html, split_front_matter
from tailor.serve.console.pages.trust import gate_standing
from tailor.serve.console.render import SignedIn, language_param
from tailor.serve.routes import files as files_api
from tailor.serve.routes import models as models_api

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])

# The numbers a version is summed up by, per task: the test set's, as training stored them in metrics["test"].
SUMMARY = {"classify": HEADLINE_KEYS, "chat": ("loss", "perplexity", "token_accuracy")}
CLASSIFY_EXTRA = ("roc_auc", "ece", "log_loss")  # shown when computed, without a baseline
CHAT_METRICS = (("loss", "base_loss"), ("perplexity", "base_perplexity"), ("token_accuracy", "base_token_accuracy"),
                ("exact_match", None), ("macro_f1", None))
LOWER_IS_BETTER = frozenset({"ece", "log_loss", "loss", "perplexity"})



def _test(version: ModelVersion) -> dict:
    return version.metrics.get("test") or {}


def _summary(version: ModelVersion) -> dict:
    test = _test(version)
    return {key: test.get(key) for key in SUMMARY.get(version.task, ())}


def _version_row(version: ModelVersion) -> dict:
    return {"version": version.version, "created": when(version.created_at), "method": version.method,
            "base_model": version.base_model, "summary": _summary(version), "aliases": version.aliases,
            "parent": version.lineage.get("parent"), "ref": version.ref}


@router.get("/models")
async def models_page(page: SignedIn) -> Response:
    """The tenant's fine-tuned models: name, task, base, latest version and every alias."""
    listed = await page.call(models_api.list_models, page.principal, page.services)
    registered = await page.call(page.services.registry.store.list_models, page.principal.tenant)
    aliases = {model.name: model.aliases for model in registered}
    models = [{**m, "alias_map": aliases.get(m["id"], {})} for m in listed["data"] if m["version"] is not None]
    return page.render("models.html", title=page.t("models.title"), active="models", models=models)


@router.get("/models/{name}")
async def model_page(name: str, page: SignedIn) -> Response:
    """One model: its versions with their numbers and lineage, its aliases with their release state and
    history, the release actions (for a key with the deploy scope), and a pick of two versions to compare."""
    aliases = await page.call(models_api.list_aliases, name, page.principal, page.services)
    versions = await page.call(page.services.registry.store.list_versions, page.principal.tenant, aliases["model"])
    versions = sorted(versions, key=lambda v: -v.version)
    task = versions[0].task if versions else "classify"
    history = [{**event, "when": when(event["created_at"])} for event in reversed(aliases["history"])]
    return page.render("model.html", title=page.t("models.model_title", name=aliases["model"]), active="models",
                       name=aliases["model"], task=task, versions=[_version_row(v) for v in versions],
                       summary_keys=SUMMARY.get(task, ()), aliases=aliases["data"], history=history,
                       can_deploy=page.allows("deploy"), can_override=page.allows("admin"),
                       lower_is_better=LOWER_IS_BETTER)


@router.get("/models/{name}/compare")
async def compare_page(name: str, page: SignedIn, a: Annotated[int, Query(ge=1, le=2**31 - 1)],
                       b: Annotated[int, Query(ge=1, le=2**31 - 1)]) -> Response:
    """Versions ``a`` and ``b`` side by side: their stored test numbers and per-class scores with B minus A;
    and, for classifiers, a paired comparison on a labelled file and the feedback, run by the API."""
    store = page.services.registry.store
    first = await page.call(store.get_version, page.principal.tenant, name, a)
    second = await page.call(store.get_version, page.principal.tenant, name, b)
    keys = _compared_keys(first, second)
    rows = [(key, _test(first).get(key), _test(second).get(key)) for key in keys]
    headline = [{"key": key, "a": va, "b": vb, "diff": _difference(va, vb)} for key, va, vb in rows]
    files = []
    if first.task == second.task == "classify":
        listed = await page.call(files_api.list_files, page.principal, page.services, limit=100)
        files = [f for f in listed["data"] if f["kind"] == "text-label"]
    return page.render("model_compare.html", title=page.t("models.compare_title", name=name, a=a, b=b),
                       active="models", name=name, first=_version_row(first), second=_version_row(second),
                       headline=headline, per_class=_per_class_pairs(first, second), files=files,
                       classifiers=first.task == second.task == "classify", lower_is_better=LOWER_IS_BETTER)


@router.get("/models/{name}/{version}")
async def version_page(name: str, version: int, page: SignedIn) -> Response:
    """One version: its evaluation report (headline numbers against the majority baseline, confusion matrix,
    per-class scores, most confused pairs), calibration and abstain threshold, other evaluations, its standing
    against the tenant's release gate and its latest bias report's figures, its lineage and its export
    downloads."""
    found = await page.call(page.services.registry.store.get_version, page.principal.tenant, name, version)
    gate = await page.call(gate_standing, page, found)
    test = _test(found)
    report = _classification_report(found) if found.task == "classify" and "per_class" in test else None
    chat = [{"key": key, "tuned": test.get(key), "base": test.get(base) if base else None}
            for key, base in CHAT_METRICS if test.get(key) is not None] if found.task == "chat" else []
    return page.render("model_version.html", title=page.t("models.version_title", ref=found.ref), active="models",
                       name=found.name, v=_version_row(found), task=found.task, report=report, chat=chat,
                       chat_examples=test.get("examples"), calibration=found.metrics.get("calibration"),
                       abstain=found.metrics.get("abstain"), serving=(found.metrics.get("serving") or {}).get("runtime"),
                       evaluations=_evaluations(found), lineage=_lineage(found), gate=gate,
                       fairness=found.metrics.get("fairness"), can_override=page.allows("admin"),
                       params=found.params, exports=export_formats(found.task, found.method), archives=list(ARCHIVES))


@router.get("/models/{name}/{version}/card")
async def card_page(name: str, version: int, page: SignedIn) -> Response:
    """One version's model card (:mod:`tailor.models.card`): its metadata as YAML, its markdown rendered with
    everything it quotes escaped (:mod:`tailor.serve.console.markdown`), and the card's raw text from the API."""
    store = page.services.registry.store
    found = await page.call(store.get_version, page.principal.tenant, name, version)
    metadata, body = split_front_matter(await page.call(version_card, store, found))
    return page.render("model_card.html", title=page.t("models.card_title", ref=found.ref), active="models",
                       name=found.name, v=_version_row(found), metadata=metadata, card=markdown_html(body))


def _classification_report(version: ModelVersion) -> dict:
    test, baseline = _test(version), version.metrics.get("baseline")
    delta = compare(test, baseline) if baseline else {}
    headline = [{"key": key, "value": test[key], "baseline": baseline.get(key) if baseline else None,
                 "delta": delta.get(key)} for key in HEADLINE_KEYS if test.get(key) is not None]
    headline += [{"key": key, "value": test[key], "baseline": None, "delta": None}
                 for key in CLASSIFY_EXTRA if test.get(key) is not None]
    matrix = test.get("confusion_matrix") or {"labels": [], "matrix": []}
    top = max((max(row) for row in matrix["matrix"] if row), default=0) or 1
    cells = [[{"count": count, "shade": round(count / top, 3)} for count in row] for row in matrix["matrix"]]
    return {"n": test.get("n"), "headline": headline, "baseline_label": baseline.get("label") if baseline else None,
            "labels": matrix["labels"], "cells": cells, "per_class": list(test["per_class"].items()),
            "pairs": confused_pairs(test) if matrix["labels"] else []}


def _evaluations(version: ModelVersion) -> list[dict]:
    """Evaluations run on other files (``tailor evaluate``), newest first; a file is shown by its name only."""
    found = version.metrics.get("evaluations") or {}
    rows = [{"key": key, **record, "file": PurePath(str(record.get("data", ""))).name}
            for key, record in found.items()]
    return sorted(rows, key=lambda row: row.get("created_at") or "", reverse=True)


def _dataset(record: dict | None) -> dict | None:
    """A dataset of the lineage as shown: its hash, format and rows, never the path it was read from."""
    if not record:
        return None
    return {"sha256": (record.get("sha256") or "")[:12], "format": record.get("format"),
            "rows": record.get("rows_read")}


def _lineage(version: ModelVersion) -> dict:
    lineage = version.lineage
    retrain = lineage.get("retrain") or {}
    return {"parent": lineage.get("parent"), "dataset": _dataset(lineage.get("dataset")),
            "eval_dataset": _dataset(lineage.get("eval_dataset")), "rows": lineage.get("rows") or {},
            "label_counts": lineage.get("label_counts") or {}, "base_reason": lineage.get("base_reason"),
            "method_reason": lineage.get("method_reason"), "retrain_rows": retrain.get("rows") or {},
            "replayed": [_dataset(s) for s in retrain.get("replay_sources", [])],
            "timings": lineage.get("timings") or {}, "stop_reason": lineage.get("stop_reason"),
            "device": lineage.get("device"), "precision": lineage.get("precision"),
            "tailor_version": lineage.get("tailor_version")}


def _compared_keys(first: ModelVersion, second: ModelVersion) -> list[str]:
    if first.task == second.task == "chat":
        return [key for key, _ in CHAT_METRICS if key in _test(first) or key in _test(second)]
    keys = [*HEADLINE_KEYS, *CLASSIFY_EXTRA]
    return [key for key in keys if _test(first).get(key) is not None or _test(second).get(key) is not None]


def _difference(a, b) -> float | None:
    return None if a is None or b is None else round(b - a, 4)


def _per_class_pairs(first: ModelVersion, second: ModelVersion) -> list[dict]:
    """Each label of either version (A's order, then B's others) with both versions' scores and B minus A's F1."""
    ours, theirs = _test(first).get("per_class") or {}, _test(second).get("per_class") or {}
    labels = [*ours, *(label for label in theirs if label not in ours)]
    return [{"label": label, "a": ours.get(label), "b": theirs.get(label),
             "f1_diff": _difference((ours.get(label) or {}).get("f1"), (theirs.get(label) or {}).get("f1"))}
            for label in labels]
