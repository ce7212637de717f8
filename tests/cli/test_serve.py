"""``locallama serve`` as a user runs it, and the other commands going through it."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from liveserver import free_port
from locallama.cli.common import get_runtime, server_answers
from locallama.cli.serve import FORCED_EXIT_AFTER_S, GRACEFUL_SHUTDOWN_S
from locallama.client import RemoteRuntime
from locallama.runtime.local import LocalRuntime
from locallama.units import GIB, MIB

LOCALLAMA = str(Path(sys.executable).with_name("locallama"))
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15


def _env(tmp_path: Path, port: int, models: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAMA_")}
    env.update(LOCALLAMA_HOST=f"127.0.0.1:{port}", LOCALLAMA_MODELS=str(models),
               LOCALLAMA_HOME=str(tmp_path / "home"))
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([LOCALLAMA, *args], env=env, input="", capture_output=True, text=True,
                          timeout=timeout)


class Served:
    """A ``locallama serve`` subprocess with a store holding ``tiny``."""

    def __init__(self, tmp_path: Path, tiny_gguf: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_env = _env(tmp_path, self.port, tmp_path / "models") | env
        # The clients' own store is empty: whatever they see came from the server.
        self.client_env = _env(tmp_path, self.port, tmp_path / "empty")
        modelfile = tmp_path / "Modelfile"
        modelfile.write_text(f"FROM {tiny_gguf}\nPARAMETER num_predict 8\n")
        created = _cli(self.server_env, "create", "tiny", "-f", str(modelfile))
        assert created.returncode == 0, created.stderr
        self.log = tmp_path / "serve.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([LOCALLAMA, "serve", *args], env=self.server_env,
                                         stdout=log, stderr=subprocess.STDOUT, text=True)
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            if server_answers("127.0.0.1", self.port, timeout=1):
                return
            time.sleep(0.1)
        raise AssertionError(f"serve did not answer in {START_TIMEOUT_S}s: {self.log.read_text()}")

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def served(tmp_path: Path, tiny_gguf: Path) -> Iterator[Served]:
    server = Served(tmp_path, tiny_gguf)
    yield server
    server.kill()


def test_commands_go_through_the_server(served: Served):
    env = served.client_env
    listing = _cli(env, "list")
    assert listing.returncode == 0, listing.stderr
    assert "tiny:latest" in listing.stdout

    ran = _cli(env, "run", "tiny", "hi")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip()

    shown = _cli(env, "ps")
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.strip().splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "PID",
                              "RSS"]
    assert [r.split()[0] for r in rows] == ["tiny:latest"]
    (loaded,) = json.loads(_cli(env, "ps", "--json").stdout)
    assert loaded["name"] == "tiny:latest" and loaded["context_length"] > 0
    assert loaded["kv_cache_type"] == "f16"  # through the server: /api/ps carries it
    # The model runs in a runner of its own: a live process other than the server's,
    # whose resident size is measured.
    runner = psutil.Process(loaded["pid"])
    assert loaded["pid"] != served.proc.pid and runner.is_running()
    assert str(loaded["pid"]) in rows[0] and 1 * MIB < loaded["rss"] < 2 * GIB

    stopped = _cli(env, "stop", "tiny")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(_cli(env, "ps", "--json").stdout) == []

    missing = _cli(env, "stop", "ghost")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        line for line in missing.stderr.strip().splitlines() if line.startswith("Error: ")]

    assert served.stop(signal.SIGTERM) == 0
    assert "Traceback" not in served.log.read_text()


def test_ps_answers_after_a_keep_alive_too_long_to_hold(served: Served):
    """A keep_alive past the longest duration (about 292 years) once loaded the model and
    then ``ps`` failed (a 500 from the server) until the model unloaded."""
    longest = httpx.post(served.url + "/api/generate",
                         json={"model": "tiny", "keep_alive": "2562047h"}, timeout=60)
    too_long = httpx.post(served.url + "/api/generate",
                          json={"model": "tiny", "keep_alive": 1e20}, timeout=60)
    shown = _cli(served.client_env, "ps")
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.strip().splitlines()
    assert [r.split()[0] for r in rows] == ["tiny:latest"]
    assert "Forever" in rows[0].split()  # ~292 years reads as Ollama's "forever"
    assert longest.status_code == 200
    assert too_long.status_code == 400 and "keep_alive" in too_long.json()["error"]
    assert "Traceback" not in served.log.read_text()


def test_a_second_server_on_the_port_fails_in_one_line(served: Served):
    second = _cli(served.server_env, "serve", timeout=STOP_TIMEOUT_S)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "in use" in lines[0], lines
    assert httpx.get(served.url, timeout=5).text == "locallama is running"


def test_ctrl_c_stops_the_server_cleanly(served: Served):
    assert served.stop(signal.SIGINT) == 0
    log = served.log.read_text()
    assert "Traceback" not in log and "Aborted" not in log


# -- get_runtime: the server when one answers, the engine in-process otherwise -----------


class _Greeter(http.server.BaseHTTPRequestHandler):
    greeting = b"Ollama is running"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.greeting)))
        self.end_headers()
        self.wfile.write(self.greeting)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def greeter() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Greeter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_get_runtime_uses_a_server_that_greets(greeter, monkeypatch, tmp_path):
    monkeypatch.setenv("LOCALLAMA_MODELS", str(tmp_path))
    monkeypatch.setenv("LOCALLAMA_HOST", f"127.0.0.1:{greeter.server_address[1]}")
    runtime = get_runtime()
    assert isinstance(runtime, RemoteRuntime)
    runtime.close()


def test_get_runtime_runs_in_process_otherwise(greeter, monkeypatch, tmp_path, closed_port):
    monkeypatch.setenv("LOCALLAMA_MODELS", str(tmp_path))
    monkeypatch.setenv("LOCALLAMA_HOST", f"127.0.0.1:{closed_port}")
    assert isinstance(get_runtime(), LocalRuntime)
    monkeypatch.setattr(_Greeter, "greeting", b"some other web server")
    monkeypatch.setenv("LOCALLAMA_HOST", f"127.0.0.1:{greeter.server_address[1]}")
    assert isinstance(get_runtime(), LocalRuntime)


# -- how ps words things ----------------------------------------------------------------


def test_until_and_columns_read_like_ollama_ps():
    from datetime import UTC, datetime, timedelta

    from locallama.cli.server_cmds import columns, until

    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert until(None, now) == "Forever"
    assert until(now - timedelta(seconds=1), now) == "Stopping..."
    assert until(now + timedelta(seconds=30), now) == "Less than a minute from now"
    assert until(now + timedelta(minutes=4, seconds=30), now) == "4 minutes from now"
    assert until(now + timedelta(minutes=61), now) == "About an hour from now"
    assert columns([("NAME", "ID"), ("a-long-name", "x")]) == "NAME           ID\na-long-name    x"


# -- safe to leave running: exposure warning, body limit, logs -----------------------------


def _serve_until_listening(env: dict[str, str]) -> tuple[subprocess.Popen, list[str]]:
    """Start ``serve`` with stderr piped; the lines up to "is listening"."""
    proc = subprocess.Popen([LOCALLAMA, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "is listening on" in line:
            return proc, lines
    proc.kill()
    raise AssertionError(f"serve did not start: {lines}")


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_bind_others_can_reach_warns_without_an_api_key(tmp_path, host):
    port = free_port()
    env = _env(tmp_path, port, tmp_path / "models")
    env["LOCALLAMA_HOST"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    proc, lines = _serve_until_listening(env)
    try:
        warning = " ".join(lines)
        assert "Warning" in warning and "no API key" in warning, lines
        assert "every model" in warning and "write routes" in warning
        assert "LOCALLAMA_API_KEY=" in warning
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
        proc.stderr.close()


@pytest.mark.parametrize("bind, key", [("0.0.0.0", "sekret"), ("127.0.0.1", "")])
def test_no_warning_with_a_key_or_on_loopback(tmp_path, bind, key):
    port = free_port()
    env = _env(tmp_path, port, tmp_path / "models") | {"LOCALLAMA_HOST": f"{bind}:{port}"}
    if key:
        env["LOCALLAMA_API_KEY"] = key
    proc, lines = _serve_until_listening(env)
    page = proc.stderr.readline().strip()  # the banner's second line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
    proc.stderr.close()
    assert not any("Warning" in line for line in lines), lines
    assert page == f"The chat page: http://127.0.0.1:{port}/ui/"


#: the most a refused 100 MB body may add to the server's resident memory: the
#: 16 MiB LOCALLAMA_MAX_REQUEST_BYTES it reads at most, its copies, and allocator slack
RSS_GROWTH_BOUND = 64 * 1024 * 1024


def test_a_100_mb_body_is_refused_with_413_in_bounded_memory(served: Served):
    import psutil

    process = psutil.Process(served.proc.pid)
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    block = b"x" * (1 << 20)
    head, tail = b'{"model": "tiny", "prompt": "', b'"}'

    def body() -> Iterator[bytes]:  # 100 MiB, never held whole by this test
        yield head
        for _ in range(100):
            yield block
        yield tail

    try:
        chunked = httpx.post(served.url + "/api/generate", content=body(), timeout=60)
        declared = httpx.post(served.url + "/v1/completions", content=body(), timeout=60,
                              headers={"Content-Length": str(len(head) + 100 * len(block)
                                                             + len(tail))})
    finally:
        done.set()
        watcher.join()
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["code"] == "request_too_large"
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"]["code"] == "request_too_large"
    assert peak[0] - baseline < RSS_GROWTH_BOUND, (baseline, peak[0])
    assert httpx.get(served.url + "/api/tags", timeout=5).status_code == 200


def _access_lines(log: str) -> list[dict]:
    records = []
    for line in log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if "route" in record:
                records.append(record)
    return records


def test_json_logs_one_line_per_request_without_prompts(tmp_path, tiny_gguf):
    server = Served(tmp_path, tiny_gguf, "--log-format", "json")
    secret = "the-secret-prompt-7d1f"
    try:
        answer = httpx.post(server.url + "/api/generate", timeout=120, json={
            "model": "tiny", "prompt": secret, "stream": False,
            "options": {"num_predict": 3}})
        assert answer.status_code == 200
        assert httpx.get(server.url + "/api/nope", timeout=5).status_code == 404
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    log = server.log.read_text()
    assert secret not in log
    lines = [line for line in log.splitlines() if line.strip()]
    banner = ("locallama is listening on", "The chat page: ")  # for people, not the log
    assert all(line.startswith("{") for line in lines if not line.startswith(banner)), lines
    records = _access_lines(log)
    generate = [r for r in records if r["path"] == "/api/generate"]
    assert len(generate) == 1
    (entry,) = generate
    assert entry["method"] == "POST" and entry["route"] == "/api/generate"
    assert entry["status"] == 200 and entry["model"] == "tiny:latest"
    assert 0 < entry["duration_s"] < 120
    assert entry["client"].startswith("127.0.0.1:")
    assert entry["bytes_in"] > len(secret) and entry["bytes_out"] > 0
    assert entry["time"].endswith("+00:00")
    (missing,) = [r for r in records if r["path"] == "/api/nope"]
    assert missing["status"] == 404 and missing["route"] == "<unmatched>"
    assert missing["model"] is None


def test_log_prompts_puts_the_prompt_in_the_log(tmp_path, tiny_gguf):
    server = Served(tmp_path, tiny_gguf, "--log-format", "json", "--log-prompts")
    try:
        messages = [{"role": "user", "content": "shared-on-purpose-42"}]
        answer = httpx.post(server.url + "/api/chat", timeout=120, json={
            "model": "tiny", "messages": messages, "stream": False,
            "options": {"num_predict": 2}})
        assert answer.status_code == 200
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    (entry,) = [r for r in _access_lines(server.log.read_text()) if r["path"] == "/api/chat"]
    assert entry["messages"] == messages


def test_text_logs_name_each_request(served: Served):
    httpx.get(served.url + "/api/tags", timeout=5)
    assert served.stop(signal.SIGTERM) == 0
    lines = [line for line in served.log.read_text().splitlines() if '"GET /api/tags"' in line]
    assert len(lines) == 1 and lines[0].startswith("INFO:") and " 200 " in lines[0], lines


def test_sigterm_while_llama_cpp_works_on_a_huge_prompt_stops_cleanly(served: Served):
    """A request can sit in one long llama.cpp call (tokenizing millions of characters)
    that nothing can interrupt.  SIGTERM must still end serve with status 0 soon after
    the graceful period, and must not free the model under that call (llama.cpp then
    aborts: status 134 and a C++ backtrace)."""
    def huge() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(served.url + "/api/generate", timeout=120, json={
                "model": "tiny", "prompt": "\n" * 8_000_000, "raw": True, "stream": False,
                "options": {"num_predict": 1}})

    sender = threading.Thread(target=huge, daemon=True)
    sender.start()
    time.sleep(3)  # the body is in, the model loaded, the prompt being tokenized
    assert sender.is_alive(), "the huge prompt was answered too fast to test anything"
    started = time.monotonic()
    code = served.stop(signal.SIGTERM)
    took = time.monotonic() - started
    log = served.log.read_text()
    assert code == 0, log[-3000:]
    assert "terminate called" not in log and "Aborted" not in log
    assert took < GRACEFUL_SHUTDOWN_S + FORCED_EXIT_AFTER_S + 3, took
