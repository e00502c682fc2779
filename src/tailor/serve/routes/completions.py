"""``/v1/chat/completions`` and ``/v1/completions`` in OpenAI's shapes, streamed as server-sent events when
``stream`` is true, exactly as the ``openai`` client reads them (``data: {chunk}`` lines, then ``data: [DONE]``).

Generation holds one lock per process: on a CPU, concurrent decodes only slow each other down.

A chat model whose serving engine is still being built answers 503 with ``Retry-After`` and how long the
build has run (:meth:`tailor.serve.models.ModelCache.chat`), before any event of a stream is sent.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Callable, Iterator

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from tailor.serve.deps import Reader, ServicesDep
from tailor.serve.models import resolve_model
from tailor.serve.routes.common import errors
from tailor.serve.schemas import ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest

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
async def chat_completions(body: ChatCompletionRequest, principal: Reader, services: ServicesDep):
    named = resolve_model(services.registry, principal.tenant, body.model)
    chat = await run_in_threadpool(services.models.chat, named, wait=False)
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_CHAT_MAX_TOKENS
    usage: dict = {}
    pieces = chat.stream(_messages(body), max_tokens=max_tokens, usage=usage, **_sampling(body))
    head = {"id": "chatcmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": body.model,
            "system_fingerprint": None}
    if body.stream:
        def choice(delta: dict, finish: str | None) -> dict:
            return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

        chunks = _stream_chunks({**head, "object": "chat.completion.chunk"}, _locked(pieces), usage,
                                bool(body.stream_options and body.stream_options.include_usage), choice,
                                first={"role": "assistant", "content": ""})
        return StreamingResponse(_sse(chunks), media_type="text/event-stream")
    text = await run_in_threadpool(lambda: "".join(_locked(pieces)))
    return {**head, "object": "chat.completion", "usage": _usage(usage),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "finish_reason": usage["finish_reason"], "logprobs": None}]}


@router.post("/completions", response_model=Completion, responses={**errors(404, 503), **_STREAM_RESPONSE},
             summary="Continue a plain-text prompt (no chat template; stream: true for server-sent events)")
async def completions(body: CompletionRequest, principal: Reader, services: ServicesDep):
    named = resolve_model(services.registry, principal.tenant, body.model)
    model = await run_in_threadpool(services.models.chat, named, wait=False)
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    usage: dict = {}
    pieces = model.stream_ids(model.text_prompt_ids(prompt), max_tokens=body.max_tokens, usage=usage,
                              **_sampling(body))
    head = {"id": "cmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": body.model,
            "system_fingerprint": None, "object": "text_completion"}
    if body.stream:
        def choice(delta: dict, finish: str | None) -> dict:
            return {"index": 0, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}

        chunks = _stream_chunks(head, _locked(pieces), usage,
                                bool(body.stream_options and body.stream_options.include_usage), choice,
                                first={"content": prompt} if body.echo else None)
        return StreamingResponse(_sse(chunks), media_type="text/event-stream")
    text = await run_in_threadpool(lambda: "".join(_locked(pieces)))
    return {**head, "usage": _usage(usage),
            "choices": [{"index": 0, "text": (prompt + text) if body.echo else text,
                         "finish_reason": usage["finish_reason"], "logprobs": None}]}
