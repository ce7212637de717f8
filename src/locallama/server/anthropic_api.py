"""The Anthropic face: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Routing only (DESIGN.md rule 1): each handler reads the body (``api/anthropic.py``
turns it into the Runtime's ChatRequest), calls the Runtime in ``app.state.runtime``
through ``server/runtime_calls.py``, and sends ``api/anthropic_answers.py``'s message
object as JSON or its events as server-sent events (``event: <name>`` and ``data:
{json}``), so the official ``anthropic`` SDK works unmodified.  Specs:
https://docs.anthropic.com/en/api/messages ,
https://docs.anthropic.com/en/api/messages-streaming ,
https://docs.anthropic.com/en/api/messages-count-tokens .

* Errors before a stream starts are answered with Anthropic's statuses and error
  object (``server/http_errors.py``, ``status.ANTHROPIC``); an error after it
  started is an ``event: error`` with that object, and the stream ends.
* The key (``x-api-key`` or ``Authorization: Bearer``) is the guard's; the
  ``anthropic-version`` and ``anthropic-beta`` headers are read by nobody.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from locallama.api.anthropic import CountTokensRequest, MessagesRequest, chat_request
from locallama.api.anthropic_answers import MessageStream, error_body, message, new_id
from locallama.errors import LocallamaError
from locallama.runtime.types import Chunk
from locallama.server.http_errors import http_status
from locallama.server.image_urls import fetch_images
from locallama.server.json_body import JSONBodyRoute
from locallama.server.runtime_calls import as_error, call, collect, open_stream, runtime_of
from locallama.server.streaming import ClosingStreamingResponse

FACE = "Anthropic"
router = APIRouter(prefix="/v1/messages", route_class=JSONBodyRoute)  # the key: guard.py


@router.post("")
async def messages(body: MessagesRequest, request: Request) -> Any:
    """A message (``stream`` false) or its events (``stream`` true)."""
    runtime = runtime_of(request)
    chat = chat_request(body)
    await fetch_images([chat], runtime)  # image blocks with an http(s) url source
    id = new_id("msg_")
    chunks = await open_stream(lambda: runtime.chat(chat), face=FACE)
    if body.stream:
        return _sse(_events(MessageStream(id, body.model, body.stop_sequences), chunks))
    return message(id, body.model, await collect(chunks, face=FACE), body.stop_sequences)


@router.post("/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> Any:
    """``{"input_tokens": n}``: the tokens of the prompt the message would evaluate."""
    runtime = runtime_of(request)
    chat = chat_request(body)
    await fetch_images([chat], runtime)
    count = await call(runtime.count_chat_tokens, chat, face=FACE)
    return {"input_tokens": count}


async def _events(stream: MessageStream, chunks: AsyncIterator[Chunk]
                  ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    for event in stream.start():
        yield event
    done = False
    async for chunk in chunks:
        done = chunk.done
        for event in stream.event(chunk):
            yield event
    if not done:
        raise LocallamaError("the runtime ended the answer without a final chunk")


def _sse(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> ClosingStreamingResponse:
    """Server-sent events: ``event: <name>`` and ``data: {json}`` per event."""

    async def body() -> AsyncIterator[str]:
        try:
            async for name, data in events:
                yield f"event: {name}\ndata: {json.dumps(data, allow_nan=False)}\n\n"
        except Exception as exc:  # after the first byte the status is sent: report in-band
            error = as_error(exc, FACE)
            data = error_body(error.message, http_status(error, anthropic=True))
            yield f"event: error\ndata: {json.dumps(data)}\n\n"

    return ClosingStreamingResponse(body(), media_type="text/event-stream",
                                    headers={"Cache-Control": "no-cache",
                                             "X-Accel-Buffering": "no"})
