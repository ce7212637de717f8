"""iterate_in_thread (a stream's own thread) tried the ways its first tests did not:
an iterator whose close() fails, at the end of a stream and after the client left,
and many streams, some of them abandoned, leaving no thread behind."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest

from fakeruntime import FakeRuntime
from liveserver import serve
from locallama.runtime.types import Chunk
from locallama.server.streaming import iterate_in_thread
from steps import Steps, run


class BadClose(Steps):
    """Steps whose close() stops the generation, then fails."""

    def close(self) -> None:
        super().close()
        raise RuntimeError("close failed")


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """What reaches threading.excepthook: an exception no one handled, printed raw."""
    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


def test_a_close_that_fails_at_the_end_is_raised_to_the_reader(thread_errors):
    """Before streams had a thread of their own, close() ran in iterate_in_thread's
    finally and its error ended the stream (the last NDJSON line, a 500 for stream
    false); the stream's thread swallowed it into an unhandled-thread traceback and
    the stream looked complete."""
    steps = BadClose(3)
    got: list[int] = []

    async def main() -> None:
        async for item in iterate_in_thread(steps):
            got.append(item)

    with pytest.raises(RuntimeError, match="close failed"):
        run(main)
    assert got == [0, 1, 2] and steps.closed
    assert thread_errors == []


def test_a_close_that_fails_after_the_client_left_is_logged_not_dumped(thread_errors, caplog):
    steps = BadClose(None)

    async def main() -> None:
        async with aclosing(iterate_in_thread(steps)) as items:
            async for item in items:
                if item == 2:
                    break

    with caplog.at_level(logging.ERROR, logger="locallama.server"):
        run(main)  # the reader left: nothing is raised to it
    assert steps.closed
    assert thread_errors == []
    assert "close failed" in caplog.text


def test_the_first_error_wins_over_a_failing_close(thread_errors):
    steps = BadClose(5, fail_at=2, error=ValueError("mid-stream"))

    async def main() -> None:
        async for _ in iterate_in_thread(steps):
            pass

    with pytest.raises(ValueError, match="mid-stream"):
        run(main)
    assert thread_errors == []


class CloseFails(FakeRuntime):
    """A Runtime whose answer's iterator fails when it is closed."""

    def _stream(self) -> Iterator[Chunk]:
        return BadCloseChunks(super()._stream())


class BadCloseChunks:
    def __init__(self, chunks: Iterator[Chunk]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        return next(self.chunks)

    def close(self) -> None:
        self.chunks.close()  # type: ignore[attr-defined]
        raise RuntimeError("the runner would not stop")


def test_a_served_stream_whose_close_fails_ends_with_the_error_line(tmp_path: Path,
                                                                    thread_errors):
    with serve(CloseFails(), tmp=tmp_path) as url, httpx.Client(base_url=url,
                                                                timeout=20) as http:
        answer = http.post("/api/chat", json={"model": "fake", "messages": [
            {"role": "user", "content": "hi"}]})
        lines = answer.text.splitlines()
        assert answer.status_code == 200
        assert '"done":true' in lines[-2]
        assert "the runner would not stop" in lines[-1] and '"error"' in lines[-1]
        whole = http.post("/api/chat", json={"model": "fake", "stream": False, "messages": [
            {"role": "user", "content": "hi"}]})
        assert whole.status_code == 500 and "the runner would not stop" in whole.text
    assert thread_errors == []


def test_many_streams_some_abandoned_leave_no_stream_thread(tmp_path: Path):
    """40 endless streams, each dropped by its client after two lines, then 40 that
    end: every stream's thread ends, and every abandoned generation was closed."""
    fake = FakeRuntime()

    def stream_threads() -> int:
        return sum(t.name == "locallama-stream" for t in threading.enumerate())

    with serve(fake, tmp=tmp_path) as url, httpx.Client(base_url=url, timeout=20) as http:
        fake.endless = True
        for _ in range(40):
            fake.closed.clear()
            with http.stream("POST", "/api/generate",
                             json={"model": "fake", "prompt": "hi"}) as lines:
                it = lines.iter_lines()
                next(it), next(it)
            assert fake.closed.wait(5), "an abandoned generation went on"
        fake.endless = False
        for _ in range(40):
            assert http.post("/v1/completions", json={"model": "fake", "prompt": "hi",
                                                      "stream": True}).status_code == 200
        deadline = time.monotonic() + 5
        while stream_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stream_threads() == 0
