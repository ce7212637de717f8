"""Run a Runtime's blocking chunk iterator from async handlers, and stop it on disconnect.

The Runtime is synchronous: each ``next()`` may run a llama.cpp decode step, so it
runs in a worker thread.  When the client goes away, Starlette cancels the task
that drives the stream; the step in flight finishes, no further step is asked
for, and the iterator is closed, which ends the generation and frees the model
for the next request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")
_DONE = object()


async def iterate_in_thread(items: Iterator[T]) -> AsyncIterator[T]:
    try:
        while True:
            item = await anyio.to_thread.run_sync(next, items, _DONE)
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)


async def first_in_thread(items: Iterator[T]) -> tuple[T | None, Iterator[T]]:
    """Run the first step in a thread, so that errors raised before any output
    (unknown model, bad options) become a proper HTTP error instead of a broken stream."""
    item = await anyio.to_thread.run_sync(next, items, None)
    return item, items
