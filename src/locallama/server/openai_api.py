"""The OpenAI face: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models.

A thin translator (DESIGN.md rule 1): each handler turns the body into a
GenerateRequest or ChatRequest, calls the Runtime in ``app.state.runtime`` and
formats its chunks in the shapes the OpenAI API reference documents, so the
official SDKs work unmodified.  Notes on the choices made here:

* ``n`` > 1 runs n requests one after the other; a given seed becomes seed + i
  for choice i, so the choices differ and stay reproducible.
* ``tool_choice``: "none" drops the tools; "auto" and "required" both show them
  to the model ("required" does not force a call); a named function shows only
  that tool.
* Completions are raw (no template).  A prompt of token ids goes to the model as
  those ids.  With ``echo`` the prompt is scored; its first token has no logprob
  (null).  ``logprobs: k`` gives k alternatives per token, plus the chosen one.
* Embeddings: ``dimensions`` must equal the model's size (no truncation here:
  that would be feature logic, and a wrong answer for most models).
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from locallama.errors import (
    LocallamaError,
    ModelNotFound,
    PullError,
    capped,
)
from locallama.runtime.base import Runtime
from locallama.runtime.types import (
    ChatRequest,
    Chunk,
    GenerateRequest,
    ModelEntry,
    TokenLogprob,
    ToolCall,
)
from locallama.api.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    Run,
    chat_requests,
    completion_requests,
    invalid,
    token_lists,
)
from locallama.server.status import error_headers, http_status
from locallama.server.streaming import (
    ClosingStreamingResponse,
    as_error,
    call,
    open_stream,
)
from locallama.store import parse_name

FINGERPRINT = "fp_locallama"


# -- errors -----------------------------------------------------------------------


def _status(exc: LocallamaError) -> tuple[int, str]:
    """The status (a failed pull is a bad gateway here) and OpenAI's error ``type``:
    ``server_error`` for a fault of the server, else ``invalid_request_error``."""
    status = http_status(exc, ((PullError, 502),))
    return status, "server_error" if status >= 500 and status != 501 else \
        "invalid_request_error"


def _error_body(exc: LocallamaError) -> dict[str, Any]:
    """The error object of an answer or stream; the message capped (``errors.capped``)."""
    param = getattr(exc, "param", None) or ("model" if isinstance(exc, ModelNotFound) else None)
    return {"error": {"message": capped(exc.message), "type": _status(exc)[1], "param": param,
                      "code": exc.code}}


def error_response(exc: LocallamaError) -> JSONResponse:
    """An error as OpenAI sends it; the status picks the SDK's exception class."""
    return JSONResponse(_error_body(exc), status_code=_status(exc)[0],
                        headers=error_headers(exc))


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """A body that does not parse or fit the schema: 400 (never 422), naming the field."""
    # The most telling error: the deepest, and a broken constraint before a type mismatch
    # (a union such as str | list[int] reports one mismatch per member).
    errors = sorted(exc.errors(), key=lambda e: (len(e.get("loc", ())),
                                                 not e.get("type", "").endswith("_type")))
    first = errors[-1] if errors else {}
    param, code = None, "invalid_value"
    if first.get("type") == "json_invalid":
        message, code = "the request body is not valid JSON", "invalid_json"
        if first.get("ctx", {}).get("error"):
            message += f" ({first['ctx']['error']})"
    elif param := _param(first.get("loc", ())):
        message = f"{param}: {first.get('msg', 'invalid value')}"
    else:
        message = f"the request body must be a JSON object ({first.get('msg', 'invalid')})"
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=400)


_UNION_TAGS = {"str", "int", "float", "bool", "none", "dict", "list"}


def _param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages[0].role', without pydantic's union
    tags ('str', 'list[int]', 'NamedToolChoice')."""
    text = ""
    for part in list(loc)[1:] if loc and loc[0] == "body" else list(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        elif not ("[" in part or part in _UNION_TAGS or part[:1].isupper()):
            text += f".{part}" if text else part
    return text or None


# -- plumbing -----------------------------------------------------------------------


T = TypeVar("T")

router = APIRouter(prefix="/v1")  # the API key: server/guard.py


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _call(fn: Callable[..., T], *args: Any) -> Awaitable[T]:
    return call(fn, *args, face="OpenAI")


def _open(start: Callable[[], Iterator[T]]) -> Awaitable[AsyncIterator[T]]:
    return open_stream(start, face="OpenAI")


async def _collect(start: Callable[[], Iterator[Chunk]]) -> list[Chunk]:
    chunks: list[Chunk] = await _call(lambda: list(start()))
    if not chunks or not chunks[-1].done:
        raise LocallamaError("the runtime ended the answer without a final chunk")
    return chunks


def _sse(events: AsyncIterator[dict[str, Any]]) -> ClosingStreamingResponse:
    async def body() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event, allow_nan=False)}\n\n"
        except Exception as exc:  # after the first byte the status is sent: report in-band
            yield f"data: {json.dumps(_error_body(as_error(exc, 'OpenAI')))}\n\n"
            return
        yield "data: [DONE]\n\n"

    return ClosingStreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _lp(value: float) -> float | None:
    """A logprob fit for JSON: nan (no value) is null, -inf is OpenAI's -9999."""
    if math.isnan(value):
        return None
    return max(value, -9999.0)


