"""llama-server's ``POST /infill``: fill-in-the-middle for editor plugins (llama.vim,
llama.vscode).

Routing only: ``api/infill.py`` turns the body into a GenerateRequest (prefix, suffix,
extra files, prompt) and the chunks into /completion's answer or its server-sent
events; the prompt is laid out below the faces (``runtime/prompt.py`` over
``engine/fim.py``), the same layout ``suffix`` gets on /api/generate and
/v1/completions.  A model without FIM tokens is a 400 naming it.  ``model`` may be
left out when one model is loaded or stored.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from locallama.api.infill import InfillBody, completion, final_fields, infill_request, stream_event
from locallama.runtime.types import Chunk
from locallama.server.http_errors import ollama_error_body
from locallama.server.json_body import JSONBodyRoute
from locallama.server.runtime_calls import as_error, collect, open_stream, runtime_of
from locallama.server.streaming import ClosingStreamingResponse
from locallama.server.tokens_api import model_for

FACE = "infill"
router = APIRouter(route_class=JSONBodyRoute)  # bodies are JSON whatever the Content-Type


@router.post("/infill")
async def infill(body: InfillBody, request: Request) -> Any:
    runtime = runtime_of(request)
    model = await model_for(runtime, body.model, request)
    generate = infill_request(body, model)
    chunks = await open_stream(lambda: runtime.generate(generate), face=FACE)
    if not body.stream:
        return completion(model, await collect(chunks, face=FACE))
    return ClosingStreamingResponse(_events(model, chunks), media_type="text/event-stream",
                                    headers={"Cache-Control": "no-cache",
                                             "X-Accel-Buffering": "no"})


async def _events(model: str, chunks: AsyncIterator[Chunk]) -> AsyncIterator[str]:
    """``data: {json}`` per piece, the last with ``stop: true`` and the counts."""
    content = []
    try:
        async for chunk in chunks:
            if chunk.done:
                last = {"content": chunk.text, "tokens": [],
                        **final_fields(model, chunk, "".join(content) + chunk.text)}
                yield f"data: {json.dumps(last)}\n\n"
            elif chunk.text:
                content.append(chunk.text)
                yield f"data: {json.dumps(stream_event(chunk))}\n\n"
    except Exception as exc:  # after the first byte the status is sent: report in-band
        yield f"data: {json.dumps(ollama_error_body(as_error(exc, FACE)))}\n\n"
