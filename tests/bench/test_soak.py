"""bench/soak.py judges answers correctly: its hostile probes count as refused only
when a server answers as issue 12 documents, its well-formed requests pass against
the real server, and its verdict fails on each documented condition."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from liveserver import free_port, serve
from runtimes import local_runtime

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import soak  # noqa: E402
import soak_probes  # noqa: E402

LIMIT = 16 << 20


def hardened_app(lax: bool) -> Any:
    """An ASGI app answering the probes as issue 12 documents (``lax``: as a server
    without the checks would: 200 for anything, FastAPI's bare 404/405 bodies)."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        openai = scope["path"].startswith("/v1")

        async def answer(status: int, message: str, code: str) -> None:
            error: Any = {"message": message, "type": "x", "param": None, "code": code} \
                if openai else message
            body = {"error": error} if openai else {"error": error, "code": code}
            if lax:
                body = {"detail": message} if status in (404, 405) else {}
                status = status if status in (404, 405) else 200
            data = json.dumps(body).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})

        if headers.get("origin") == soak_probes.EVIL_ORIGIN or \
                headers.get("host") == soak_probes.EVIL_HOST:
            return await answer(403, "forbidden", "forbidden")
        if int(headers.get("content-length", "0")) > LIMIT:  # refused before reading
            return await answer(413, "too large", "request_too_large")
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > LIMIT:  # chunked: refused mid-body
                return await answer(413, "too large", "request_too_large")
            if not message.get("more_body"):
                break
        if b"soak-hostile" in body:
            return await answer(400, "template too slow", "template_limit_exceeded")
        try:
            json.loads(body or b"{}")
        except ValueError:
            return await answer(400, "bad JSON", "invalid_json")
        if scope["method"] == "GET" and scope["path"] in ("/api/chat", "/v1/chat/completions"):
            return await answer(405, "wrong method", "method_not_allowed")
        return await answer(404, "no such route", "route_not_found")

    return app


@pytest.fixture(params=[False, True], ids=["hardened", "lax"])
def fake(request: pytest.FixtureRequest) -> Iterator[tuple[int, bool]]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(hardened_app(request.param), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port, request.param
    server.should_exit = True
    thread.join(timeout=10)


def test_probes_count_as_refused_only_with_the_documented_answer(fake: tuple[int, bool]):
    port, lax = fake
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        outcomes = {kind: soak_probes.send_probe(http, port, "m", probe)[0]
                    for kind, probe in soak_probes.probes("m").items()}
    expected = {kind: probe.expected for kind, probe in soak_probes.probes("m").items()}
    if not lax:
        assert outcomes == expected
    else:  # a 20 MB body read in full and answered 200; bare FastAPI 404/405 bodies
        assert outcomes["big_body"] == outcomes["big_body_chunked"] == "200"
        assert outcomes["route_openai"] == "404 (not the openai error shape)"
        assert outcomes["method_ollama"] == "405 (not the ollama error shape)"
        assert all(outcomes[k] != expected[k] for k in expected)


def test_a_refusal_with_the_wrong_code_is_not_the_documented_one():
    body = {"error": "chat template error: boom", "code": "invalid_template"}
    assert soak_probes.label(400, body, "ollama", "template_limit_exceeded") == \
        "400 code=invalid_template"
    assert soak_probes.label(400, {**body, "code": "template_limit_exceeded"}, "ollama",
                      "template_limit_exceeded") == "400"


def test_every_well_formed_kind_passes_against_the_real_server(tmp_path: Path,
                                                               tiny_gguf: Path):
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf), host="127.0.0.1", port=free_port())
    results = soak.Results()
    try:
        with serve(runtime, runtime.settings) as url, \
                httpx.Client(base_url=url, timeout=60) as http:
            mix = soak.Mix("tiny:latest", soak.random.Random(0))
            for kind in soak.KINDS:
                soak.run_kind(kind, mix, http, results)
            # and a wrong model is an error, not a pass
            soak.run_kind("api/chat", soak.Mix("missing", soak.random.Random(0)), http,
                          results)
    finally:
        runtime.close()
    errors = {k: s.samples for k, s in results.kinds.items() if s.errors}
    assert list(errors) == ["api/chat"] and "HTTP 404" in errors["api/chat"][0]
    assert results.kinds["api/chat"].count == 2


def summary(**changes: Any) -> dict[str, Any]:
    results = soak.Results()
    results.add("api/chat", 0.1, changes.pop("error", None))
    results.add_hostile("host_ollama", "403", 0.01, (changes.pop("hostile", "403"), ""))
    store = {"tags": [("tiny:latest", "d1")], "manifests": {"m": "h"}}
    args: dict[str, Any] = {"results": results, "elapsed": 10.0, "start": (100, 2),
                            "peak": (120, 3), "end": (105, 2), "idle_cpu": 0.0,
                            "before": store, "after": store, "alive": True, "tracebacks": 0}
    return soak._summary(**{**args, **changes})


def test_the_verdict_fails_on_each_documented_condition():
    assert summary()["passed"]
    copied = {"tags": [("tiny:latest", "d1"), ("soak-copied-cross-origin:latest", "d1")],
              "manifests": {"m": "h", "n": "h"}}
    for change, why in ((dict(error="HTTP 503"), "api/chat: 1 of 1"),
                        (dict(hostile="200"), "host_ollama: 1 of 1 not refused"),
                        (dict(end=(111, 2)), "RSS grew 1.11x"),
                        (dict(idle_cpu=0.9), "still used 0.90 cores"),
                        (dict(after=copied), "added ['soak-copied-cross-origin:latest']"),
                        (dict(alive=False, after=None), "the server died")):
        report = summary(**change)
        assert not report["passed"] and why in report["failures"][0], (change, report)
