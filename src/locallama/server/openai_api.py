"""The OpenAI face: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models.

Routing only (DESIGN.md rule 1), as Ollama's ``openai/openai.go`` is a translation
over its native types: each handler reads the body (``api/openai.py`` turns it into
the Runtime's requests), calls the Runtime in ``app.state.runtime`` through
``server/runtime_calls.py``, hands the chunks to ``api/openai_objects.py`` and sends
the object as JSON or the events as server-sent events, so the official SDKs work
unmodified.  Notes on the choices made here:

* ``n`` > 1 runs n requests one after the other; a given seed becomes seed + i
  for choice i, so the choices differ and stay reproducible.
* ``tool_choice``: "none" drops the tools; "auto" and "required" both show them
  to the model ("required" does not force a call); a named function shows only
  that tool.
* Completions are raw (no template).  A prompt of token ids goes to the model as
  those ids.  With ``echo`` the prompt is scored; its first token has no logprob
  (null).  ``logprobs: k`` gives k alternatives per token, plus the chosen one.
* Embeddings: ``dimensions`` must equal the model's size (the Runtime checks; no
  truncation here: that would be feature logic, and a wrong answer for most models).
* An error after a stream started is a last ``data:`` event with the error object,
  and no ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from locallama.api.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    Run,
    chat_requests,
    completion_requests,
    embedding_inputs,
    include_usage,
)
from locallama.api.openai_objects import (
    ChatStream,
    CompletionStream,
    Head,
    chat_completion,
    embedding_list,
    model_list,
    model_object,
    text_completion,
)
from locallama.errors import ModelNotFound
from locallama.runtime.base import Runtime
from locallama.runtime.types import ChatRequest, Chunk
from locallama.server.http_errors import openai_error_body
from locallama.server.image_urls import fetch_images
from locallama.server.json_body import JSONBodyRoute
from locallama.server.runtime_calls import as_error, call, collect, open_stream, runtime_of
from locallama.server.streaming import ClosingStreamingResponse
from locallama.store import parse_name

FACE = "OpenAI"
router = APIRouter(prefix="/v1", route_class=JSONBodyRoute)  # the API key: server/guard.py


def _sse(events: AsyncIterator[dict[str, Any]]) -> ClosingStreamingResponse:
    """Server-sent events: ``data: {json}`` per event, then ``data: [DONE]``."""

    async def body() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event, allow_nan=False)}\n\n"
        except Exception as exc:  # after the first byte the status is sent: report in-band
            yield f"data: {json.dumps(openai_error_body(as_error(exc, FACE)))}\n\n"
            return
        yield "data: [DONE]\n\n"

    return ClosingStreamingResponse(body(), media_type="text/event-stream",
                                    headers={"Cache-Control": "no-cache",
                                             "X-Accel-Buffering": "no"})


# -- chat -----------------------------------------------------------------------------


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    runtime = runtime_of(request)
    runs = chat_requests(body)
    await fetch_images(runs, runtime)  # image_url parts given by http(s) URL
    head = Head.new("chatcmpl-", body.model)
    if body.stream:
        first = await open_stream(lambda: runtime.chat(runs[0]), face=FACE)
        stream = ChatStream(head, bool(body.logprobs), include_usage(body))
        return _sse(_chat_events(runtime, runs, first, stream))
    answers = []
    for run in runs:
        chunks = await open_stream(lambda run=run: runtime.chat(run), face=FACE)
        answers.append(await collect(chunks, face=FACE))
    return chat_completion(head, answers, bool(body.logprobs))


async def _chat_events(runtime: Runtime, runs: list[ChatRequest], first: AsyncIterator[Chunk],
                       stream: ChatStream) -> AsyncIterator[dict[str, Any]]:
    """The events of every choice in turn: choice 0 from ``first`` (already opened)."""
    for index, run in enumerate(runs):
        chunks = first if index == 0 else await open_stream(lambda run=run: runtime.chat(run),
                                                            face=FACE)
        yield stream.start(index)
        async for chunk in chunks:
            if (event := stream.event(index, chunk)) is not None:
                yield event
    if (usage := stream.end()) is not None:
        yield usage


# -- completions --------------------------------------------------------------------------


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    runtime = runtime_of(request)
    runs = completion_requests(body)
    head = Head.new("cmpl-", body.model)
    if body.stream:
        first = await open_stream(lambda: runtime.generate(runs[0].request), face=FACE)
        stream = CompletionStream(head, include_usage(body))
        return _sse(_completion_events(runtime, runs, first, stream))
    answers = []
    for run in runs:
        chunks = await open_stream(lambda run=run: runtime.generate(run.request), face=FACE)
        answers.append((run, await collect(chunks, face=FACE)))
    return text_completion(head, answers)


async def _completion_events(runtime: Runtime, runs: list[Run], first: AsyncIterator[Chunk],
                             stream: CompletionStream) -> AsyncIterator[dict[str, Any]]:
    """The events of every choice in turn: choice 0 from ``first`` (already opened)."""
    for index, run in enumerate(runs):
        chunks = first if index == 0 else await open_stream(
            lambda run=run: runtime.generate(run.request), face=FACE)
        stream.start(index, run)
        async for chunk in chunks:
            if (event := stream.event(chunk)) is not None:
                yield event
    if (usage := stream.end()) is not None:
        yield usage


# -- embeddings and models ---------------------------------------------------------------


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> Any:
    runtime = runtime_of(request)
    texts = []
    for item in embedding_inputs(body):  # token ids are embedded as the text they spell
        texts.append(item if isinstance(item, str)
                     else await call(runtime.detokenize, body.model, item, face=FACE))
    result = await call(runtime.embed, body.model, texts, True, body.options, None,
                        body.dimensions, face=FACE)
    return embedding_list(body.model, result.embeddings, result.prompt_eval_count,
                          body.encoding_format)


@router.get("/models")
async def list_models(request: Request) -> Any:
    return model_list(await call(runtime_of(request).list, face=FACE))


@router.get("/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> Any:
    name = parse_name(model)
    for entry in await call(runtime_of(request).list, face=FACE):
        if entry.name.key() == name.key():
            return model_object(entry)
    raise ModelNotFound(name.display)
