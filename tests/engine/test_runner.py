"""Runners (engine/runner.py, runner_client.py) through a LocalRuntime: crashes end
only the requests they served, the next request starts a fresh runner, unloading
ends the process, and the runner changes no output (in-process mode gives the same
tokens).  Tiny random-weight models: a greedy answer to "hello" never meets EOS, so a
long num_predict is a stream that is still running when the test kills its runner.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import locallama.gguf_info
import locallama.runtime.local
from locallama.engine.job import Job
from locallama.errors import BadModelFile, InvalidRequest, RunnerStopped
from locallama.options import resolve_options
from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import ChatRequest, GenerateRequest, Message
from locallama.settings import Settings
from runtimes import add_model, local_runtime
from tinymodel import tiny_vocab
from waiting import dead, gone, poll

DEADLINE_S = 20.0  # generous: a loaded 2-core machine
ENDLESS = {"num_predict": 100_000, "temperature": 0}  # runs for many seconds








def kill_runner(runtime: LocalRuntime) -> int:
    """SIGKILL the one loaded model's runner; its pid once it is dead."""
    [row] = runtime.ps()
    assert row.pid is not None
    os.kill(row.pid, signal.SIGKILL)
    poll(lambda: dead(row.pid), "the runner died")
    return row.pid


@pytest.fixture
def rt(tmp_path: Path, tiny_gguf: Path) -> Iterator[LocalRuntime]:
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf))
    yield runtime
    runtime.close()


def _stream(runtime: LocalRuntime, face: str, options: dict) -> Iterator:
    if face == "generate":
        return runtime.generate(GenerateRequest("tiny", "hello", raw=True, options=options))
    return runtime.chat(ChatRequest("tiny", [Message("user", "hello")], options=options))


@pytest.mark.parametrize("face", ["generate", "chat"])
def test_sigkill_mid_stream_ends_the_request_and_the_next_gets_a_fresh_runner(
        rt: LocalRuntime, face: str) -> None:
    stream = _stream(rt, face, ENDLESS)
    assert next(stream).text is not None  # streaming
    pid = kill_runner(rt)
    with pytest.raises(RunnerStopped) as caught:
        for chunk in stream:
            assert not chunk.done, "the stream finished although its runner was killed"
    message = str(caught.value)
    assert "tiny:latest" in message and "SIGKILL" in message
    assert "\n" not in message
    poll(lambda: rt.ps() == [], "ps no longer lists the dead runner")
    chunks = list(_stream(rt, face, {"num_predict": 8, "temperature": 0}))
    assert chunks[-1].done and chunks[-1].eval_count == 8
    [row] = rt.ps()
    assert row.pid is not None and row.pid != pid


def test_a_request_after_the_runner_died_starts_a_fresh_one(rt: LocalRuntime) -> None:
    """Nothing was in flight when the runner died: the user should not see its death."""
    first = rt.embed("tiny", ["hello world"]).embeddings
    for _ in range(3):  # the moment after a death is racy: try it more than once
        pid = kill_runner(rt)
        assert rt.embed("tiny", ["hello world"]).embeddings == first
        [row] = rt.ps()
        assert row.pid != pid
    rt.unload("tiny")  # unloads the embedding runner
    poll(lambda: rt.ps() == [], "the embedding runner unloaded")
    rt.load("tiny")
    kill_runner(rt)
    assert rt.tokenize("tiny", "hello") == rt.tokenize("tiny", "hello")
    chunks = list(rt.generate(GenerateRequest("tiny", "hello", options={"num_predict": 4})))
    assert chunks[-1].done


@pytest.mark.parametrize("how", ["unload", "keep_alive 0", "close"])
def test_unloading_ends_the_runner_process(rt: LocalRuntime, how: str) -> None:
    rt.load("tiny")
    [row] = rt.ps()
    assert row.pid is not None and psutil.pid_exists(row.pid)
    assert row.rss and row.rss > 1_000_000
    if how == "unload":
        rt.unload("tiny")
    elif how == "keep_alive 0":
        list(rt.generate(GenerateRequest("tiny", "hi", keep_alive=0,
                                         options={"num_predict": 2})))
    else:
        rt.close()
    poll(lambda: gone(row.pid), "the runner process is gone, no zombie left", 10.0)
    assert rt.ps() == []


def test_the_runner_setting(tmp_path: Path) -> None:
    assert Settings.from_env({}).runner == "process"
    assert Settings.from_env({"LOCALLAMA_RUNNER": "inprocess"}).runner == "inprocess"
    with pytest.raises(InvalidRequest) as caught:
        Settings.from_env({"LOCALLAMA_RUNNER": "thread"})
    assert "\n" not in str(caught.value) and "LOCALLAMA_RUNNER" in str(caught.value)


def _answers(runtime: LocalRuntime) -> list[tuple]:
    """Seeded and greedy answers with their logprobs, as plain values."""
    out = []
    for options in ({"seed": 42, "temperature": 0.9, "num_predict": 24},
                    {"temperature": 0, "num_predict": 24}):
        chunks = list(runtime.generate(GenerateRequest(
            "tiny", "Once upon a time", options=options, logprobs=True, top_logprobs=3)))
        text = "".join(c.text for c in chunks)
        logprobs = [t for c in chunks for t in c.logprobs or []]  # exact floats
        assert all(len(t.top) == 3 for t in logprobs)
        out.append((text, logprobs, chunks[-1].eval_count))
    return out


