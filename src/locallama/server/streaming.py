"""Threads under the async handlers, and stopping work when the client leaves.

The Runtime is synchronous: each ``next()`` may wait for a llama.cpp decode step, so
it runs in a thread.  When the client goes away, Starlette cancels the task that
drives the stream; the step in flight finishes, no further step is asked for, and
the iterator is closed, which ends the generation and frees the model for the next
request.

A first step may wait for the model (another request holds it), so it runs in
anyio's worker pool, and the steps after it in a thread of the stream's own
(``iterate_in_thread``): requests waiting for the model can take every pool thread
without keeping the request that holds it from its next step.

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

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locallama.cancel import CLIENT_GONE
from locallama.errors import Cancelled
from locallama.progress import Progress, ProgressEvent

T = TypeVar("T")
_DONE = object()
STEPS_AHEAD = 1  # items a stream's thread may take before its consumer has taken them
_STOP_POLL_S = 0.1  # how often a stream's thread, waiting for room, checks for the end
log = logging.getLogger("locallama.server")


async def iterate_in_thread(items: Iterator[T]) -> AsyncIterator[T]:
    """Each step of ``items`` in a thread of the stream's own, which hands each item to
    this event loop as it comes and runs at most ``STEPS_AHEAD`` items ahead of the
    consumer; ``items`` is closed in that thread when this ends, however it ends (the
    client left: the generation stops), and this waits for that.  The thread may
    hold the item after the last one taken and be in the step after that when the
    consumer stops: those finish, their items are dropped, and no further step is
    asked for.  An error of ``close()`` ends the stream as a step's error would, where
    the consumer still reads and nothing failed before; otherwise it is logged
    (``locallama.server``), as is a step's error after the consumer left.

    A thread for the stream's life rather than a round trip to a thread pool per item
    (``anyio.to_thread.run_sync``): an item costs the event loop one callback, where
    anyio's dispatch cost it about a quarter of the server's CPU time per streamed
    token (py-spy on ``serve``, one stream).  The thread runs in the request's context
    (``CLIENT_GONE`` above all), as anyio's workers do, and never waits for a pool, so
    streams already under way cannot be starved by requests waiting for a model.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    room = threading.Semaphore(STEPS_AHEAD)
    stop = threading.Event()

    def post(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(ready.put_nowait, (kind, value))

    def pump() -> None:
        failed = False
        try:
            while not stop.is_set():
                item = next(items, _DONE)
                if item is _DONE:
                    break
                while not room.acquire(timeout=_STOP_POLL_S):
                    if stop.is_set():
                        return
                post("item", item)
        except BaseException as exc:  # noqa: BLE001 - raised to the consumer
            failed = True
            post("error", exc)
        finally:
            try:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            except BaseException as exc:  # noqa: BLE001 - as an error of the last step
                # raised to a consumer still reading, as the first error if there
                # was none; logged where no one reads any more or one was raised
                if failed or stop.is_set():
                    log.error("closing a stream failed", exc_info=exc)
                else:
                    post("error", exc)
            finally:
                post("end", None)

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(pump,), name="locallama-stream",
                     daemon=True).start()
    ended = False
    try:
        while True:
            kind, value = await ready.get()
            if kind == "item":
                room.release()
                yield value
            elif kind == "error":
                raise value
            else:
                ended = True
                return
    finally:
        stop.set()
        room.release()  # a thread waiting for room sees the end at once
        if not ended:
            with anyio.CancelScope(shield=True):
                while (message := await ready.get())[0] != "end":
                    kind, value = message
                    if kind == "error" and not isinstance(value, Cancelled):
                        log.error("a stream's step failed after its reader left",
                                  exc_info=value)


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
