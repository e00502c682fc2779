"""``/v1/chat/completions`` and ``/v1/completions`` in OpenAI's shapes, streamed as server-sent events when
``stream`` is true, exactly as the ``openai`` client reads them (``data: {chunk}`` lines, then ``data: [DONE]``).

Generation holds one lock per process: on a CPU, concurrent decodes only slow each other down.

A chat model whose serving engine is still being built answers 503 with ``Retry-After`` and how long the
build has run (:meth:`tailor.serve.models.ModelCache.chat`), before any event of a stream is sent.

Every completion is recorded for monitoring (:mod:`tailor.serve.recording`); one made with ``"store": true``
keeps its messages too and is served back by OpenAI's stored-completions routes (``GET /v1/chat/completions``
with ``model``, ``metadata[key]=value``, ``after``, ``limit`` and ``order``; ``GET``, ``POST`` (metadata) and
``DELETE /v1/chat/completions/{id}``; ``GET /v1/chat/completions/{id}/messages``), so the ``openai``
client's ``chat.completions.list/retrieve/update/delete`` and ``messages.list`` work.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Annotated, Callable, Iterator, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from tailor.errors import NotFoundError
from tailor.monitor.records import PredictionRecord
from tailor.serve.deps import Reader, ServicesDep, Trainer, metadata_query
from tailor.serve.recording import Recording, written_records
from tailor.serve.release import VERSION_HEADER, RouteKey, route_model
from tailor.serve.routes.common import Limit, errors
from tailor.serve.schemas import (ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest, Deleted,
                                  MetadataUpdate, StoredChatCompletion, StoredChatCompletionList, StoredMessageList)

router = APIRouter(prefix="/v1", tags=["completions"])
DEFAULT_CHAT_MAX_TOKENS = 256
_decode_lock = threading.Lock()
_STREAM_RESPONSE = {200: {"content": {"text/event-stream": {"schema": {"type": "string"},
                                                            "description": "with stream: true"}}}}


def _messages(body: ChatCompletionRequest) -> list[dict]:
    """OpenAI messages as ``{"role", "content"}`` text (``developer`` is the newer name of ``system``)."""
    out = []
    for message in body.messages:
        content = message.content if isinstance(message.content, str) else "".join(p.text for p in message.content)
        out.append({"role": "system" if message.role == "developer" else message.role, "content": content})
    return out


def _sampling(body) -> dict:
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    return {"temperature": body.temperature, "top_p": body.top_p, "stop": stop, "seed": body.seed}


def _locked(pieces: Iterator[str]) -> Iterator[str]:
    with _decode_lock:
        yield from pieces


def _sse(chunks: Iterator[dict]) -> Iterator[bytes]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _usage(usage: dict) -> dict:
    return {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def _collected(pieces: Iterator[str], sink: list[str]) -> Iterator[str]:
    for piece in pieces:
        sink.append(piece)
        yield piece


def _then(chunks: Iterator[bytes], done: Callable[[], None]) -> Iterator[bytes]:
    """``chunks``, then ``done()`` (also when the client left mid-stream: what was sent is recorded)."""
    try:
        yield from chunks
    finally:
        done()


def _record_completion(recording: Recording, kind: str, head: dict, text: list[str], usage: dict,
                       stored_input: dict) -> None:
    """Record a completion; one whose stream the client left before its end is counted but never stored."""
    finished = usage.get("finish_reason")
    recording.add(kind, [{"id": head["id"], "prompt_tokens": usage.get("prompt_tokens", 0),
                          "completion_tokens": usage.get("completion_tokens", 0), "output": "".join(text),
                          "input": stored_input if finished else None,
                          "details": {"created": head["created"], "finish_reason": finished}}])


def _stream_chunks(head: dict, pieces: Iterator[str], usage: dict, include_usage: bool,
                   choice: Callable[[dict, str | None], dict], first: dict | None) -> Iterator[dict]:
    """Chunks: an optional first one (the assistant role), one per text piece, the finish, then the usage."""
    if first is not None:
        yield {**head, "choices": [choice(first, None)]}
    for piece in pieces:
        yield {**head, "choices": [choice({"content": piece}, None)]}
    yield {**head, "choices": [choice({}, usage["finish_reason"])]}
    if include_usage:
        yield {**head, "choices": [], "usage": _usage(usage)}


@router.post("/chat/completions", response_model=ChatCompletion, responses={**errors(404, 503), **_STREAM_RESPONSE},
             summary="Chat with a chat base or a fine-tuned chat model (stream: true for server-sent events)")
async def chat_completions(body: ChatCompletionRequest, principal: Reader, services: ServicesDep, reply: Response,
                           route_key: RouteKey = None):
    """OpenAI's chat completions. Through an alias with a canary, ``user`` (or the ``X-Tailor-Route-Key`` header)
    keeps a client on one version; the ``x-tailor-version`` header names the version that answered."""
    started = time.perf_counter()
    routed = route_model(services.registry, principal.tenant, body.model, body.user or route_key)
    named = routed.answering
    recording, text = Recording(services, principal.tenant, body.model, named, body, started), []
    with recording.failures():
        chat = await run_in_threadpool(services.models.chat, named, wait=False)
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_CHAT_MAX_TOKENS
    usage: dict = {}
    pieces = chat.stream(_messages(body), max_tokens=max_tokens, usage=usage, **_sampling(body))
    head = {"id": "chatcmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": body.model,
            "system_fingerprint": None}
    messages = {"messages": [{"role": m.role, "content": c["content"], "name": m.name}
                             for m, c in zip(body.messages, _messages(body))]}

    def record() -> None:
        _record_completion(recording, "chat.completion", head, text, usage, messages)

    if body.stream:
        def choice(delta: dict, finish: str | None) -> dict:
            return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

        chunks = _stream_chunks({**head, "object": "chat.completion.chunk"}, _collected(_locked(pieces), text),
                                usage, bool(body.stream_options and body.stream_options.include_usage), choice,
                                first={"role": "assistant", "content": ""})
        return StreamingResponse(_then(_sse(chunks), record), media_type="text/event-stream",
                                 headers={VERSION_HEADER: routed.version_label})
    text.append(await run_in_threadpool(lambda: "".join(_locked(pieces))))
    record()
    reply.headers[VERSION_HEADER] = routed.version_label
    return {**head, "object": "chat.completion", "usage": _usage(usage),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text[0], "refusal": None},
                         "finish_reason": usage["finish_reason"], "logprobs": None}]}


@router.post("/completions", response_model=Completion, responses={**errors(404, 503), **_STREAM_RESPONSE},
             summary="Continue a plain-text prompt (no chat template; stream: true for server-sent events)")
async def completions(body: CompletionRequest, principal: Reader, services: ServicesDep, reply: Response,
                      route_key: RouteKey = None):
    """OpenAI's (legacy) text completions, routed through an alias's canary as chat completions are."""
    started = time.perf_counter()
    routed = route_model(services.registry, principal.tenant, body.model, body.user or route_key)
    named = routed.answering
    recording, text = Recording(services, principal.tenant, body.model, named, body, started), []
    with recording.failures():
        model = await run_in_threadpool(services.models.chat, named, wait=False)
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    usage: dict = {}
    pieces = model.stream_ids(model.text_prompt_ids(prompt), max_tokens=body.max_tokens, usage=usage,
                              **_sampling(body))
    head = {"id": "cmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": body.model,
            "system_fingerprint": None, "object": "text_completion"}

    def record() -> None:
        _record_completion(recording, "text_completion", head, text, usage, {"prompt": prompt})

    if body.stream:
        def choice(delta: dict, finish: str | None) -> dict:
            return {"index": 0, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}

        chunks = _stream_chunks(head, _collected(_locked(pieces), text), usage,
                                bool(body.stream_options and body.stream_options.include_usage), choice,
                                first={"content": prompt} if body.echo else None)
        return StreamingResponse(_then(_sse(chunks), record), media_type="text/event-stream",
                                 headers={VERSION_HEADER: routed.version_label})
    text.append(await run_in_threadpool(lambda: "".join(_locked(pieces))))
    record()
    reply.headers[VERSION_HEADER] = routed.version_label
    return {**head, "usage": _usage(usage),
            "choices": [{"index": 0, "text": (prompt + text[0]) if body.echo else text[0],
                         "finish_reason": usage["finish_reason"], "logprobs": None}]}


def _stored(record: PredictionRecord) -> dict:
    """A stored chat completion in OpenAI's shape, from its record."""
    return {"id": record.id, "object": "chat.completion", "created": record.details["created"],
            "model": record.model, "system_fingerprint": None, "metadata": record.metadata,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": record.output, "refusal": None},
                         "finish_reason": record.details["finish_reason"], "logprobs": None}],
            "usage": {"prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
                      "total_tokens": record.prompt_tokens + record.completion_tokens}}


