"""Break-testing automatic speculation (draft_max -1 on a model whose batches are
exact) and submit's PieceStream: greedy answers must not change with speculation,
and a stream closed from another thread must stop its job, not raise."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest

from locallama.engine.job import Job
from locallama.options import resolve_options
from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import GenerateRequest
from runtimes import local_runtime
from tinymodel import write_tiny_gguf
from waiting import poll

REPETITIVE = "the cat sat on the mat. " * 12
ENDLESS = {"num_predict": 100_000, "temperature": 0}


@pytest.fixture(scope="module")
def q8_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("q8") / "q8.gguf",
                           file_type=gguf.LlamaFileType.MOSTLY_Q8_0)


@pytest.fixture(params=["inprocess", "process"])
def q8rt(request, tmp_path: Path, q8_path: Path) -> Iterator[LocalRuntime]:
    runtime = local_runtime(tmp_path, ("q8", q8_path), num_parallel=2, runner=request.param)
    yield runtime
    runtime.close()


def answer(runtime: LocalRuntime, draft_max: int, **request) -> tuple:
    options = {"temperature": 0, "draft_max": draft_max, **request.pop("options", {})}
    chunks = list(runtime.generate(GenerateRequest("q8", REPETITIVE, raw=True,
                                                   logprobs=True, top_logprobs=2,
                                                   options=options, **request)))
    last = chunks[-1]
    logprobs = [(t.token, t.logprob, [(a.token, a.logprob) for a in t.top])
                for c in chunks for t in c.logprobs or []]
    return ("".join(c.text for c in chunks), logprobs, last.done_reason,
            last.stop_sequence, last.eval_count, len(chunks)), (last.draft_n,
                                                                 last.draft_n_accepted)


@pytest.mark.parametrize("request_fields", [
    {"options": {"num_predict": 100}},
    {"options": {"num_predict": 200, "stop": ["side7"]}},  # a stop inside an accepted draft
    {"options": {"num_predict": 300, "num_ctx": 128}},  # context shifts
    {"options": {"num_predict": 300, "num_ctx": 160}, "shift": False},
    {"options": {"num_predict": 80},
     "format": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}},
    {"options": {"num_predict": 100, "repeat_penalty": 1.3, "repeat_last_n": 16}},
], ids=["plain", "stop", "shift", "noshift", "schema", "penalty"])
def test_greedy_answers_are_identical_whatever_draft_max(q8rt, request_fields):
    off, drafted_off = answer(q8rt, 0, **dict(request_fields))
    auto, drafted_auto = answer(q8rt, -1, **dict(request_fields))
    eight, _ = answer(q8rt, 8, **dict(request_fields))
    assert auto == off
    assert eight == off
    assert drafted_off == (0, 0)
    assert drafted_auto[0] > 0  # automatic mode did speculate on this exact model


@pytest.mark.parametrize("runner", ["inprocess", "process"])
def test_closing_a_stream_from_another_thread_while_it_is_read_stops_its_job(
        tmp_path: Path, tiny_gguf: Path, runner: str):
    # close() while another thread is inside next() raised "generator already
    # executing" and left the job running (in the runner, forgetting it would also
    # have left its reader waiting forever)
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf), num_parallel=1, runner=runner)
    try:
        runtime.load("tiny")
        [entry] = runtime.loader.entries()
        scheduler = entry.model.scheduler
        stream = scheduler.submit(Job(entry.model.tokenize("hello"), resolve_options(ENDLESS)))
        got: list = []
        reader = threading.Thread(target=lambda: got.extend(stream), daemon=True)
        reader.start()
        poll(lambda: len(got) > 2, "the reader reads")
        stream.close()
        reader.join(20)
        assert not reader.is_alive()
        stream.close()  # twice: nothing more
        assert list(stream) == []
        poll(lambda: scheduler.active() == 0 and scheduler.waiting() == 0,
             "the closed stream's job stopped")
    finally:
        runtime.close()


@pytest.mark.parametrize("runner", ["inprocess", "process"])
def test_closing_a_stream_twice_after_its_end_or_unread_is_harmless(
        tmp_path: Path, tiny_gguf: Path, runner: str):
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf), num_parallel=1, runner=runner)
    try:
        runtime.load("tiny")
        [entry] = runtime.loader.entries()
        scheduler = entry.model.scheduler
        short = resolve_options({"num_predict": 3, "temperature": 0})
        done = scheduler.submit(Job(entry.model.tokenize("hello"), short))
        assert len(list(done)) == 3
        done.close()
        done.close()
        unread = scheduler.submit(Job(entry.model.tokenize("hello"), resolve_options(ENDLESS)))
        unread.close()
        unread.close()
        assert list(unread) == []
        poll(lambda: scheduler.active() == 0 and scheduler.waiting() == 0, "nothing runs")
        again = scheduler.submit(Job(entry.model.tokenize("hello"), short))
        assert len(list(again)) == 3  # the slot is free for the next request
    finally:
        runtime.close()
