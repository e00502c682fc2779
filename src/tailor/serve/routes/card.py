"""``GET /v1/models/{model_id}/card``: a fine-tuned version's model card, in Hugging Face's format (YAML
metadata, then markdown; see :mod:`tailor.models.card`), generated from the registry on each request."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from tailor.models.card import version_card
from tailor.serve.deps import Reader, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.models import resolve_model
from tailor.serve.routes.common import errors

router = APIRouter(prefix="/v1/models", tags=["models"])
MARKDOWN = "text/markdown"  # Starlette adds "; charset=utf-8" to a text/ type
_CARD = {200: {"description": "the model card: YAML front matter (base_model, license, language, library_name, "
                              "pipeline_tag, tags, datasets by SHA-256, model-index), then markdown",
               "content": {MARKDOWN: {"schema": {"type": "string"}}}}}


@router.get("/{model_id}/card", response_class=Response, responses={**_CARD, **errors(400, 404)},
            summary="Tailor: a fine-tuned version's model card (Hugging Face's format, markdown)")
def get_model_card(model_id: str, principal: Reader, services: ServicesDep) -> Response:
    """The card of the version ``model_id`` names (``name``, ``name:N``, ``name@alias``, an ``ft:`` id): what it
    is, its training data (files by SHA-256), its evaluation with slices and calibration, explanation examples,
    limitations and how to call it; the same card ``--format hf`` exports ship as ``README.md``. A base model of
    the catalog is a 400 naming ``model_id``; another tenant's model a 404."""
    named = resolve_model(services.registry, principal.tenant, model_id)
    if named.version is None:
        raise ApiError(400, f"{model_id!r} is a base model of the catalog; model cards describe fine-tuned versions",
                       param="model_id")
    return Response(version_card(services.registry.store, named.version), media_type=MARKDOWN)
