"""``POST /v1/models/compare``: two classifier versions of the tenant on the same rows (an uploaded labelled
file and the labelled feedback), with paired significance tests and a per-class table (see
:mod:`tailor.eval.compare`)."""

from __future__ import annotations

from fastapi import APIRouter

from tailor.eval.compare import Contender, check_classifier, compare_versions, model_names
from tailor.serve.deps import Reader, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.models import NamedModel, resolve_model
from tailor.serve.recording import written_records
from tailor.serve.routes.common import errors, labelled_file_rows
from tailor.serve.schemas import ComparisonReport, CompareRequest

router = APIRouter(prefix="/v1/models", tags=["models"])


def _classifier(services, tenant: str, ref: str, param: str) -> NamedModel:
    """``ref`` resolved for ``tenant``, checked to be a fine-tuned classifier."""
    named = resolve_model(services.registry, tenant, ref)
    if named.version is None:
        raise ApiError(400, f"{param}: {ref!r} is a base model without labels; compare needs two fine-tuned "
                            "classifiers", param=param)
    check_classifier(ref, named.version)
    return named


@router.post("/compare", response_model=ComparisonReport, responses=errors(404, 503),
             summary="Tailor: compare two classifier versions on the same rows before promoting one")
def compare_models(body: CompareRequest, principal: Reader, services: ServicesDep) -> dict:
    """Both versions (``a``, the one served now, e.g. ``sentiment@prod``; ``b``, the candidate) predict an
    uploaded labelled ``file`` and, with ``"feedback": true``, the served texts that were stored and given a
    feedback label (answers of either version's model, under any id the client used). Per source: accuracy
    and macro-F1 of both, the exact McNemar test, a paired-bootstrap 95% interval of the macro-F1 difference, a
    verdict and a per-class table. An unknown or another tenant's model is a 404; a model that is not a
    classifier, versions with different labels, a file with labels they do not know, or no rows at all a 400.
    A feedback source without rows is an empty section (``rows`` 0)."""
    named = [_classifier(services, principal.tenant, ref, param) for ref, param in ((body.a, "a"), (body.b, "b"))]
    rows, name = (labelled_file_rows(services, principal.tenant, body.file, needed_by="compare")
                  if body.file else (None, None))
    a, b = (Contender(n.id, n.version, services.models.classifier(n)) for n in named)
    feedback = None
    if body.feedback:
        written_records(services)  # answers made a moment ago are found
        feedback = services.feedback.labelled_texts(principal.tenant, model_names(a, b))
    return compare_versions(a, b, file=rows, data=name, feedback=feedback)
