"""``pull --insecure``: a registry that speaks plain HTTP (Ollama's flag, and its
/api/pull ``insecure`` field). Without it a named registry is reached over HTTPS.

The fake registry answers plain HTTP on 127.0.0.1; here a non-loopback name,
``registry.test``, resolves to it, so the scheme is the only thing that differs."""

from __future__ import annotations

import socket

import ollama
import pytest

from fakeregistry import model_digest
from liveserver import serve
from locallama.errors import PullError
from locallama.store.names import parse_name
from locallama.store.registry import registry_url

HOST = "registry.test"


@pytest.fixture
def plain_http_registry(registry, monkeypatch):
    """``registry.test:PORT/library/tiny`` names the fake (plain-HTTP) registry."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        return real("127.0.0.1" if host == HOST else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = registry.url.rsplit(":", 1)[1]
    return f"{HOST}:{port}/library/tiny:latest"


def test_the_scheme_follows_insecure_and_loopback():
    name = parse_name("registry.test:5000/library/tiny")
    assert registry_url(name, "https://registry.ollama.ai") == "https://registry.test:5000"
    assert registry_url(name, "https://registry.ollama.ai", insecure=True) == (
        "http://registry.test:5000")
    local = parse_name("127.0.0.1:5000/library/tiny")
    assert registry_url(local, "x").startswith("http://")
    # Ollama's own host keeps the configured registry either way
    assert registry_url(parse_name("tiny"), "https://r.example/", True) == "https://r.example"


def test_a_plain_http_registry_needs_insecure(runtime, plain_http_registry):
    with pytest.raises(PullError, match="https://registry.test"):
        runtime.pull(plain_http_registry)
    assert not runtime.store.exists(plain_http_registry)
    runtime.pull(plain_http_registry, insecure=True)
    assert runtime.store.exists(plain_http_registry)


def test_api_pull_insecure_from_the_ollama_client(runtime, registry, tiny_gguf,
                                                  plain_http_registry):
    with serve(runtime) as url:
        client = ollama.Client(host=url)
        with pytest.raises(ollama.ResponseError):
            client.pull(plain_http_registry)
        events = list(client.pull(plain_http_registry, insecure=True, stream=True))
    assert events[-1].status == "success"
    assert any(e.digest == model_digest(registry, tiny_gguf) for e in events)
    assert runtime.store.exists(plain_http_registry)


def test_the_remote_runtime_sends_insecure(runtime, plain_http_registry):
    from locallama.client import RemoteRuntime
    from locallama.settings import Settings

    with serve(runtime) as url:
        remote = RemoteRuntime(Settings(host="127.0.0.1", port=int(url.rsplit(":", 1)[1])))
        try:
            remote.pull(plain_http_registry, insecure=True)
        finally:
            remote.close()
    assert runtime.store.exists(plain_http_registry)
