"""The OpenAI Responses API face: ``POST /v1/responses``, ``GET`` and ``DELETE
/v1/responses/{id}``.

Spec: https://platform.openai.com/docs/api-reference/responses.  Routing only, as the
other faces: the body becomes a ChatRequest in ``api/responses.py``, the Runtime's
chunks become the ``response`` object or its events in ``api/responses_stream.py``,
and responses are kept in ``store/responses.py`` (``app.state.responses``).

* ``previous_response_id``: the stored response's input items and output items come
  before this request's input; an id that is not stored (``store: false``, deleted,
  past LOCALLAMA_RESPONSES_MAX) is a 404 in OpenAI's error shape.
* ``store`` (default true): a response that completed (or stopped at
  ``max_output_tokens``) is stored with the whole conversation it answered; a failed or
  abandoned stream is not.
* Streams are server-sent events, ``event: TYPE`` and ``data: {json}`` each, with no
  ``[DONE]``; an error before the first event is an HTTP status, after it an ``error``
  event and ``response.failed``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request

from locallama.api.responses import (
    ResponseCreate,
    chat_request,
    input_items,
    response_fields,
)
from locallama.api.responses_stream import ResponseStream, deleted
from locallama.errors import ResponseNotFound
from locallama.runtime.types import Chunk
from locallama.server.http_errors import http_status
from locallama.server.image_urls import fetch_images
from locallama.server.json_body import JSONBodyRoute
from locallama.server.runtime_calls import as_error, call, collect, open_stream, runtime_of
from locallama.server.streaming import ClosingStreamingResponse
from locallama.store.responses import ResponseStore

FACE = "OpenAI"
router = APIRouter(prefix="/v1", route_class=JSONBodyRoute)  # the API key: server/guard.py


def store_of(request: Request) -> ResponseStore:
    """The app's response store (``create_app``)."""
    return request.app.state.responses


@router.post("/responses")
async def create_response(body: ResponseCreate, request: Request) -> Any:
    runtime, store = runtime_of(request), store_of(request)
    history: list[dict[str, Any]] = []
    if body.previous_response_id:
        previous = await call(store.get, body.previous_response_id, face=FACE)
        if previous is None:
            raise ResponseNotFound(body.previous_response_id, "previous_response_id")
        history = previous.items + previous.response.get("output", [])
    items = history + input_items(body)
    chat = chat_request(body, items)
    await fetch_images([chat], runtime)  # input_image given by http(s) URL
    stream = ResponseStream(response_fields(body))
    chunks = await open_stream(lambda: runtime.chat(chat), face=FACE)
    if body.stream:
        return _sse(_events(stream, chunks, store if body.store is not False else None,
                            items))
    for chunk in await collect(chunks, face=FACE):
        stream.feed(chunk)
    response = stream.response()
    if body.store is not False:
        await call(store.put, stream.id, items, response, face=FACE)
    return response


@router.get("/responses/{response_id}")
async def retrieve_response(response_id: str, request: Request) -> Any:
    stored = await call(store_of(request).get, response_id, face=FACE)
    if stored is None:
        raise ResponseNotFound(response_id, "response_id")
    return stored.response


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> Any:
    if not await call(store_of(request).delete, response_id, face=FACE):
        raise ResponseNotFound(response_id, "response_id")
    return deleted(response_id)


async def _events(stream: ResponseStream, chunks: AsyncIterator[Chunk],
                  store: ResponseStore | None, items: list[dict[str, Any]]
                  ) -> AsyncIterator[dict[str, Any]]:
    """Every event of the answer; the response stored (``store`` not None) once it is
    complete, before its last event goes out."""
    for event in stream.start():
        yield event
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                events = stream.feed(chunk)
                if chunk.done and store is not None:
                    await call(store.put, stream.id, items, stream.response(), face=FACE)
                for event in events:
                    yield event
    except Exception as exc:  # after the first byte the status is sent: report in-band
        error = as_error(exc, FACE)
        for event in stream.fail(error, http_status(error, openai=True)):
            yield event
        return
    if stream.final is None:
        error = as_error(RuntimeError("the runtime ended the answer without a final chunk"),
                         FACE)
        for event in stream.fail(error, 500):
            yield event


def _sse(events: AsyncIterator[dict[str, Any]]) -> ClosingStreamingResponse:
    """Server-sent events as OpenAI sends them: ``event: TYPE`` and ``data: {json}``."""

    async def body() -> AsyncIterator[str]:
        async with aclosing(events):
            async for event in events:
                yield f"event: {event['type']}\ndata: {json.dumps(event, allow_nan=False)}\n\n"

    return ClosingStreamingResponse(body(), media_type="text/event-stream",
                                    headers={"Cache-Control": "no-cache",
                                             "X-Accel-Buffering": "no"})