Order = Annotated[Literal["asc", "desc"], Query(description="by creation time")]


@router.get("/chat/completions", response_model=StoredChatCompletionList, responses=errors(404),
            summary="List stored chat completions (those made with store: true)")
def list_stored_completions(principal: Reader, services: ServicesDep,
                            metadata: Annotated[dict[str, str], Depends(metadata_query)],
                            model: str | None = None, after: str | None = None, limit: Limit = 20,
                            order: Order = "asc") -> dict:
    """The tenant's stored chat completions, oldest first (``order=desc``: newest first), for ``model`` (the
    id the requests sent) and whose metadata holds every ``metadata[key]=value`` given."""
    records, more = written_records(services).list_stored(principal.tenant, "chat.completion", model=model,
                                                   metadata=metadata, after=after, limit=limit,
                                                   newest_first=order == "desc")
    data = [_stored(r) for r in records]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


@router.get("/chat/completions/{completion_id}", response_model=StoredChatCompletion, responses=errors(404),
            summary="A stored chat completion")
def get_stored_completion(completion_id: str, principal: Reader, services: ServicesDep) -> dict:
    return _stored(written_records(services).get(principal.tenant, completion_id, "chat.completion", stored=True))


@router.post("/chat/completions/{completion_id}", response_model=StoredChatCompletion, responses=errors(404),
             summary="Replace a stored chat completion's metadata")
