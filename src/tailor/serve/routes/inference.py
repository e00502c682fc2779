"""Inference on encoder models: ``/v1/classifications`` (Tailor's) and ``/v1/embeddings`` (OpenAI's shape)."""

from __future__ import annotations

import base64
import secrets
import time

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from tailor.data.fingerprint import text_features
from tailor.errors import UsageError
from tailor.eval.abstain import recorded_threshold
from tailor.models.classifier import predictions_from_probs
from tailor.models.explain import OcclusionPlan
from tailor.monitor.records import new_id
from tailor.serve.deps import Reader, ServicesDep
from tailor.serve.errors import ApiError
from tailor.serve.batching import Scored
from tailor.serve.models import NamedModel
from tailor.serve.recording import Recording
from tailor.serve.release import VERSION_HEADER, RouteKey, check_room, route_model
from tailor.serve.routes.common import errors
from tailor.serve.schemas import ClassificationRequest, ClassificationResponse, EmbeddingRequest, EmbeddingResponse

router = APIRouter(prefix="/v1", tags=["inference"])
MAX_EXPLAINED_TEXTS = 32  # an explained text costs one forward row per word (up to 65): 32 texts fill a batch


def _texts(value: str | list[str], max_chars: int) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value)
    for i, text in enumerate(texts):
        if len(text) > max_chars:
            raise ApiError(400, f"input[{i}]: {len(text):,} characters, over the limit of {max_chars:,}",
                           param="input")
    return texts


def _abstain_threshold(body: ClassificationRequest, named) -> float | None:
    """The threshold the request asks to abstain below: its own, the version's suggestion, or None (off)."""
    if body.abstain_threshold is not None:
        if body.abstain is False:
            raise ApiError(400, "abstain_threshold: given with \"abstain\": false; leave one of them out",
                           param="abstain_threshold")
        return body.abstain_threshold
    if not body.abstain:
        return None
    try:
        return recorded_threshold(named.version, how='with "abstain_threshold"')
    except UsageError as exc:
        raise ApiError(400, f"abstain: {exc}", param="abstain") from None


def _explain_mode(body: ClassificationRequest, named: NamedModel, texts: int) -> bool | str:
    """What the request asks to explain: False, True (the predicted label) or ``"all"`` (every label).

    Raises:
        ApiError: 400 for a model that is not a fine-tuned classifier, or too many texts.
    """
    if not body.explain:
        return False
    if named.base is not None or named.task != "classify":
        what = f"a {named.task} model" if named.task != "classify" else "a base model without labels"
        raise ApiError(400, f"explain: explanations exist for fine-tuned classifiers only; {named.id!r} is {what}",
                       param="explain")
    if texts > MAX_EXPLAINED_TEXTS:
        raise ApiError(400, f"explain: at most {MAX_EXPLAINED_TEXTS} texts per request can be explained, not {texts}",
                       param="explain")
    return body.explain


def _originals(scored: Scored, rows: list[int]) -> Scored:
    """The rows of ``scored`` that are the request's own texts (the rest are their occlusion variants)."""
    return Scored(scored.probs[rows], [scored.tokens[i] for i in rows], [scored.unknown[i] for i in rows])


def _result(prediction_id: str, index: int, prediction, abstaining: bool, explanation=None) -> dict:
    row = {"id": prediction_id, "index": index, "label": prediction.label, "score": prediction.score,
           "scores": prediction.scores}
    if abstaining:  # only then: existing clients keep exactly the shape they know
        row["abstained"] = prediction.abstained
        if prediction.abstained:
            row["reason"] = prediction.reason
    if explanation is not None:
        row["explanation"] = explanation.tokens
        if explanation.by_label is not None:
            row["explanations"] = explanation.by_label
    return row


@router.post("/classifications", response_model=ClassificationResponse, response_model_exclude_unset=True,
             responses=errors(404, 503), summary="Tailor: classify texts with a fine-tuned classifier")