def _finish(chunk: Chunk) -> str:
    return "length" if chunk.done_reason == "length" else "stop"


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


# -- chat -----------------------------------------------------------------------------


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    runtime = _runtime(request)
    runs = chat_requests(body)
    head = {"id": _id("chatcmpl-"), "created": int(time.time()), "model": body.model,
            "system_fingerprint": FINGERPRINT}
    if body.stream:
        first = await _open(lambda: runtime.chat(runs[0]))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_chat_events(runtime, runs, first, head, include_usage))
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index, run in enumerate(runs):
        chunks = await _collect(lambda run=run: runtime.chat(run))
        done = chunks[-1]
        calls = _tool_calls(done.tool_calls)
        text = "".join(c.text for c in chunks)
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls
                                   else None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        logprobs = None
        if run.logprobs:
            logprobs = {"content": [_token(t) for c in chunks for t in c.logprobs or ()],
                        "refusal": None}
        choices.append({"index": index, "message": message, "logprobs": logprobs,
                        "finish_reason": "tool_calls" if calls else _finish(done)})
        prompt_tokens = max(prompt_tokens, done.prompt_tokens)
        completion_tokens += done.eval_count
    return {**head, "object": "chat.completion", "choices": choices,
            "usage": _usage(prompt_tokens, completion_tokens)}


async def _chat_events(runtime: Runtime, runs: list[ChatRequest], first: AsyncIterator[Chunk],
                       head: dict[str, Any], include_usage: bool
                       ) -> AsyncIterator[dict[str, Any]]:
    head = {**head, "object": "chat.completion.chunk"}
    if include_usage:
        head["usage"] = None

    def event(index: int, delta: dict[str, Any], chunk: Chunk | None = None,
              finish: str | None = None) -> dict[str, Any]:
        logprobs = None
        if chunk is not None and chunk.logprobs and runs[index].logprobs:
            logprobs = {"content": [_token(t) for t in chunk.logprobs], "refusal": None}
        return {**head, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                     "finish_reason": finish}]}

    prompt_tokens = completion_tokens = 0
    for index, run in enumerate(runs):
        chunks = first if index == 0 else await _open(lambda run=run: runtime.chat(run))
        yield event(index, {"role": "assistant", "content": ""})
        async for chunk in chunks:
            if not chunk.done:
                if chunk.text or chunk.logprobs:
                    yield event(index, {"content": chunk.text}, chunk)
                continue
            delta: dict[str, Any] = {"content": chunk.text} if chunk.text else {}
            calls = _tool_calls(chunk.tool_calls)
            if calls:
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
            yield event(index, delta, chunk, "tool_calls" if calls else _finish(chunk))
            prompt_tokens = max(prompt_tokens, chunk.prompt_tokens)
            completion_tokens += chunk.eval_count
    if include_usage:
        yield {**head, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)}


