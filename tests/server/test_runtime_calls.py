"""server/runtime_calls.py: how a face calls the Runtime; a stream's first step is
taken before the answer starts, so an error before any output is an HTTP status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from locallama.errors import LocallamaError, ModelNotFound
from locallama.server.runtime_calls import open_stream
from steps import Steps, run


def test_open_stream_takes_the_first_step_before_it_returns():
    steps = Steps(3)

    async def main() -> tuple[list[int], list[int]]:
        stream = await open_stream(lambda: steps, face="test")
        before = list(steps.taken)
        return before, [item async for item in stream]

    before, items = run(main)
    assert before == [0] and items == [0, 1, 2] and steps.closed


@pytest.mark.parametrize(("error", "raised", "match"), [
    (ModelNotFound("ghost:latest"), ModelNotFound, "ghost:latest"),
    (ValueError("boom"), LocallamaError, "internal error: boom"),
])
def test_an_error_before_any_output_is_raised_by_open_stream(error, raised, match):
    """So the face answers an HTTP error status, not a 200 stream that breaks."""

    async def main() -> None:
        await open_stream(lambda: Steps(3, fail_at=0, error=error), face="test")

    with pytest.raises(raised, match=match):
        run(main)


def test_an_error_starting_the_stream_is_raised_too():
    def start() -> Iterator[int]:
        raise ModelNotFound("ghost:latest")

    async def main() -> None:
        await open_stream(start, face="test")

    with pytest.raises(ModelNotFound):
        run(main)


def test_a_stream_without_items_opens_and_ends():
    async def main() -> list[int]:
        return [item async for item in await open_stream(lambda: Steps(0), face="test")]

    assert run(main) == []
