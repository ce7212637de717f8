"""Bounded work per request, through HTTP: a hostile chat template is stopped at its
limit, stalls nobody, dies with its client and with the server; a full queue
answers 503 with Retry-After at once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import ollama
import psutil
import pytest

from liveserver import free_port, serve
from runtimes import local_runtime
from tinymodel import write_tiny_gguf

LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
HELLO = [{"role": "user", "content": "Hello"}]
LOCALLAMA = str(Path(sys.executable).with_name("locallama"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[tuple]:
    """A live server with ``tiny`` and ``loop`` (tiny with a template that never ends);
    templates may take 1 s."""
    runtime = local_runtime(tmp_path_factory.mktemp("bounded"), ("tiny", tiny_gguf),
                            host="127.0.0.1", port=free_port(), template_timeout=1.0)
    with serve(runtime, runtime.settings) as url:
        created = httpx.post(url + "/api/create", timeout=60, json={
            "model": "loop", "from": "tiny", "template": LOOP, "stream": False})
        assert created.status_code == 200, created.text
        yield runtime, url
    runtime.close()


def wait_for(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def raw_request(url: str, path: str, body: dict) -> socket.socket:
    """Send a POST and return the open socket, without reading the answer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    data = json.dumps(body).encode()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def test_a_looping_template_stops_at_its_limit_in_both_faces(hostile):
    runtime, url = hostile
    started = time.monotonic()
    ollama_answer = httpx.post(url + "/api/chat", timeout=30, json={
        "model": "loop", "messages": HELLO, "stream": False})
    openai_answer = httpx.post(url + "/v1/chat/completions", timeout=30, json={
        "model": "loop", "messages": HELLO, "stream": True})
    assert time.monotonic() - started < 10  # two renders of at most 1 s each
    message = ("model 'loop:latest': chat template ran past its 1 s time limit "
               "(LOCALLAMA_TEMPLATE_TIMEOUT)")
    assert ollama_answer.status_code == 400 and ollama_answer.json()["error"] == message
    assert openai_answer.status_code == 400
    assert openai_answer.json()["error"]["message"] == message
    assert runtime.renderer.busy() == 0
    # The server and the model are fine: the same weights with their own template answer.
    ok = httpx.post(url + "/api/chat", timeout=30, json={
        "model": "tiny", "messages": HELLO, "stream": False, "options": {"num_predict": 2}})
    assert ok.status_code == 200 and ok.json()["done"]


@pytest.mark.parametrize(("path", "stream"), [
    ("/api/chat", False), ("/api/chat", True),
    ("/v1/chat/completions", False), ("/v1/chat/completions", True)])
def test_others_are_answered_during_a_hostile_render_and_leaving_stops_it(
        hostile, monkeypatch, path, stream):
    runtime, url = hostile
    monkeypatch.setattr(runtime.renderer, "timeout", 120.0)
    sock = raw_request(url, path, {"model": "loop", "messages": HELLO, "stream": stream})
    try:
        assert wait_for(lambda: runtime.renderer.busy() == 1)
        time.sleep(0.3)  # well into the render
        for method, route, body in (("GET", "/api/tags", None),
                                    ("POST", "/api/show", {"model": "loop"}),
                                    ("GET", "/v1/models", None)):
            started = time.monotonic()
            answer = httpx.request(method, url + route, json=body, timeout=10)
            assert answer.status_code == 200
            assert time.monotonic() - started < 1, route
        assert runtime.renderer.busy() == 1
    finally:
        sock.close()  # the client leaves
    left = time.monotonic()
    assert wait_for(lambda: runtime.renderer.busy() == 0, 5), "the render outlived its client"
    assert time.monotonic() - left < 3
    assert len(runtime.renderer.pids()) <= runtime.renderer.workers


# -- hostile templates at create time and per request ----------------------------------

