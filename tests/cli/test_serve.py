"""``locallama serve`` as a user runs it, and the other commands going through it."""

from __future__ import annotations

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
import pytest

from liveserver import free_port
from locallama.cli.common import get_runtime, server_answers
from locallama.client import RemoteRuntime
from locallama.runtime.local import LocalRuntime

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

    def __init__(self, tmp_path: Path, tiny_gguf: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_env = _env(tmp_path, self.port, tmp_path / "models")
        # The clients' own store is empty: whatever they see came from the server.
        self.client_env = _env(tmp_path, self.port, tmp_path / "empty")
        modelfile = tmp_path / "Modelfile"
        modelfile.write_text(f"FROM {tiny_gguf}\nPARAMETER num_predict 8\n")
        created = _cli(self.server_env, "create", "tiny", "-f", str(modelfile))
        assert created.returncode == 0, created.stderr
        self.log = tmp_path / "serve.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([LOCALLAMA, "serve"], env=self.server_env,
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
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert [r.split()[0] for r in rows] == ["tiny:latest"]
    (loaded,) = json.loads(_cli(env, "ps", "--json").stdout)
    assert loaded["name"] == "tiny:latest" and loaded["context_length"] > 0

    stopped = _cli(env, "stop", "tiny")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(_cli(env, "ps", "--json").stdout) == []

    missing = _cli(env, "stop", "ghost")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        line for line in missing.stderr.strip().splitlines() if line.startswith("Error: ")]

    assert served.stop(signal.SIGTERM) == 0
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


def test_get_runtime_runs_in_process_otherwise(greeter, monkeypatch, tmp_path):
    monkeypatch.setenv("LOCALLAMA_MODELS", str(tmp_path))
    monkeypatch.setenv("LOCALLAMA_HOST", f"127.0.0.1:{free_port()}")
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
