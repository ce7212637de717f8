"""server/streaming.py: blocking Runtime iterators in worker threads, closed when the
client leaves; callback-style work as events; the per-request CLIENT_GONE event."""

from __future__ import annotations

import threading
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from locallama.cancel import CLIENT_GONE
from locallama.errors import Cancelled, ModelNotFound
from locallama.progress import ProgressEvent
from locallama.server.streaming import (
    ClosingStreamingResponse,
    WatchDisconnect,
    blocking,
    iterate_in_thread,
    progress_events,
)
from steps import Steps, run

# -- iterate_in_thread ----------------------------------------------------


def test_each_step_runs_in_a_worker_thread_and_the_end_closes_the_iterator():
    steps = Steps(3)

    async def main() -> list[int]:
        return [item async for item in iterate_in_thread(steps)]

    assert run(main) == [0, 1, 2]
    assert threading.get_ident() not in steps.threads and steps.closed


def test_a_client_that_leaves_closes_the_iterator_and_no_further_step_follows():
    steps = Steps(None)  # a generation that would never end

    async def main() -> None:
        async with aclosing(iterate_in_thread(steps)) as items:
            async for item in items:
                if item == 2:
                    break

    run(main)
    # the stream's thread runs one item ahead: it may hold the next item and be in
    # the step after it, never further
    assert steps.closed and steps.taken == list(range(len(steps.taken)))
    assert 3 <= len(steps.taken) <= 5


# -- progress_events -------------------------------------------------------------------


def test_progress_events_come_in_order_and_the_works_error_after_them():
    def work(report) -> None:
        report(ProgressEvent("pulling manifest"))
        report(ProgressEvent("pulling 1234", "sha256:1234", 10, 5))
        raise ModelNotFound("ghost:latest")

    seen = []
    with pytest.raises(ModelNotFound):
        for event in progress_events(work):
            seen.append(event.status)
    assert seen == ["pulling manifest", "pulling 1234"]


def test_progress_events_end_when_the_work_ends():
    def work(report) -> None:
        for i in range(3):
            report(ProgressEvent(f"step {i}"))

    assert [e.status for e in progress_events(work)] == ["step 0", "step 1", "step 2"]


def test_closing_progress_events_stops_the_work_at_its_next_report():
    reported, stopped = [], threading.Event()
    first_seen = threading.Event()

    def work(report) -> None:
        try:
            for i in range(1000):
                report(ProgressEvent(f"step {i}"))
                reported.append(i)
                first_seen.wait(5)
        except Cancelled:
            stopped.set()
            raise

    events = progress_events(work)
    assert next(events).status == "step 0"
    events.close()  # the client left
    first_seen.set()
    assert stopped.wait(5)
    assert len(reported) <= 2  # the report in flight at most, then Cancelled


# -- blocking --------------------------------------------------------------------------


def test_an_async_body_is_read_block_by_block_in_a_worker_thread():
    async def body():
        for block in (b"GGUF", b"", b"rest"):
            yield block

    async def main() -> list[bytes]:
        return await anyio.to_thread.run_sync(lambda: list(blocking(body())))

    assert run(main) == [b"GGUF", b"rest"]  # empty blocks skipped


# -- WatchDisconnect -------------------------------------------------------------------


def client(*messages: dict, leave_after: float | None = None):
    """An ASGI ``receive``: ``messages``, then (after ``leave_after`` s) a disconnect."""
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        if leave_after is None:
            await anyio.sleep_forever()
        await anyio.sleep(leave_after)
        return {"type": "http.disconnect"}

    return receive


async def no_send(message: dict) -> None:
    pass


BODY = {"type": "http.request", "body": b"{}", "more_body": False}


def test_a_client_that_leaves_sets_the_requests_event_while_the_app_still_works():
    seen: dict[str, Any] = {}

    async def app(scope, receive, send) -> None:
        gone = CLIENT_GONE.get()
        assert (await receive())["type"] == "http.request"
        seen["at_first"] = gone.is_set()
        # blocking work in a worker thread (a template render) sees the same event
        seen["worker_saw"] = await anyio.to_thread.run_sync(lambda: CLIENT_GONE.get().wait(5))
        seen["then"] = (await receive())["type"]

    async def main() -> None:
        await WatchDisconnect(app)({"type": "http"}, client(BODY, leave_after=0.05), no_send)
        seen["after"] = CLIENT_GONE.get()

    run(main)
    assert seen == {"at_first": False, "worker_saw": True, "then": "http.disconnect",
                    "after": None}


def test_each_request_has_its_own_event():
    events = []

    async def app(scope, receive, send) -> None:
        await receive()
        events.append(CLIENT_GONE.get())

    async def main() -> None:
        for _ in range(2):
            await WatchDisconnect(app)({"type": "http"}, client(BODY), no_send)

    run(main)
    assert events[0] is not events[1] and not any(e.is_set() for e in events)


def test_other_scopes_pass_straight_through():
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(CLIENT_GONE.get())

    run(lambda: WatchDisconnect(app)({"type": "lifespan"}, client(), no_send))
    assert seen == [None]


def test_an_error_in_the_app_comes_out_as_it_is():
    async def app(scope, receive, send) -> None:
        await receive()
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):  # not wrapped in an exception group
        run(lambda: WatchDisconnect(app)({"type": "http"}, client(BODY), no_send))


# -- ClosingStreamingResponse ----------------------------------------------------------


def test_a_body_left_waiting_on_a_gone_client_is_closed_at_once():
    """The generator is suspended at its yield while the send hangs; when the client
    leaves, closing it is what runs its cleanup (and stops the generation) now."""
    closed = []

    async def main() -> None:
        sent = anyio.Event()

        async def body():
            try:
                yield b"one"
                yield b"two"
            finally:
                closed.append(True)

        async def receive() -> dict:
            await sent.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body":
                sent.set()
                await anyio.sleep_forever()  # a client that reads no more

        await ClosingStreamingResponse(body())({"type": "http"}, receive, send)
        assert closed  # before the response returns, not when collected

    run(main)
