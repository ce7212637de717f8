"""Bodies are JSON whatever the Content-Type says, on both faces, as Ollama reads them
(``curl -d`` sends application/x-www-form-urlencoded; some clients send text/plain or
nothing). A /v1 POST without a JSON Content-Type was refused with a message about
missing fields (issue 15)."""

from __future__ import annotations

import json

import httpx
import pytest

CHAT = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
KINDS = ["application/x-www-form-urlencoded", "text/plain", None]


def post(url: str, body: bytes, kind: str | None) -> httpx.Response:
    headers = {"content-type": kind} if kind else {}
    request = httpx.Request("POST", url, content=body, headers=headers)
    assert request.headers.get("content-type") == kind  # None: no Content-Type at all
    with httpx.Client(timeout=60) as client:
        return client.send(request)


@pytest.mark.parametrize("kind", KINDS)
def test_v1_reads_the_body_as_json_whatever_the_content_type(server, kind):
    r = post(server.url + "/v1/chat/completions", json.dumps(CHAT).encode(), kind)
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion"
    r = post(server.url + "/v1/embeddings",
             json.dumps({"model": "tiny", "input": "hello"}).encode(), kind)
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_the_ollama_face_reads_it_too(server, kind):
    r = post(server.url + "/api/generate", json.dumps(
        {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    ).encode(), kind)
    assert r.status_code == 200, r.text
    assert r.json()["done"] is True


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_is_the_usual_400(server, kind):
    usual = post(server.url + "/v1/chat/completions", b"model=tiny&x=1", "application/json")
    r = post(server.url + "/v1/chat/completions", b"model=tiny&x=1", kind)
    assert r.status_code == usual.status_code == 400
    assert r.json() == usual.json()
    assert "json" in r.json()["error"]["message"].lower()