def test_in_process_mode_gives_the_same_answers(tmp_path: Path, tiny_gguf: Path) -> None:
    with_runner = local_runtime(tmp_path / "a", ("tiny", tiny_gguf))
    in_process = local_runtime(tmp_path / "b", ("tiny", tiny_gguf), runner="inprocess")
    try:
        expected = _answers(with_runner)
        assert expected[0][0] and expected[0][1]  # text and logprobs came back
        assert _answers(in_process) == expected
        assert with_runner.ps()[0].pid is not None
        [row] = in_process.ps()
        assert row.pid is None and row.rss is None
    finally:
        with_runner.close()
        in_process.close()


def test_a_stream_closed_before_its_first_piece_stops_its_job_in_the_runner(
        rt: LocalRuntime) -> None:
    # a caller that fails between submit and its first read (closing(...) around it)
    rt.load("tiny")
    [entry] = rt.loader.entries()
    scheduler = entry.model.scheduler
    scheduler.submit(Job(entry.model.tokenize("hello"), resolve_options(ENDLESS))).close()
    poll(lambda: scheduler.active() == 0 and scheduler.waiting() == 0,
         "the runner stopped the job nobody reads")


def test_closing_a_stream_frees_its_sequence_for_the_next_request(
        tmp_path: Path, tiny_gguf: Path) -> None:
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf), num_parallel=1)
    try:
        first = _stream(runtime, "generate", ENDLESS)
        next(first)
        second = _stream(runtime, "generate", {"num_predict": 4, "temperature": 0})
        got: list = []
        reader = threading.Thread(target=lambda: got.extend(second), daemon=True)
        reader.start()
        poll(lambda: runtime.waiting() == {"tiny:latest": 1}, "the second request waits")
        closed = time.monotonic()
        first.close()
        reader.join(DEADLINE_S)
        assert got and got[-1].done, "the second request never got the freed sequence"
        # The first would have run for seconds more: its sequence was freed, not finished.
        assert time.monotonic() - closed < 5.0
        assert runtime.waiting() == {"tiny:latest": 0}
    finally:
        runtime.close()


@pytest.fixture
def no_header_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file no check refuses: the header checks and the create-time load check off,
    as for a fault in llama.cpp that no check knows yet."""
    monkeypatch.setattr(locallama.gguf_info, "check_metadata", lambda *args: None)
    monkeypatch.setattr(locallama.runtime.local, "check_loads", lambda *args: None)


def repeated_token_gguf(make_gguf: Callable[..., Path]) -> Path:
    """A vocabulary that repeats a token: llama.cpp aborts while loading it."""
    tokens, _, _ = tiny_vocab()
    tokens[300] = tokens[299]
    return make_gguf("repeated.gguf", extra_metadata={"tokenizer.ggml.tokens": tokens})


def test_a_runner_that_dies_while_loading_is_a_bad_model_file(
        rt: LocalRuntime, make_gguf: Callable[..., Path], no_header_check: None) -> None:
    add_model(rt, "planted", repeated_token_gguf(make_gguf))
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(BadModelFile) as caught:
        list(rt.generate(GenerateRequest("planted", "hi")))
    message = str(caught.value)
    assert "planted" in message and "SIGABRT" in message and "\n" not in message
    assert not isinstance(caught.value, RunnerStopped)
    assert rt.ps() == []
    chunks = list(rt.generate(GenerateRequest("tiny", "hi", options={"num_predict": 4})))
    assert chunks[-1].done
    with pytest.raises(BadModelFile):  # again, not a stale entry
        list(rt.generate(GenerateRequest("planted", "hi")))
    [row] = rt.ps()
    assert row.name == "tiny:latest"
    left = {p.pid for p in psutil.Process().children()} - before - {row.pid}
    assert not [pid for pid in left if psutil.pid_exists(pid)
                and "locallama.engine.runner" in " ".join(psutil.Process(pid).cmdline())]


def test_a_runner_that_dies_is_written_to_the_log_with_its_last_lines(
        rt: LocalRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """The server's operator sees the crash in the log (logger ``locallama.runner``,
    which ``serve`` prints), not only the 500 in the access log."""
    stream = _stream(rt, "generate", ENDLESS)
    next(stream)
    with caplog.at_level("WARNING", logger="locallama.runner"):
        pid = kill_runner(rt)
        with pytest.raises(RunnerStopped):
            for _ in stream:
                pass
        poll(lambda: caplog.records, "the crash was logged")
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert f"model runner for tiny:latest (pid {pid}) stopped: SIGKILL" in record.getMessage()
    assert "its last lines" in record.getMessage()


def test_a_runner_ends_when_its_parent_dies_even_with_its_socket_held_open(
        tmp_path: Path) -> None:
    """A runner whose server was killed ends within a second or so, even when the end of
    its socket is not closed (the other end is held here, as a long load would hold it
    off reading): it watches its parent."""
    import socket
    import subprocess
    import sys

    ours, theirs = socket.socketpair()
    src = str(Path(locallama.runtime.local.__file__).resolve().parents[2])
    starter = ("import os, subprocess, sys, time\n"
               "fd = int(sys.argv[1])\n"
               "p = subprocess.Popen([sys.executable, '-m', 'locallama.engine.runner', "
               "str(fd), str(os.getpid())], pass_fds=(fd,))\n"
               "print(p.pid, flush=True)\n"
               "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", starter, str(theirs.fileno())],
                              pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": src}, text=True)
    try:
        runner = int(parent.stdout.readline())
        assert psutil.pid_exists(runner)
        parent.kill()
        parent.wait()
        poll(lambda: dead(runner), "the orphaned runner ended", timeout=10)
    finally:
        parent.kill()
        ours.close()
        theirs.close()