UNCLOSED = "{{ .Prompt }}" + "{{" * 30000  # once quadratic to translate
HUGE = "{% if a %}x{% endif %}" * 200000  # 4.4 MB: seconds and gigabytes to compile
NESTED = ["{{" + "(" * 2000 + "1" + ")" * 2000 + "}}", "{% if a %}" * 3000 + "{% endif %}" * 3000]


def template_request(url: str, route: str, name: str, template: str) -> httpx.Response:
    """POST ``template`` to /api/create (as model ``name``, from tiny) or /api/generate."""
    if route == "/api/create":
        body = {"model": name, "from": "tiny", "template": template, "stream": False}
    else:
        body = {"model": "tiny", "prompt": "Hi", "template": template, "stream": False,
                "options": {"num_predict": 1}}
    return httpx.post(url + route, timeout=120, json=body)


@pytest.mark.parametrize("route", ["/api/create", "/api/generate"])
def test_a_go_template_of_unclosed_actions_is_refused_at_once_and_stalls_nobody(hostile, route):
    runtime, url = hostile
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = pool.submit(template_request, url, route, "evil", UNCLOSED)
        for _ in range(5):
            asked = time.monotonic()
            assert httpx.get(url + "/api/version", timeout=10).status_code == 200
            assert time.monotonic() - asked < 1
        refused = answer.result()
    assert time.monotonic() - started < 2
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "invalid_template"
    assert "unclosed action" in refused.json()["error"]
    assert not runtime.store.exists("evil")


@pytest.mark.parametrize("route", ["/api/create", "/api/generate"])
def test_a_template_too_big_to_compile_stops_at_its_limit_outside_the_server(hostile, route):
    runtime, url = hostile
    server = psutil.Process()  # the test server runs in this process
    before = server.memory_info().rss
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = pool.submit(template_request, url, route, "huge", HUGE)
        assert wait_for(lambda: runtime.renderer.busy() == 1 or answer.done())
        asked = time.monotonic()
        assert httpx.get(url + "/api/version", timeout=10).status_code == 200
        assert time.monotonic() - asked < 1
        refused = answer.result()
    assert time.monotonic() - started < 10  # the limit is 1 s; compiling here took 20 s
    assert server.memory_info().rss - before < 64 * 1024 * 1024  # and 2 GB
    name = "huge:latest" if route == "/api/create" else "tiny:latest"
    assert refused.status_code == 400, refused.text
    assert refused.json() == {
        "error": f"model '{name}': chat template ran past its 1 s time limit "
                 "(LOCALLAMA_TEMPLATE_TIMEOUT)",
        "code": "template_limit_exceeded"}
    assert not runtime.store.exists("huge")


@pytest.mark.parametrize("route", ["/api/create", "/api/generate"])
@pytest.mark.parametrize("template", NESTED, ids=["parentheses", "blocks"])
def test_a_deeply_nested_template_is_an_invalid_template(hostile, route, template):
    runtime, url = hostile
    refused = template_request(url, route, "deep", template)
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"error": "chat template does not compile: it is nested too deeply",
                              "code": "invalid_template"}
    assert not runtime.store.exists("deep")


def test_a_broken_template_is_refused_by_create_in_one_line(hostile):
    runtime, url = hostile
    refused = template_request(url, "/api/create", "broken", "{% for %}")
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_template"
    assert refused.json()["error"].startswith("chat template does not compile: ")
    assert "\n" not in refused.json()["error"]
    assert template_request(url, "/api/create", "fine", "<{{ .Prompt }}>").status_code == 200
    assert runtime.store.exists("fine")


# -- the queue bound -------------------------------------------------------------------


@pytest.fixture
def queued(tmp_path: Path) -> Iterator[tuple]:
    """One sequence per model and room for one waiting request."""
    long = write_tiny_gguf(tmp_path / "long.gguf", n_ctx_train=16384)
    runtime = local_runtime(tmp_path, ("long", long, "PARAMETER num_ctx 16384\n"),
                            host="127.0.0.1", port=free_port(), num_parallel=1, max_queue=1)
    with serve(runtime, runtime.settings) as url:
        yield runtime, url
    runtime.close()


