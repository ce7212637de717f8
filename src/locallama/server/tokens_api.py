"""The tokenizer routes: ``GET /tokenizer_info``, ``POST /tokenize``, ``POST /detokenize``.

Routing only: the bodies and answers are ``api/tokens.py``'s (vLLM's shapes and
llama-server's, one route for both), the work the Runtime's ``tokenize``,
``token_pieces``, ``detokenize`` and ``tokenizer_info``.  lm-evaluation-harness's
``local-completions`` finds a server's tokenizer through these (its
``tokenizer_backend=remote``), so it scores without a Hugging Face tokenizer.
A body may leave ``model`` out when one model is loaded or stored (``default_model``).
Errors are in the Ollama face's shape (these paths are not under /v1).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from locallama.api.tokens import (
    DetokenizeBody,
    TokenizeBody,
    default_model,
    detokenize_answer,
    tokenize_answer,
    tokenizer_info_json,
)
from locallama.errors import InvalidRequest
from locallama.runtime.base import Runtime
from locallama.runtime.types import ChatRequest, Message
from locallama.server.json_body import JSONBodyRoute
from locallama.server.model_path import path_model
from locallama.server.runtime_calls import call, collect, open_stream, runtime_of

FACE = "tokenizer"
router = APIRouter(route_class=JSONBodyRoute)  # bodies are JSON whatever the Content-Type


async def model_for(runtime: Runtime, asked: str | None, request: Request) -> str:
    """The model a body names, else the one a ``/model/{name}/`` base URL names
    (``server/model_path.py``), else the one loaded or stored (``default_model``)."""
    if asked:
        return asked
    if named := path_model(request.state):
        return named
    loaded = [m.name for m in await call(runtime.ps, face=FACE)]
    stored = [e.name.display for e in await call(runtime.list, face=FACE) if not e.broken]
    return default_model(None, loaded, stored)


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request, model: str | None = None) -> dict[str, Any]:
    runtime = runtime_of(request)
    name = await model_for(runtime, model, request)
    return tokenizer_info_json(await call(runtime.tokenizer_info, name, face=FACE))


@router.post("/tokenize")
async def tokenize(body: TokenizeBody, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    name = await model_for(runtime, body.model, request)
    if body.messages is not None and not body.llama_server and body.prompt is None:
        tokens = await _chat_tokens(runtime, name, body.messages)
    else:
        tokens = await call(runtime.tokenize, name, body.text(), body.with_bos(), face=FACE)
    pieces = None
    if body.with_pieces or body.return_token_strs:
        pieces = await call(runtime.token_pieces, name, tokens, face=FACE)
    info = await call(runtime.tokenizer_info, name, face=FACE)
    return tokenize_answer(body, tokens, pieces, info.context_length)


@router.post("/detokenize")
async def detokenize(body: DetokenizeBody, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    name = await model_for(runtime, body.model, request)
    return detokenize_answer(await call(runtime.detokenize, name, body.tokens, face=FACE))


async def _chat_tokens(runtime: Runtime, model: str, messages: list[dict[str, Any]]) -> list[int]:
    """A chat's prompt tokens, as the model's template renders it with a generation
    prompt: a chat with ``num_predict`` 0, whose final chunk's ``context`` is the
    prompt."""
    conversation = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if not isinstance(m.get("role"), str) or not isinstance(content, str | None):
            raise InvalidRequest("each message needs a role and text content",
                                 f"messages[{i}]")
        conversation.append(Message(m["role"], content or ""))
    request = ChatRequest(model=model, messages=conversation, options={"num_predict": 0})
    chunks = await collect(await open_stream(lambda: runtime.chat(request), face=FACE),
                           face=FACE)
    return list(chunks[-1].context or [])