async def classify(body: ClassificationRequest, principal: Reader, services: ServicesDep, reply: Response,
                   route_key: RouteKey = None) -> dict:
    """Label each text. With ``"abstain": true`` (the version's suggested threshold, chosen on its validation
    rows for a target precision) or ``"abstain_threshold": t``, a text whose top probability is below the
    threshold gets ``"label": null``, ``"abstained": true`` and the ``reason``; its scores are still given.

    With ``"explain": true`` each result also has ``explanation``: every word's weight for the most probable
    label (its probability minus its probability with that word removed, offsets into the text), computed by
    occlusion on the same runtime in the same batched pass; ``"explain": "all"`` adds ``explanations``, the
    weights for every label (see :mod:`tailor.models.explain`). Only fine-tuned classifiers can be explained.

    Each answer has a prediction ``id`` (for feedback) and is recorded for monitoring; the text itself is kept
    only with ``"store": true`` (or, when the request leaves ``store`` out, the model's ``store_inputs``
    setting). Through an alias with a canary, ``user`` (or the ``X-Tailor-Route-Key`` header) keeps a client on
    one version; with a shadow, the candidate's answers to a copy are recorded, never
    returned. The ``x-tailor-version`` header names the version that answered."""
    started = time.perf_counter()
    texts = _texts(body.input, services.settings.max_text_chars)
    routed = route_model(services.registry, principal.tenant, body.model, body.user or route_key)
    named = routed.answering
    recording = Recording(services, principal.tenant, body.model, named, body, started)
    with recording.failures():
        explain = _explain_mode(body, named, len(texts))
        runtime = await _classifier(services, named)
        threshold = _abstain_threshold(body, named)
        plan = OcclusionPlan(texts) if explain else None
        scored = await services.batcher.score(named.cache_key, runtime, plan.texts if plan else texts)
    explained = [None] * len(texts)
    if plan is not None:
        explained = plan.explain(runtime.labels, scored.probs, all_labels=explain == "all")
        scored = _originals(scored, plan.originals)
    tokens = sum(scored.tokens)
    predictions = predictions_from_probs(runtime.labels, scored.probs, threshold)
    request_id = "clf-" + secrets.token_hex(12)
    ids = [new_id("classification") for _ in predictions]
    response = {"id": request_id, "object": "list", "model": body.model,
                "data": [_result(ids[i], i, p, threshold is not None, explained[i])
                         for i, p in enumerate(predictions)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    if threshold is not None:
        response["abstain_threshold"] = threshold
    recording.add("classification", _answers(ids, request_id, texts, scored, predictions))
    if routed.shadow is not None:
        services.shadow.submit(lambda: _shadow_classify(services, principal.tenant, body, routed.shadow, texts,
                                                        request_id))
    reply.headers[VERSION_HEADER] = routed.version_label
    return response


async def _classifier(services, named: NamedModel):
    """The loaded classifier runtime of ``named``, from memory without a thread hop when it is ready."""
    runtime = services.models.ready(named.cache_key) if named.version and named.task == "classify" else None
    return runtime if runtime is not None else await run_in_threadpool(services.models.classifier, named)


def _answers(ids: list[str], request_id: str, texts: list[str], scored, predictions, extra: dict | None = None
             ) -> list[dict]:
    """The records' fields of a classification's answers; ``extra`` goes in each one's details."""
    return [{"id": ids[i], "request_id": request_id, "prompt_tokens": scored.tokens[i], "label": p.label,
             "score": p.score, "scores": p.scores, "input": {"text": texts[i]},
             "features": text_features(texts[i], scored.unknown[i]),
             "details": ({"abstained": True, "reason": p.reason} if p.abstained else {}) | (extra or {}) or None}
            for i, p in enumerate(predictions)]


async def _shadow_classify(services, tenant: str, body: ClassificationRequest, named: NamedModel, texts: list[str],
                           request_id: str) -> None:
    """The shadow candidate's answers to a copy of a classification request, recorded under the request's id
    with ``details: {"shadow": true}`` (see :mod:`tailor.serve.release`)."""
    started = time.perf_counter()
    runtime = await _classifier(services, named)
    try:
        threshold = _abstain_threshold(body, named)
    except ApiError:  # the candidate suggests no threshold: its answers are recorded without abstaining
        threshold = None
    check_room(services.batcher, len(texts))
    scored = await services.batcher.score(named.cache_key, runtime, texts)
    predictions = predictions_from_probs(runtime.labels, scored.probs, threshold)
    Recording(services, tenant, body.model, named, body, started).add("classification", _answers(
        [new_id("classification") for _ in predictions], request_id, texts, scored, predictions, {"shadow": True}))


@router.post("/embeddings", response_model=EmbeddingResponse, responses=errors(404, 503),
             summary="Sentence embeddings from a base encoder or a fine-tuned classifier's encoder")
async def embeddings(body: EmbeddingRequest, principal: Reader, services: ServicesDep, reply: Response,
                     route_key: RouteKey = None) -> dict:
    """OpenAI's embeddings. The request is recorded for monitoring (its texts only with ``"store": true``, or
    the model's ``store_inputs`` setting).
    Through an alias with a canary it is routed as a classification is; a shadow sees classifications only."""
    started = time.perf_counter()
    texts = _texts(body.input, services.settings.max_text_chars)
    routed = route_model(services.registry, principal.tenant, body.model, body.user or route_key)
    named = routed.answering
    recording = Recording(services, principal.tenant, body.model, named, body, started)
    with recording.failures():
        encoder = await run_in_threadpool(services.models.encoder, named)
        vectors, tokens = await run_in_threadpool(encoder.embed, texts)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise ApiError(400, f"dimensions: {body.model} makes {vectors.shape[1]}-dimensional vectors; "
                            "other sizes are not supported", param="dimensions")
    if body.encoding_format == "base64":
        data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
    else:
        data = [v.tolist() for v in vectors]
    recording.add("embedding", [
        {"id": new_id("embedding"), "prompt_tokens": tokens, "input": {"texts": texts},
         "details": {"texts": len(texts), "dimensions": int(vectors.shape[1])}}])
    reply.headers[VERSION_HEADER] = routed.version_label
    return {"object": "list", "model": body.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)]}