def test_past_max_queue_a_request_gets_503_with_retry_after(queued):
    runtime, url = queued
    client = ollama.Client(host=url, timeout=60)
    assert client.generate(model="long", prompt="Hi", options={"num_predict": 1}).done
    [entry] = runtime.loader.entries()
    scheduler = entry.model.scheduler
    with httpx.stream("POST", url + "/api/generate", timeout=60, json={
            "model": "long", "prompt": "Tell me everything",
            # greedy: this model samples its end-of-text within a few hundred tokens at
            # the default temperature, and the first request must hold the sequence;
            # greedily it writes 11,236 tokens first, far more than the buffers hold
            "options": {"num_predict": 100_000, "temperature": 0}}) as first:
        lines = first.iter_lines()
        assert not json.loads(next(lines))["done"]
        assert scheduler.active() == 1
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(client.generate, model="long", prompt="And you?",
                                  options={"num_predict": 3})
            assert wait_for(lambda: scheduler.waiting() == 1)
            started = time.monotonic()
            refused = [
                httpx.post(url + "/api/generate", timeout=10, json={
                    "model": "long", "prompt": "Me too", "stream": False}),
                httpx.post(url + "/api/chat", timeout=10, json={
                    "model": "long", "messages": HELLO}),
                httpx.post(url + "/v1/completions", timeout=10, json={
                    "model": "long", "prompt": "Me too"}),
                httpx.post(url + "/v1/chat/completions", timeout=10, json={
                    "model": "long", "messages": HELLO, "stream": True}),
            ]
            assert time.monotonic() - started < 5  # at once, not after the queue moved
            for answer in refused:
                assert answer.status_code == 503, answer.text
                assert int(answer.headers["Retry-After"]) >= 1
            ollama_error = refused[0].json()["error"]
            assert "LOCALLAMA_MAX_QUEUE=1" in ollama_error and "long:latest" in ollama_error
            assert refused[1].json()["error"] == ollama_error
            assert refused[2].json()["error"]["message"] == ollama_error
            assert refused[2].json()["error"]["type"] == "server_error"
            assert not waiting.done()
            first.close()  # the first client leaves: the waiting request runs and ends
            answer = waiting.result(timeout=60)
    assert answer.done and answer.eval_count >= 1
    assert client.generate(model="long", prompt="Now?", options={"num_predict": 1}).done


# -- a real ``locallama serve`` --------------------------------------------------------


def test_serve_answers_during_a_hostile_render_and_stops_on_sigterm(tmp_path, tiny_gguf):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAMA_")}
    env.update(LOCALLAMA_HOST=f"127.0.0.1:{port}", LOCALLAMA_MODELS=str(tmp_path / "models"),
               LOCALLAMA_HOME=str(tmp_path / "home"), LOCALLAMA_TEMPLATE_TIMEOUT="300")
    (tmp_path / "Modelfile").write_text(f'FROM {tiny_gguf}\nTEMPLATE """{LOOP}"""\n')
    created = subprocess.run([LOCALLAMA, "create", "loop", "-f", str(tmp_path / "Modelfile")],
                             env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([LOCALLAMA, "serve"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: _answers(url), 30), log.read_text()
        pending = threading.Thread(target=lambda: _quietly(lambda: httpx.post(
            url + "/api/chat", timeout=60, json={"model": "loop", "messages": HELLO})),
            daemon=True)
        pending.start()

        def renderers() -> list[psutil.Process]:
            return [c for c in psutil.Process(proc.pid).children(recursive=True)
                    if "locallama.engine.render" in " ".join(c.cmdline())]

        assert wait_for(lambda: any(p.cpu_times().user > 0.3 for p in renderers()), 30)
        workers = renderers()
        started = time.monotonic()
        assert httpx.get(url + "/api/tags", timeout=10).status_code == 200
        assert time.monotonic() - started < 1
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert time.monotonic() - stopping < 5, log.read_text()
        assert wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                        for p in workers), 5), "a renderer outlived serve"
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _quietly(call) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()
