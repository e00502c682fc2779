"""``POST /v1/models/{model_id}/evaluations``: a classifier version's bias report on an uploaded labelled file
(the slices of a column, the slice finder's worst slices, a counterfactual check), stored with the version as
``metrics["fairness"]`` for the release gate (see :mod:`tailor.eval.fairness`)."""

from __future__ import annotations

from fastapi import APIRouter

from tailor.errors import UsageError
from tailor.eval.compare import Contender, check_classifier
from tailor.eval.counterfactual import build_swapper, shipped_terms
from tailor.eval.fairness import evaluate_fairness, keeps_evidence
from tailor.serve.deps import Deployer, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.models import resolve_model
from tailor.serve.routes.common import errors, labelled_file_rows
from tailor.serve.schemas import EvaluationRequest, FairnessReport

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("/{model_id}/evaluations", response_model=FairnessReport, responses=errors(404, 503),
             summary="Tailor: a classifier version's bias report on an uploaded file: slices of a column, the worst "
                     "slices found automatically, a counterfactual check (stored for the release gate)")
def evaluate(model_id: str, body: EvaluationRequest, principal: Deployer, services: ServicesDep) -> dict:
    """The version ``model_id`` (``name:3``, ``name@prod``) predicts every row of the uploaded ``file`` on the
    runtime that serves it. With ``slice_column`` each value of that column is a slice (accuracy with a Wilson
    95% interval, macro-F1, positive rate, gap to the best slice; slices under ``min_rows`` rows are too small to
    judge); the slice finder always reports where the model is worst by text length, script and frequent words;
    ``"counterfactual": true`` swaps protected terms (the shipped English and Chinese lists) and counts changed
    labels. The report replaces the version's stored one unless it is the finder's alone and the stored one has a
    slice table or a counterfactual check. A column the file lacks is a 400 naming ``slice_column``. (A plain
    ``def``: FastAPI runs it in its thread pool, off the event loop, as the file is read and predicted.)"""
    named = resolve_model(services.registry, principal.tenant, model_id)
    if named.version is None:
        raise ApiError(400, f"{model_id!r} is a base model without labels; evaluate a fine-tuned classifier",
                       param="model_id")
    check_classifier(model_id, named.version, "a bias report needs a fine-tuned classifier")
    keep = (body.slice_column,) if body.slice_column else ()
    rows, _ = labelled_file_rows(services, principal.tenant, body.file, needed_by="a bias report", keep_columns=keep)
    contender = Contender(model_id, named.version, services.models.classifier(named))
    swapper = build_swapper(shipped_terms()) if body.counterfactual else None
    try:
        summary, report = evaluate_fairness(contender.labels, contender.predict, rows, slice_column=body.slice_column,
                                            positive_label=body.positive_label, swapper=swapper)
    except UsageError as exc:  # the only one left: a positive label the model does not have
        raise ApiError(400, str(exc), param="positive_label") from None
    version = named.version
    if body.slice_column or body.counterfactual or not keeps_evidence(version.metrics.get("fairness")):
        services.registry.store.update_metrics(principal.tenant, version.name, version.version, {"fairness": report})
    return {"object": "model.evaluation", "model": version.ref, **summary, **report}
