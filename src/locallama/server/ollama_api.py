"""The Ollama face: /api/* with Ollama's field names, defaults, status codes and NDJSON.

A thin translator (DESIGN.md rule 1): each handler turns the body into a Runtime
call and formats the chunks or records it gets back (``api/ollama*.py`` do the
translating, for the client too), so Ollama's clients work unmodified.  Notes on the choices made:

* Every body is read as JSON whatever its Content-Type: ``curl -d`` sends a form
  type, and Ollama's documented examples rely on that.
* A stream starts only after its first chunk (or progress event) exists, so an
  error before any output is an HTTP status; a later one ends the stream with an
  ``{"error": ...}`` line, as Ollama does.  Error bodies also carry ``code`` (and
  ``param`` where one field is to blame) for locallama's own client
  (``server/http_errors.py``, shared with the OpenAI face, as is the way to the
  Runtime, ``server/runtime_calls.py``).
* An empty prompt (or no messages) loads the model; with keep_alive 0 it unloads.
* ``think`` is refused: no model here thinks.  ``prompt_logprobs`` (with ``echo``),
  ``prompt_tokens`` and ``warnings`` are locallama additions, as are /api/tokenize and
  /api/detokenize.
* Create and pull run in their own thread and report progress as status lines; a
  client that leaves a stream stops them at their next report (stream false: not).
* Files for create are reached only by the digests of uploaded blobs, never by a
  path on the server's disk.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from locallama import __version__
from locallama.api.ollama import (
    UPLOADED_FOLDER,
    chat_request,
    create_modelfile,
    embed_inputs,
    generate_request,
    uploaded_folder,
)
from locallama.api.ollama_answers import (
    embed_json,
    progress_json,
    running_json,
    show_json,
    tag_json,
)
from locallama.api.ollama_bodies import (
    ChatBody,
    CopyBody,
    CreateBody,
    DetokenizeBody,
    EmbedBody,
    EmbeddingsBody,
    GenerateBody,
    ModelBody,
    PullBody,
    ShowBody,
    TokenizeBody,
)
from locallama.api.ollama_stream import ChatLines, generate_line, loaded_line
from locallama.errors import NotSupported
from locallama.options import parse_keep_alive
from locallama.progress import Progress, silent
from locallama.runtime.base import Runtime
from locallama.runtime.types import Chunk, KeepAlive
from locallama.server.http_errors import ollama_error_body
from locallama.server.json_body import JSONBodyRoute
from locallama.server.runtime_calls import as_error, call, collect, open_stream, runtime_of
from locallama.server.streaming import ClosingStreamingResponse, blocking, progress_events

FACE = "Ollama"
NDJSON = "application/x-ndjson"

# -- plumbing ---------------------------------------------------------------------------


router = APIRouter(route_class=JSONBodyRoute)  # the API key: server/guard.py


def _ndjson(lines: AsyncIterator[dict[str, Any]]) -> Response:
    """One JSON object per line; an error after the status was sent is the last line."""

    async def body() -> AsyncIterator[str]:
        async with aclosing(lines):
            try:
                async for line in lines:
                    yield _dumps(line) + "\n"
            except Exception as exc:
                yield _dumps(ollama_error_body(as_error(exc, FACE))) + "\n"

    return ClosingStreamingResponse(body(), media_type=NDJSON)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- generate and chat ----------------------------------------------------------------------


@router.post("/api/generate")
async def generate(body: GenerateBody, request: Request) -> Response:
    runtime = runtime_of(request)
    if not body.prompt:
        reason = await _load_or_unload(runtime, body.model, body.keep_alive, body.options)
        return JSONResponse(loaded_line(body.model, reason, chat=False))
    run = generate_request(body)

    def line(chunk: Chunk) -> dict[str, Any]:
        return generate_line(body.model, chunk, context=not run.raw)

    return await _answer(await open_stream(lambda: runtime.generate(run), face=FACE),
                         body.stream, line)


@router.post("/api/chat")
async def chat(body: ChatBody, request: Request) -> Response:
    runtime = runtime_of(request)
    if not body.messages:
        reason = await _load_or_unload(runtime, body.model, body.keep_alive, body.options)
        return JSONResponse(loaded_line(body.model, reason, chat=True))
    run = chat_request(body)

    return await _answer(await open_stream(lambda: runtime.chat(run), face=FACE),
                         body.stream, ChatLines(body.model))


async def _load_or_unload(runtime: Runtime, model: str, keep_alive: KeepAlive,
                          options: dict[str, Any] | None) -> str:
    """Ollama's empty request: load the model (with its options, num_ctx above all),
    or unload it when keep_alive is 0."""
    if keep_alive is not None and parse_keep_alive(keep_alive) == 0:
        await call(runtime.unload, model, face=FACE)
        return "unload"
    await call(runtime.load, model, keep_alive, options, face=FACE)
    return "load"


async def _answer(chunks: AsyncIterator[Chunk], stream: bool | None,
                  line: Callable[[Chunk], dict[str, Any]]) -> Response:
    """A line per chunk, or (stream false) the whole answer as one object."""
    if stream is not False:
        async def lines() -> AsyncIterator[dict[str, Any]]:
            async with aclosing(chunks):
                async for chunk in chunks:
                    yield line(chunk)

        return _ndjson(lines())
    return JSONResponse(line(_joined(await collect(chunks, face=FACE))))


def _joined(chunks: list[Chunk]) -> Chunk:
    """The final chunk carrying the whole text and every logprob."""
    logprobs = [t for c in chunks for t in c.logprobs or ()]
    prompt = next((c.prompt_logprobs for c in chunks if c.prompt_logprobs), None)
    return dataclasses.replace(chunks[-1], text="".join(c.text for c in chunks),
                               thinking="".join(c.thinking for c in chunks),
                               logprobs=logprobs or None, prompt_logprobs=prompt)


# -- embeddings and tokens --------------------------------------------------------------------


@router.post("/api/embed")
async def embed(body: EmbedBody, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    inputs = embed_inputs(body)
    if not inputs:
        await call(runtime.load, body.model, body.keep_alive, face=FACE)
        return {"model": body.model, "embeddings": []}
    result = await call(runtime.embed, body.model, inputs, body.truncate is not False,
                        body.options, body.keep_alive, body.dimensions, face=FACE)
    return embed_json(body.model, result)


@router.post("/api/embeddings")
async def embeddings(body: EmbeddingsBody, request: Request) -> dict[str, Any]:
    """The older endpoint: one prompt, one vector."""
    runtime = runtime_of(request)
    if not body.prompt:
        await call(runtime.load, body.model, body.keep_alive, face=FACE)
        return {"embedding": []}
    result = await call(runtime.embed, body.model, [body.prompt], True, body.options,
                        body.keep_alive, face=FACE)
    return {"embedding": result.embeddings[0]}


@router.post("/api/tokenize")
async def tokenize(body: TokenizeBody, request: Request) -> dict[str, Any]:
    tokens = await call(runtime_of(request).tokenize, body.model, body.content, face=FACE)
    return {"model": body.model, "tokens": tokens}


@router.post("/api/detokenize")
async def detokenize(body: DetokenizeBody, request: Request) -> dict[str, Any]:
    content = await call(runtime_of(request).detokenize, body.model, body.tokens, face=FACE)
    return {"model": body.model, "content": content}


# -- models -------------------------------------------------------------------------------------


@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)

    def models() -> list[dict[str, Any]]:
        return [tag_json(entry) for entry in runtime.list()]

    return {"models": await call(models, face=FACE)}


@router.post("/api/show")
async def show(body: ShowBody, request: Request) -> dict[str, Any]:
    return show_json(await call(runtime_of(request).show, body.model, face=FACE))


@router.post("/api/create")
async def create(body: CreateBody, request: Request) -> Response:
    runtime = runtime_of(request)
    modelfile = await call(create_modelfile, body, runtime.blob_path, face=FACE)
    imatrix = await call(runtime.blob_path, body.imatrix, face=FACE) if body.imatrix else None
    folder = await call(uploaded_folder, body.files, runtime.blob_path, face=FACE)

    def work(progress: Progress) -> None:
        with tempfile.TemporaryDirectory() as empty:  # nothing to find by a relative path
            for name, blob in folder.items():  # an uploaded safetensors folder: links
                link = Path(empty, UPLOADED_FOLDER, name)  # to its blobs, named as sent
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(blob)
            runtime.create(body.model, modelfile, Path(empty), progress, body.quantize,
                           imatrix)

    return await _progress_answer(work, body.stream)


@router.post("/api/pull")
async def pull(body: PullBody, request: Request) -> Response:
    runtime = runtime_of(request)
    return await _progress_answer(
        lambda progress: runtime.pull(body.model, progress, insecure=bool(body.insecure)),
        body.stream)


@router.post("/api/push")
async def push(body: PullBody) -> Response:
    raise NotSupported(f"cannot push '{body.model}': no registry is configured to push to")


async def _progress_answer(work: Callable[[Progress], None], stream: bool | None) -> Response:
    """Status lines, then ``{"status": "success"}``; or (stream false) only the last."""
    if stream is False:
        await call(work, silent, face=FACE)
        return JSONResponse({"status": "success"})
    events = await open_stream(lambda: progress_events(work), face=FACE)

    async def lines() -> AsyncIterator[dict[str, Any]]:
        async with aclosing(events):
            async for event in events:
                if event.status != "success":  # sent once, at the very end
                    yield progress_json(event)
        yield {"status": "success"}

    return _ndjson(lines())


@router.post("/api/copy")
async def copy(body: CopyBody, request: Request) -> Response:
    await call(runtime_of(request).copy, body.source, body.destination, face=FACE)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(body: ModelBody, request: Request) -> Response:
    await call(runtime_of(request).delete, body.model, face=FACE)
    return Response(status_code=200)


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    return {"models": [running_json(i) for i in await call(runtime_of(request).ps, face=FACE)]}


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


# -- blobs ----------------------------------------------------------------------------------------


@router.head("/api/blobs/{digest}")
async def blob_exists(digest: str, request: Request) -> Response:
    found = await call(runtime_of(request).has_blob, digest, face=FACE)
    return Response(status_code=200 if found else 404)


@router.post("/api/blobs/{digest}", status_code=201)
async def blob_upload(digest: str, request: Request) -> Response:
    """Stream the body into the store; bytes that hash otherwise are not kept (400)."""
    runtime = runtime_of(request)
    # a malformed digest fails before reading
    existed = await call(runtime.has_blob, digest, face=FACE)
    await call(runtime.add_blob, digest, blocking(request.stream()), face=FACE)
    return Response(status_code=200 if existed else 201)