def update_stored_completion(completion_id: str, body: MetadataUpdate, principal: Trainer,
                             services: ServicesDep) -> dict:
    return _stored(written_records(services).update_metadata(principal.tenant, completion_id, "chat.completion",
                                                      body.metadata))


@router.delete("/chat/completions/{completion_id}", response_model=Deleted, responses=errors(404),
               summary="Delete a stored chat completion")
def delete_stored_completion(completion_id: str, principal: Trainer, services: ServicesDep) -> dict:
    written_records(services).delete(principal.tenant, completion_id, "chat.completion")
    return {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}


@router.get("/chat/completions/{completion_id}/messages", response_model=StoredMessageList, responses=errors(404),
            summary="The messages a stored chat completion answered")
def list_stored_messages(completion_id: str, principal: Reader, services: ServicesDep,
                         after: str | None = None, limit: Limit = 20, order: Order = "asc") -> dict:
    record = written_records(services).get(principal.tenant, completion_id, "chat.completion", stored=True)
    messages = [{"id": f"{record.id}-{i}", **m} for i, m in enumerate(record.input["messages"])]
    if order == "desc":
        messages.reverse()
    if after is not None:
        ids = [m["id"] for m in messages]
        if after not in ids:
            raise NotFoundError(f"message {after!r} not found in {record.id}")
        messages = messages[ids.index(after) + 1:]
    data = messages[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(messages) > limit}
