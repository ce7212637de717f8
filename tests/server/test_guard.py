"""The guard in front of both faces: origins, hosts, HEAD, the API key, body limits, and
the error shape of everything the framework itself would answer."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from fakeruntime import FakeRuntime
from liveserver import free_port, serve
from locallama.runtime.local import LocalRuntime
from locallama.server.guard import host_allowed, is_loopback_host
from locallama.settings import Settings

PAGE = "http://localhost:3000"
EVIL = "https://evil.example"


def _store(runtime: LocalRuntime) -> list[tuple[str, str]]:
    return sorted((e.name.display, e.digest) for e in runtime.list())


def _ollama_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "code"} and "detail" not in body
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code


def _openai_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["code"] == code


@pytest.fixture
def fake(tmp_path):
    with serve(FakeRuntime(), tmp=tmp_path) as url:
        yield url


# -- origins -------------------------------------------------------------------------------


@pytest.mark.parametrize("path, body", [
    ("/api/create", '{"model": "made", "from": "tiny"}'),
    ("/api/copy", '{"source": "tiny", "destination": "copied"}'),
    ("/api/pull", '{"model": "gemma3:270m"}'),  # bundled: it would land in the store offline
    ("/api/generate", '{"model": "tiny", "prompt": "Hi", "stream": false}'),
])
def test_a_cross_origin_simple_post_is_refused_before_it_acts(server, path, body):
    before, loaded = _store(server.runtime), server.runtime.ps()
    # What a page on another site can send without a preflight: a text/plain POST.
    response = httpx.post(server.url + path, content=body, timeout=60,
                          headers={"Origin": EVIL, "Content-Type": "text/plain"})
    _ollama_error(response, 403, "forbidden")
    assert "LOCALLAMA_ORIGINS" in response.json()["error"]
    assert "access-control-allow-origin" not in response.headers
    assert _store(server.runtime) == before
    assert [m.name for m in server.runtime.ps()] == [m.name for m in loaded]


def test_the_same_post_without_an_origin_acts(server):
    """The control for the test above: curl and SDKs send no Origin and are served."""
    response = httpx.post(server.url + "/api/copy", content='{"source": "tiny", '
                          '"destination": "copied"}', headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert "copied:latest" in [name for name, _ in _store(server.runtime)]
    server.runtime.delete("copied")


def test_a_local_page_preflight_is_allowed_with_the_sdk_headers(fake):
    asked = "authorization, content-type, x-stainless-os, x-stainless-retry-count"
    for path in ("/api/chat", "/v1/chat/completions", "/anything"):
        response = httpx.options(fake + path, headers={
            "Origin": PAGE, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked})
        assert response.status_code == 204, (path, response.text)
        assert response.headers["access-control-allow-origin"] == PAGE
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = {h.strip().lower() for h in
                   response.headers["access-control-allow-headers"].split(",")}
        assert allowed >= {h.strip() for h in asked.split(",")}
    answer = httpx.post(fake + "/api/generate", json={"model": "fake", "prompt": "Hi",
                                                      "stream": False}, headers={"Origin": PAGE})
    assert answer.status_code == 200 and answer.json()["response"] == "ok"
    assert answer.headers["access-control-allow-origin"] == PAGE


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8080", "https://localhost",
                                    "http://[::1]:5173", "http://0.0.0.0:1", "app://obsidian.md",
                                    "file://", "tauri://localhost", "vscode-webview://abc",
                                    "vscode-file://vscode-app"])
def test_the_default_local_origins_are_allowed(fake, origin):
    response = httpx.get(fake + "/api/tags", headers={"Origin": origin})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin


def test_a_refused_origin_gets_no_preflight_either(fake):
    response = httpx.options(fake + "/api/chat", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST"})
    _ollama_error(response, 403, "forbidden")
    _openai_error(httpx.get(fake + "/v1/models", headers={"Origin": "http://localhost.evil.example"}),
                  403, "forbidden")


def test_locallama_origins_with_a_wildcard_allows_its_origins(tmp_path):
    settings = Settings.from_env({"LOCALLAMA_HOST": f"127.0.0.1:{free_port()}",
                                  "LOCALLAMA_ORIGINS": "https://*.example.com, chrome-extension://*",
                                  "LOCALLAMA_MODELS": str(tmp_path / "models")})
    with serve(FakeRuntime(), settings) as url:
        for origin in ("https://chat.example.com", "chrome-extension://abcdef"):
            preflight = httpx.options(url + "/v1/chat/completions", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == origin
            got = httpx.get(url + "/v1/models", headers={"Origin": origin})
            assert got.status_code == 200 and got.headers["access-control-allow-origin"] == origin
        for origin in ("https://example.com.evil.org", "http://chat.example.com"):
            _ollama_error(httpx.get(url + "/api/tags", headers={"Origin": origin}), 403,
                          "forbidden")


def test_origin_null_is_refused_unless_locallama_origins_lists_it(fake, tmp_path):
    """Browsers send ``Origin: null`` from file:// pages and sandboxed frames."""
    _ollama_error(httpx.get(fake + "/api/tags", headers={"Origin": "null"}), 403, "forbidden")
    settings = Settings.from_env({"LOCALLAMA_HOST": f"127.0.0.1:{free_port()}",
                                  "LOCALLAMA_ORIGINS": "null",
                                  "LOCALLAMA_MODELS": str(tmp_path / "models")})
    with serve(FakeRuntime(), settings) as url:
        preflight = httpx.options(url + "/api/chat", headers={
            "Origin": "null", "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "null"
        got = httpx.get(url + "/api/tags", headers={"Origin": "null"})
        assert got.status_code == 200 and got.headers["access-control-allow-origin"] == "null"
        _ollama_error(httpx.get(url + "/api/tags", headers={"Origin": EVIL}), 403, "forbidden")


def test_a_star_alone_allows_every_origin(tmp_path):
    settings = Settings(port=free_port(), models_dir=tmp_path / "m", allowed_origins=("*",))
    with serve(FakeRuntime(), settings) as url:
        got = httpx.get(url + "/api/tags", headers={"Origin": EVIL})
        assert got.status_code == 200 and got.headers["access-control-allow-origin"] == EVIL


# -- hosts ----------------------------------------------------------------------------------


def test_a_foreign_host_is_refused_on_a_loopback_bind(fake):
    """DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its name."""
    _ollama_error(httpx.get(fake + "/api/tags", headers={"Host": "evil.example"}), 403,
                  "forbidden")
    _ollama_error(httpx.post(fake + "/api/generate", json={"model": "fake", "prompt": "Hi"},
                             headers={"Host": "evil.example:11434"}), 403, "forbidden")
    _openai_error(httpx.get(fake + "/v1/models", headers={"Host": "evil.example"}), 403,
                  "forbidden")
    for host in ("localhost", "localhost:11434", "127.0.0.1:11434", "[::1]:11434",
                 "app.localhost", socket.gethostname()):
        assert httpx.get(fake + "/api/tags", headers={"Host": host}).status_code == 200, host


def test_hosts_are_not_checked_on_a_bind_others_reach(tmp_path):
    settings = Settings(host="0.0.0.0", port=free_port(), models_dir=tmp_path / "m")
    with serve(FakeRuntime(), settings):
        got = httpx.get(f"http://127.0.0.1:{settings.port}/api/tags",
                        headers={"Host": "llm.example.org"})
        assert got.status_code == 200


def test_a_page_served_by_address_may_call_its_own_server_but_a_rebound_name_may_not(tmp_path):
    """On a bind others reach, the page at http://<address>:<port> is the server's own
    origin; a DNS name rebound to that address (Host and Origin both the attacker's
    name) is not, so a page elsewhere cannot use the server by rebinding."""
    settings = Settings(host="0.0.0.0", port=free_port(), models_dir=tmp_path / "m")
    with serve(FakeRuntime(), settings):
        url = f"http://127.0.0.1:{settings.port}/api/copy"
        body = '{"source": "a", "destination": "b"}'
        own = f"192.168.1.20:{settings.port}"
        mine = httpx.get(url.replace("/api/copy", "/api/tags"),
                         headers={"Host": own, "Origin": f"http://{own}"})
        assert mine.status_code == 200
        assert mine.headers["access-control-allow-origin"] == f"http://{own}"
        rebound = f"llm.evil.example:{settings.port}"
        refused = httpx.post(url, content=body, headers={
            "Host": rebound, "Origin": f"http://{rebound}", "Content-Type": "text/plain"})
        _ollama_error(refused, 403, "forbidden")


def test_host_and_bind_rules():
    assert all(map(is_loopback_host, ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "::", "192.168.1.4", "example.org"]))
    assert all(map(host_allowed, ["", "LOCALHOST:1", "127.0.0.2", "[::1]:80", "10.0.0.7:1",
                                  "printer.local", "x.localhost"]))
    assert not any(map(host_allowed, ["evil.example", "127.0.0.1.evil.example",
                                      "[2606:4700::1111]", "8.8.8.8:11434"]))


# -- HEAD and the framework's own errors -----------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/tags", "/api/version", "/v1/models",
                                  "/metrics"])
