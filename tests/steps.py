"""A Runtime-like iterator that records its steps, and a bounded ``anyio.run``: for the
tests of the server's stream plumbing (``server/streaming.py``, ``server/runtime_calls.py``)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        with anyio.fail_after(10):
            return await main()

    return anyio.run(bounded)


class Steps:
    """A Runtime-like iterator: counts the steps taken, the threads that took them,
    and whether it was closed (what stops a generation)."""

    def __init__(self, n: int | None = 3, fail_at: int | None = None,
                 error: Exception | None = None) -> None:
        self.taken: list[int] = []
        self.threads: set[int] = set()
        self.closed = False
        self._gen = self._run(n, fail_at, error)

    def _run(self, n, fail_at, error) -> Iterator[int]:
        try:
            i = 0
            while n is None or i < n:
                if i == fail_at:
                    raise error
                self.taken.append(i)
                self.threads.add(threading.get_ident())
                yield i
                i += 1
        finally:
            self.closed = True

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()