def _tool_calls(calls: list[ToolCall] | None) -> list[dict[str, Any]]:
    """The Runtime's calls -> OpenAI's: an id, and the arguments as a JSON string."""
    return [{"id": _id("call_"), "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in calls or ()]


def _token(t: TokenLogprob) -> dict[str, Any]:
    return {"token": t.token, "logprob": _lp(t.logprob), "bytes": t.bytes,
            "top_logprobs": [{"token": a.token, "logprob": _lp(a.logprob), "bytes": a.bytes}
                             for a in t.top]}


# -- completions --------------------------------------------------------------------


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    runtime = _runtime(request)
    runs = completion_requests(body)
    head = {"id": _id("cmpl-"), "object": "text_completion", "created": int(time.time()),
            "model": body.model, "system_fingerprint": FINGERPRINT}
    if body.stream:
        first = await _open(lambda: runtime.generate(runs[0][2]))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_completion_events(runtime, runs, first, head, include_usage))
    choices, prompt_tokens, completion_tokens = [], {}, 0
    for index, (p, prompt, run) in enumerate(runs):
        chunks = await _collect(lambda run=run: runtime.generate(run))
        text, tokens, offset = _echo(prompt, run, chunks[0])
        tokens += [t for c in chunks for t in c.logprobs or ()]
        logprobs = _text_logprobs(tokens, offset)[0] if run.logprobs else None
        choices.append({"text": text + "".join(c.text for c in chunks), "index": index,
                        "logprobs": logprobs, "finish_reason": _finish(chunks[-1])})
        prompt_tokens[p] = chunks[-1].prompt_tokens
        completion_tokens += chunks[-1].eval_count
    return {**head, "choices": choices,
            "usage": _usage(sum(prompt_tokens.values()), completion_tokens)}


async def _completion_events(runtime: Runtime, runs: list[Run],
                             first: AsyncIterator[Chunk], head: dict[str, Any],
                             include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    if include_usage:
        head = {**head, "usage": None}
    prompt_tokens: dict[int, int] = {}
    completion_tokens = 0
    for index, (p, prompt, run) in enumerate(runs):
        chunks = first if index == 0 else await _open(lambda run=run: runtime.generate(run))
        offset, started = 0, False
        async for chunk in chunks:
            text, tokens = "", []
            if not started:
                text, tokens, offset = _echo(prompt, run, chunk)
                started = True
            text += chunk.text
            tokens += chunk.logprobs or ()
            logprobs = None
            if run.logprobs and tokens:
                logprobs, offset = _text_logprobs(tokens, offset)
            if text or tokens or chunk.done:
                yield {**head, "choices": [{
                    "text": text, "index": index, "logprobs": logprobs,
                    "finish_reason": _finish(chunk) if chunk.done else None}]}
            if chunk.done:
                prompt_tokens[p] = chunk.prompt_tokens
                completion_tokens += chunk.eval_count
    if include_usage:
        yield {**head, "choices": [],
               "usage": _usage(sum(prompt_tokens.values()), completion_tokens)}


def _echo(prompt: str | list[int], run: GenerateRequest, first: Chunk
          ) -> tuple[str, list[TokenLogprob], int]:
    """What goes before the completion: with echo the prompt (text, scored tokens) and
    offsets from 0; without, nothing, and offsets from the end of the prompt."""
    scores = list(first.prompt_logprobs or ())
    text = prompt if isinstance(prompt, str) else "".join(t.token for t in scores)
    if run.echo:
        return text, scores, 0
    return "", [], len(text)


def _text_logprobs(tokens: list[TokenLogprob], offset: int) -> tuple[dict[str, Any], int]:
    """The completions shape: parallel lists, top_logprobs as {token: logprob} dicts
    holding the k alternatives and the chosen token (so up to k + 1 entries)."""
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                 "text_offset": []}
    for t in tokens:
        logprob = _lp(t.logprob)
        top = None
        if logprob is not None:
            top = {}
            for a in t.top:
                top.setdefault(a.token, _lp(a.logprob))
            top.setdefault(t.token, logprob)
        out["tokens"].append(t.token)
        out["token_logprobs"].append(logprob)
        out["top_logprobs"].append(top)
        out["text_offset"].append(offset)
        offset += len(t.token)
    return out, offset


# -- embeddings and models ---------------------------------------------------------------


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> Any:
    runtime = _runtime(request)
    items = token_lists(body.input)
    if not items:
        raise invalid("input must not be empty", "input")
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            texts.append(item)
        elif not item:
            raise invalid("a list of token ids must not be empty", f"input[{i}]")
        else:
            texts.append(await _call(runtime.detokenize, body.model, item))
    result = await _call(runtime.embed, body.model, texts, True, body.options)
    data = []
    for i, vector in enumerate(result.embeddings):
        if body.dimensions is not None and body.dimensions != len(vector):
            raise invalid(f"this model gives {len(vector)}-dimensional embeddings; other "
                          "dimensions are not supported", "dimensions")
        embedding: Any = vector
        if body.encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    count = result.prompt_eval_count
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": count, "total_tokens": count}}


@router.get("/models")
async def list_models(request: Request) -> Any:
    entries = await _call(_runtime(request).list)
    return {"object": "list", "data": [_model(e) for e in entries]}


@router.get("/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> Any:
    name = parse_name(model)
    for entry in await _call(_runtime(request).list):
        if entry.name.key() == name.key():
            return _model(entry)
    raise ModelNotFound(name.display)


def _model(entry: ModelEntry) -> dict[str, Any]:
    model = {"id": entry.name.display, "object": "model",
             "created": int(entry.modified.timestamp()), "owned_by": entry.name.namespace}
    if entry.broken:
        model["broken"] = entry.broken  # ours: why it cannot be used
    return model