def test_head_answers_wherever_get_does(fake, path):
    got, head = httpx.get(fake + path), httpx.head(fake + path)
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]


def test_unknown_routes_and_wrong_methods_in_each_face_shape(fake):
    _ollama_error(httpx.get(fake + "/api/nope"), 404, "route_not_found")
    _ollama_error(httpx.post(fake + "/nope", json={}), 404, "route_not_found")
    _openai_error(httpx.get(fake + "/v1/nope"), 404, "route_not_found")
    wrong = httpx.get(fake + "/api/generate")
    _ollama_error(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    _ollama_error(httpx.delete(fake + "/api/tags"), 405, "method_not_allowed")
    _openai_error(httpx.get(fake + "/v1/chat/completions"), 405, "method_not_allowed")
    _openai_error(httpx.put(fake + "/v1/models"), 405, "method_not_allowed")


def test_a_body_that_is_not_utf8_json_is_a_400_in_each_face_shape(fake):
    broken = b'{"model": "fake", "prompt": "\xc3\x28\xff"}'
    _ollama_error(httpx.post(fake + "/api/generate", content=broken), 400, "invalid_request")
    _ollama_error(httpx.post(fake + "/api/chat", content=b"not json"), 400, "invalid_request")
    response = httpx.post(fake + "/v1/chat/completions", content=broken,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and set(response.json()["error"]) == {
        "message", "type", "param", "code"}


def test_an_unexpected_fault_is_a_500_in_the_face_shape(tmp_path):
    class Broken(FakeRuntime):
        def list(self):
            raise RuntimeError("disk on fire")

    with serve(Broken(), tmp=tmp_path) as url:
        _ollama_error(httpx.get(url + "/api/tags"), 500, "error")
        _openai_error(httpx.get(url + "/v1/models"), 500, "error")


# -- the API key ---------------------------------------------------------------------------


def test_the_api_key_guards_everything_but_the_probes(tmp_path):
    with serve(FakeRuntime(), api_key="sekret", tmp=tmp_path) as url:
        for method, path in (("GET", "/"), ("HEAD", "/"), ("GET", "/api/version"),
                             ("HEAD", "/api/version")):
            assert httpx.request(method, url + path).status_code == 200, (method, path)
        preflight = httpx.options(url + "/v1/chat/completions", headers={
            "Origin": PAGE, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 204
        for path in ("/api/tags", "/metrics", "/api/nope"):
            refused = httpx.get(url + path)
            _ollama_error(refused, 401, "invalid_api_key")
            assert refused.headers["www-authenticate"] == "Bearer"
        _openai_error(httpx.get(url + "/v1/models"), 401, "invalid_api_key")
        _openai_error(httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}),
                      401, "invalid_api_key")
        _ollama_error(httpx.post(url + "/api/version", headers={"Authorization": "Basic x"}),
                      401, "invalid_api_key")
        key = {"Authorization": "Bearer sekret"}
        for path in ("/api/tags", "/v1/models", "/metrics"):
            assert httpx.get(url + path, headers=key).status_code == 200, path


# -- body limits ---------------------------------------------------------------------------


def _limited(tmp_path: Path, **limits: int) -> Settings:
    return Settings(port=free_port(), models_dir=tmp_path / "models",
                    history_file=tmp_path / "history", **limits)


def test_a_body_over_the_limit_is_a_413_in_each_face_shape(tmp_path):
    with serve(FakeRuntime(), _limited(tmp_path, max_request_bytes=4096)) as url:
        big = {"model": "fake", "prompt": "x" * 5000, "stream": False}
        _ollama_error(httpx.post(url + "/api/generate", json=big), 413, "request_too_large")
        _openai_error(httpx.post(url + "/v1/completions", json=big), 413, "request_too_large")

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"model": "fake", "prompt": "'
            for _ in range(8):
                yield b"x" * 1024
            yield b'"}'

        _ollama_error(httpx.post(url + "/api/generate", content=chunks()), 413,
                      "request_too_large")
        small = {"model": "fake", "prompt": "x" * 3000, "stream": False}
        assert httpx.post(url + "/api/generate", json=small).status_code == 200


def test_blob_uploads_have_their_own_limit(tmp_path):
    runtime = LocalRuntime(_limited(tmp_path, max_request_bytes=1024, max_blob_bytes=64 * 1024))
    data = os.urandom(32 * 1024)  # over the JSON limit, under the blob limit
    import hashlib
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    too_big = os.urandom(100 * 1024)
    big_digest = "sha256:" + hashlib.sha256(too_big).hexdigest()
    with serve(runtime, runtime.settings) as url:
        assert httpx.post(f"{url}/api/blobs/{digest}", content=data).status_code == 201

        def stream():
            for i in range(0, len(too_big), 8192):
                yield too_big[i:i + 8192]

        _ollama_error(httpx.post(f"{url}/api/blobs/{big_digest}", content=stream()), 413,
                      "request_too_large")
        assert httpx.head(f"{url}/api/blobs/{big_digest}").status_code == 404
    blobs = runtime.settings.models_dir / "blobs"
    assert sorted(p.name for p in blobs.iterdir()) == [digest.replace(":", "-")]
    runtime.close()
