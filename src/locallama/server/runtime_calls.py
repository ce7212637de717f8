"""How a face's handler calls the Runtime: the plumbing both faces share.

The Runtime is blocking and the handlers are async, so every call runs in a worker
thread (``server/streaming.py``).  Whatever fails comes back as a typed error, so
the face can answer it in its own shape: ours as they are, anything else a logged
500.  ``face`` ("Ollama", "OpenAI") only names the face in that log line.

* ``call``: one blocking call (list, show, embed, ...).
* ``open_stream``: a stream whose first step has run, so an error before any output
  is an HTTP status, not a broken 200 stream.
* ``collect``: a whole answer (stream false), checked to end with its final chunk.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import Request

from locallama.errors import LocallamaError
from locallama.runtime.base import Runtime
from locallama.runtime.types import Chunk
from locallama.server.streaming import first_in_thread, iterate_in_thread

T = TypeVar("T")
log = logging.getLogger("locallama.server")


def runtime_of(request: Request) -> Runtime:
    """The Runtime the app was built around (``create_app``)."""
    return request.app.state.runtime


def as_error(exc: BaseException, face: str) -> LocallamaError:
    """A typed error for any failure: ours as they are, anything else a 500 whose
    traceback is logged (logger ``locallama.server``)."""
    if isinstance(exc, LocallamaError):
        return exc
    log.exception("internal error in the %s face", face, exc_info=exc)
    return LocallamaError(f"internal error: {exc}")


async def call(fn: Callable[..., T], *args: Any, face: str) -> T:
    """``fn(*args)`` in a worker thread; raises a typed error (``as_error``)."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except Exception as exc:
        raise as_error(exc, face) from exc


async def open_stream(start: Callable[[], Iterator[T]], *, face: str) -> AsyncIterator[T]:
    """Start a stream (``start()``, e.g. ``lambda: runtime.chat(request)``) and take its
    first step now, so that an error before any output is raised here, typed.  The rest
    runs in worker threads; closing the result (the client left) closes the Runtime's
    iterator, which stops the generation."""
    items = await call(start, face=face)
    try:
        first, items = await first_in_thread(items)
    except Exception as exc:
        raise as_error(exc, face) from exc
    return _chain(first, items)


async def _chain(first: T | None, items: Iterator[T]) -> AsyncIterator[T]:
    if first is not None:
        yield first
    async with aclosing(iterate_in_thread(items)) as rest:  # closes `items`
        async for item in rest:
            yield item


async def collect(chunks: AsyncIterator[Chunk], *, face: str) -> list[Chunk]:
    """Every chunk of an opened stream (``open_stream``), which is closed after; raises
    a typed error (``as_error``) for a failure on the way and for a stream that ends
    without its final chunk (``done``)."""
    try:
        async with aclosing(chunks):
            collected = [chunk async for chunk in chunks]
    except Exception as exc:
        raise as_error(exc, face) from exc
    if not collected or not collected[-1].done:
        raise LocallamaError("the runtime ended the answer without a final chunk")
    return collected
