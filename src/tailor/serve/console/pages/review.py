"""Console page: label the answers worth labelling first, then retrain on them.

``/console/review`` lists the tenant's classifiers; ``/console/review/{model}`` shows the version's review
queue (``GET /v1/models/{id}/review_queue``) one answer at a time. Its script sends each label with
``POST /v1/feedback`` (keys 1-9 for the labels, S to skip, U to undo with ``DELETE /v1/feedback/{id}``),
counts the labels a retrain would use, and starts that retrain (``POST /v1/fine_tuning/jobs`` with
``method.tailor.feedback``; the ``train`` scope), then opens the job's page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from tailor.serve.console.render import SignedIn, language_param
from tailor.serve.routes import models as models_api
from tailor.serve.routes import monitoring as monitoring_api

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])
QUEUE_LENGTH = 50
SHORTCUTS = 9  # labels 1-9 have a key


@router.get("/review")
async def review_index(page: SignedIn) -> Response:
    """The tenant's fine-tuned classifiers, each a link to its review queue."""
    models = await page.call(models_api.list_models, page.principal, page.services)
    classifiers = [m for m in models["data"] if m["version"] is not None and m["task"] == "classify"]
    return page.render("review_index.html", title=page.t("review.title"), active="review", models=classifiers)


@router.get("/review/{model_id}")
async def review_model(page: SignedIn, model_id: str,
                       hours: Annotated[float, Query(gt=0, le=24 * 366, description="answers of the last this many "
                                                                                    "hours")] = 24 * 7) -> Response:
    """The queue of the version ``model_id`` names, as a labelling page. Another tenant's model is a 404 page."""
    queue = await page.call(monitoring_api.get_review_queue, model_id, page.principal, page.services,
                            limit=QUEUE_LENGTH, hours=hours, format="json")
    items = queue["data"]
    labels = sorted(items[0]["scores"]) if items else []  # the order feedback names them in
    return page.render("review.html", title=page.t("review.model_title", model=queue["model"]), active="review",
                       model_id=model_id, ref=queue["model"], items=items, labels=labels, shortcuts=SHORTCUTS,
                       counts=queue["feedback_labels"], hours=hours, can_train=page.allows("train"))
