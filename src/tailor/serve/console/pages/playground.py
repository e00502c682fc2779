"""The playground: try a model in the browser.

A fine-tuned classifier classifies the texts typed in (one per line) and shows every label's probability; a
chat model (a fine-tuned chat version or a chat base) answers a conversation token by token, and a fine-tuned
chat version can be compared with its base model, both answers streamed side by side. The page only picks the
model and describes it; its script (``static/playground.js``) calls ``POST /v1/classifications`` and
``POST /v1/chat/completions`` with the session cookie, as any API client would.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from tailor.errors import NotFoundError
from tailor.models.classifier import ClassifierSpec
from tailor.serve.console.render import Page, SignedIn, language_param
from tailor.serve.models import resolve_model
from tailor.serve.routes import models as models_api
from tailor.serve.routes.completions import DEFAULT_CHAT_MAX_TOKENS

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])
DEFAULT_TEMPERATURE = 0.7


def can_try(model: dict) -> bool:
    """Whether the playground can try ``model`` (a /v1/models object): a fine-tuned classifier or chat version,
    or a chat base. A base encoder has no labels: it classifies nothing until it is fine-tuned."""
    return model["task"] == "chat" or model["version"] is not None


def kind_of(model: dict) -> str:
    """The picker's group of a model it can try: ``classify``, ``chat`` (fine-tuned versions) or ``base``."""
    if model["version"] is None:
        return "base"
    return "chat" if model["task"] == "chat" else "classify"


def choices(models: list[dict]) -> dict[str, list[dict]]:
    """The picker's options by group: each fine-tuned model (its latest version) and each of its aliases, then the
    chat bases. Each option is ``{"id", "version"}``."""
    groups: dict[str, list[dict]] = {"classify": [], "chat": [], "base": []}
    for model in filter(can_try, models):
        group = groups[kind_of(model)]
        group.append({"id": model["id"], "version": model["version"]})
        group.extend({"id": f"{model['id']}@{alias}", "version": model["version"]} for alias in model["aliases"])
    return groups


async def _labels(page: Page, model_id: str) -> list[str]:
    """The labels of the classifier ``model_id`` names, in its output order."""
    registry = page.services.registry

    def read() -> list[str]:
        named = resolve_model(registry, page.principal.tenant, model_id)
        return ClassifierSpec.load(registry.artifact_dir(named.version)).labels

    return await page.call(read)


async def _comparable_base(page: Page, model: dict) -> str | None:
    """The base model a fine-tuned chat version can be compared with: its base when this tenant can chat with
    it (a catalog chat base or one of its own chat versions), else None (e.g. a base from a local directory)."""
    if model["task"] != "chat" or model["version"] is None:
        return None
    try:
        base = await page.call(models_api.get_model, model["base_model"], page.principal, page.services)
    except NotFoundError:
        return None
    return base["id"] if base["task"] == "chat" else None


@router.get("/playground")
async def playground(page: SignedIn, model: Annotated[str | None, Query(
        max_length=300, description="the model to try: an id, name:version or name@alias")] = None) -> Response:
    """The model picker and, for the model picked, its classifier or chat panel.

    Raises:
        NotFoundError: ``model`` is not one of this tenant's models nor a base (a 404 page).
    """
    listed = await page.call(models_api.list_models, page.principal, page.services)
    groups = choices(listed["data"])
    selected = labels = compare_base = None
    if model:
        selected = await page.call(models_api.get_model, model, page.principal, page.services)
        if can_try(selected) and selected["task"] != "chat":
            labels = await _labels(page, model)
        compare_base = await _comparable_base(page, selected)
        listed_ids = {option["id"] for group in groups.values() for option in group}
        if can_try(selected) and model not in listed_ids:
            groups[kind_of(selected)].insert(0, {"id": model, "version": selected["version"]})
    encoders = [m["id"] for m in listed["data"] if not can_try(m)]
    return page.render("playground.html", title=page.t("playground.title"), active="playground", groups=groups,
                       selected=selected, usable=selected is not None and can_try(selected), labels=labels,
                       compare_base=compare_base, encoders=encoders, max_tokens=DEFAULT_CHAT_MAX_TOKENS,
                       temperature=DEFAULT_TEMPERATURE)
