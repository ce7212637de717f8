"""The rerank routes: ``POST /v1/rerank`` (the OpenAI face's errors) and ``POST
/api/rerank`` (the Ollama face's), one handler for both.

Routing only: the body and the answer are ``api/rerank.py``'s (llama-server's, Jina's
and Cohere's shape), the work ``Runtime.rerank``.  Which face's shape an error takes
follows the path (``server/app.py``): /v1 is OpenAI's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from locallama.api.rerank import RerankBody, rerank_json
from locallama.server.json_body import JSONBodyRoute
from locallama.server.runtime_calls import call, runtime_of

router = APIRouter(route_class=JSONBodyRoute)  # bodies are JSON whatever the Content-Type


@router.post("/v1/rerank")
async def rerank_openai(body: RerankBody, request: Request) -> dict[str, Any]:
    return await _rerank(body, request, "OpenAI")


@router.post("/api/rerank")
async def rerank_ollama(body: RerankBody, request: Request) -> dict[str, Any]:
    return await _rerank(body, request, "Ollama")


async def _rerank(body: RerankBody, request: Request, face: str) -> dict[str, Any]:
    runtime = runtime_of(request)
    result = await call(runtime.rerank, body.model, body.query, body.texts(), body.top_n,
                        body.options, body.keep_alive, face=face)
    return rerank_json(body.model, result, body.return_documents)
