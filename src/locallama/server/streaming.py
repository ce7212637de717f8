"""Threads under the async handlers, and stopping work when the client leaves.

The Runtime is synchronous: each ``next()`` may run a llama.cpp decode step, so it
runs in a worker thread.  When the client goes away, Starlette cancels the task
that drives the stream; the step in flight finishes, no further step is asked
for, and the iterator is closed, which ends the generation and frees the model
for the next request.

A first step may wait for the model (another request holds it), so first steps
and later steps run under separate thread limiters: otherwise enough waiting
requests take every worker thread, the request that holds the model can never
take its next step, and the server deadlocks.

Work before the first byte (rendering the chat template above all) runs while
Starlette is not listening to the client, so ``WatchDisconnect`` listens: once a
request's body is read it waits for ``http.disconnect`` and sets the request's
``CLIENT_GONE`` event, which the template renderer checks while it waits, so a
render whose client left is killed at once.  ``progress_events`` turns callback-style work (pull,
create) into such an iterator; ``blocking`` hands an async request body to a
blocking consumer (a blob upload) in a worker thread.  The faces' handlers use these
through ``server/runtime_calls.py``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.lowlevel import RunVar
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locallama.cancel import CLIENT_GONE
from locallama.errors import Cancelled
from locallama.progress import Progress, ProgressEvent

T = TypeVar("T")
_DONE = object()
_STEPS: RunVar[anyio.CapacityLimiter] = RunVar("locallama_stream_steps")


def _step_limiter() -> anyio.CapacityLimiter:
    """Threads for the steps of streams already under way (one per event loop)."""
    try:
        return _STEPS.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(64)
        _STEPS.set(limiter)
        return limiter


async def iterate_in_thread(items: Iterator[T]) -> AsyncIterator[T]:
    """Each step of ``items`` in a worker thread (the steps' own limiter); ``items`` is
    closed when this ends, however it ends (the client left: the generation stops)."""
    try:
        while True:
            item = await anyio.to_thread.run_sync(next, items, _DONE, limiter=_step_limiter())
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close, limiter=_step_limiter())


async def first_in_thread(items: Iterator[T]) -> tuple[T | None, Iterator[T]]:
    """Run the first step in a thread, so that errors raised before any output
    (unknown model, bad options) become a proper HTTP error instead of a broken stream."""
    item = await anyio.to_thread.run_sync(next, items, None)
    return item, items


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that always closes its body iterator when it ends.

    Starlette stops iterating when the client leaves but leaves a body generator
    that was waiting on ``send`` suspended, to be closed whenever it is collected;
    closing it here runs its cleanup (and so stops the generation) at once.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose: Any = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


class WatchDisconnect:
    """ASGI middleware: a ``threading.Event`` per HTTP request in ``CLIENT_GONE``, set
    when the client disconnects (Starlette's ``http.disconnect``), at any time after
    the request's body was read, including while the handler still computes its
    answer.  Worker threads started with ``anyio.to_thread`` see the event (context
    variables are copied), so blocking work can stop when nobody waits for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gone = threading.Event()
        body_read, disconnected = anyio.Event(), anyio.Event()

        def left() -> None:
            gone.set()
            disconnected.set()

        async def app_receive() -> Message:
            if body_read.is_set():  # from here on the watcher alone reads the client
                await disconnected.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                left()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def watch() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            left()

        failed: Exception | None = None
        token = CLIENT_GONE.set(gone)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(watch)
                try:
                    await self.app(scope, app_receive, send)
                except Exception as exc:  # raised as it is below, not in a group
                    failed = exc
                finally:
                    group.cancel_scope.cancel()
        finally:
            CLIENT_GONE.reset(token)
        if failed is not None:
            raise failed


def progress_events(work: Callable[[Progress], None]) -> Iterator[ProgressEvent]:
    """Run callback-style work in its own thread and yield its events as they come;
    its error, if any, is raised after the last one.  Closing this early (the client
    left) makes the work's next progress report raise Cancelled, which stops it."""
    events: queue.Queue[Any] = queue.Queue()
    failed: list[BaseException] = []
    stop = threading.Event()

    def report(event: ProgressEvent) -> None:
        if stop.is_set():
            raise Cancelled("the client went away")
        events.put(event)

    def run() -> None:
        try:
            work(report)
        except BaseException as exc:  # handed to the reader, who raises it
            failed.append(exc)
        finally:
            events.put(_DONE)

    threading.Thread(target=run, name="locallama-progress", daemon=True).start()
    try:
        while (event := events.get()) is not _DONE:
            yield event
    finally:
        stop.set()
    if failed:
        raise failed[0]


def blocking(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """An async byte stream as a blocking iterator, for a worker thread started by
    ``anyio.to_thread`` (each step runs on the event loop)."""

    async def next_block() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (block := anyio.from_thread.run(next_block)) is not None:
        if block:
            yield block
