"""The Ollama face through the official ``ollama`` client, unmodified, and raw HTTP.

Most tests run against the live server over the tiny random-weight model, so they
check plumbing and shapes, never content.  A few use a scripted Runtime (``fake``)
for what the tiny model cannot show: tool calls, an error in the middle of a
stream, and exactly what reaches the Runtime.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import ollama
import pytest

from fakeruntime import FakeRuntime
from liveserver import serve
from locallama import __version__
from locallama.runtime.types import ChatRequest, Chunk, GenerateRequest, Message, ToolCall
from tinymodel import write_tiny_gguf

FEW = {"num_predict": 4, "temperature": 0}
HELLO = [{"role": "user", "content": "Hello there"}]
IMAGE = base64.b64encode(b"\x89PNG\r\n\x1a\n not really an image").decode()


@pytest.fixture(scope="module")
def client(server) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=60)


def post(server, path: str, body: object, method: str = "POST") -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, timeout=60)


def still_serves(client: ollama.Client) -> None:
    assert client.generate(model="tiny", prompt="Hi", options=FEW).done


def created(value: str | datetime) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    assert when.tzinfo is not None
    return when


# -- generate ------------------------------------------------------------------------------


def test_generate_answers_in_one_object(client):
    r = client.generate(model="tiny", prompt="Why is the sky blue?", options=FEW)
    assert r.model == "tiny" and r.done and r.done_reason in ("stop", "length")
    assert isinstance(r.response, str) and 0 < r.eval_count <= 4
    assert r.prompt_eval_count >= 1 and r.context and all(isinstance(t, int) for t in r.context)
    for field in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(r[field], int) and r[field] >= 0
    assert r.total_duration >= r.eval_duration
    created(r.created_at)


def test_generate_streams_ndjson_lines(client, server):
    parts = list(client.generate(model="tiny", prompt="Tell me a story", options=FEW,
                                 stream=True))
    *pieces, last = parts
    assert pieces and all(not p.done and p.done_reason is None for p in pieces)
    assert last.done and last.response == "" and last.eval_count <= 4 and last.context
    assert all(p.model == "tiny" for p in parts)

    with httpx.stream("POST", server.url + "/api/generate", json={
            "model": "tiny", "prompt": "Hi", "options": FEW}) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert set(lines[0]) == {"model", "created_at", "response", "done"}
    assert {"done_reason", "context", "total_duration", "load_duration", "prompt_eval_count",
            "prompt_eval_duration", "eval_count", "eval_duration"} <= set(lines[-1])


def test_raw_generate_has_no_context(client):
    r = client.generate(model="tiny", prompt="<|im_start|>user\nHi", raw=True, options=FEW)
    assert r.done and r.context is None


def test_system_template_and_context_are_accepted(client):
    first = client.generate(model="tiny", prompt="Hi", system="Be brief.", options=FEW)
    again = client.generate(model="tiny", prompt="And?", context=first.context, options=FEW,
                            template="{{ .System }} {{ .Prompt }}")
    assert again.done and len(again.context) > len(first.context)


def test_an_empty_prompt_loads_and_keep_alive_0_unloads(client):
    r = client.generate(model="tiny", prompt="")
    assert r.done and r.done_reason == "load" and r.response == ""
    assert "tiny:latest" in [m.model for m in client.ps().models]
    r = client.generate(model="tiny", keep_alive=0)
    assert r.done and r.done_reason == "unload"
    assert "tiny:latest" not in [m.model for m in client.ps().models]
    r = client.chat(model="tiny", messages=[], keep_alive="10m")
    assert r.done_reason == "load" and r.message.role == "assistant"
    assert client.chat(model="tiny", messages=[], keep_alive="0s").done_reason == "unload"
    still_serves(client)


def test_logprobs_come_in_ollama_shape(client):
    r = client.generate(model="tiny", prompt="Hi", options=FEW, logprobs=True, top_logprobs=2)
    assert len(r.logprobs) == r.eval_count
    for entry in r.logprobs:
        assert isinstance(entry.token, str) and entry.logprob <= 0
        assert len(entry.top_logprobs) == 2
    parts = list(client.chat(model="tiny", messages=HELLO, options=FEW, logprobs=True,
                             stream=True))
    assert sum(len(p.logprobs or ()) for p in parts) == parts[-1].eval_count
    assert client.generate(model="tiny", prompt="Hi", options=FEW).logprobs is None


def test_echo_scores_the_prompt_too(server):
    """A locallama addition (what OpenAI's completions need): prompt_logprobs."""
    r = post(server, "/api/generate", {"model": "tiny", "prompt": "Hi there", "raw": True,
                                       "echo": True, "logprobs": True, "stream": False,
                                       "options": FEW}).json()
    first, *rest = r["prompt_logprobs"]
    assert first["logprob"] is None and rest and all(t["logprob"] <= 0 for t in rest)
    assert r["prompt_tokens"] == len(r["prompt_logprobs"])


def test_json_format_and_schema_constrain_the_answer(client):
    r = client.generate(model="tiny", prompt="JSON please", format="json",
                        options={"num_predict": 24, "temperature": 0})
    assert r.response.lstrip()[:1] in tuple('{["-0123456789tfn')  # a JSON value begins
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    r = client.chat(model="tiny", messages=HELLO, format=schema,
                    options={"num_predict": 48, "temperature": 0})
    assert r.message.content.startswith("{")
    if r.done_reason == "stop":
        assert isinstance(json.loads(r.message.content)["n"], int)


# -- chat ----------------------------------------------------------------------------------


def test_chat_answers_in_one_object(client):
    r = client.chat(model="tiny", messages=[{"role": "system", "content": "Be brief."}, *HELLO],
                    options=FEW)
    assert r.done and r.message.role == "assistant" and isinstance(r.message.content, str)
    assert 0 < r.eval_count <= 4 and r.prompt_eval_count >= 1 and r.message.tool_calls is None
    created(r.created_at)


def test_chat_streams(client):
    messages = [*HELLO, {"role": "assistant", "content": "Hi!"},
                {"role": "user", "content": "How are you?"}]
    *pieces, last = client.chat(model="tiny", messages=messages, options=FEW, stream=True)
    assert pieces and all(not p.done and p.message.role == "assistant" for p in pieces)
    assert last.done and last.done_reason in ("stop", "length") and last.eval_count <= 4


def test_tools_for_a_model_without_tool_support_are_refused(client):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="tiny", messages=HELLO, tools=[tool], options=FEW)
    assert info.value.status_code == 400 and "tools" in info.value.error


# -- embeddings ----------------------------------------------------------------------------


def test_embed(client):
    r = client.embed(model="tiny", input=["first text", "second text"])
    assert r.model == "tiny" and len(r.embeddings) == 2 and len(r.embeddings[0]) == 64
    assert r.prompt_eval_count >= 2 and r.total_duration >= 0
    assert len(client.embed(model="tiny", input="one").embeddings) == 1
    assert client.embed(model="tiny", input=[]).embeddings == []


def test_legacy_embeddings(client):
    assert len(client.embeddings(model="tiny", prompt="some text").embedding) == 64
    assert client.embeddings(model="tiny", prompt="").embedding == []


# -- models --------------------------------------------------------------------------------


def test_list_shows_details(client):
    [tiny] = [m for m in client.list().models if m.model == "tiny:latest"]
    assert len(tiny.digest) == 64 and tiny.size > 0 and created(tiny.modified_at)
    assert tiny.details.format == "gguf" and tiny.details.family == "llama"
    assert tiny.details.families == ["llama"] and tiny.details.parameter_size
    assert tiny.details.quantization_level == "F32"


def test_show(client, server):
    r = client.show("tiny")
    assert "FROM " in r.modelfile and r.details.family == "llama"
    assert r.capabilities == ["completion"] and created(r.modified_at)
    assert r.modelinfo["general.architecture"] == "llama"
    assert r.modelinfo["tokenizer.ggml.tokens"] == []  # arrays only with verbose
    assert r.modelinfo["general.parameter_count"] > 0
    raw = post(server, "/api/show", {"name": "tiny", "verbose": True}).json()  # older field
    assert raw["details"]["format"] == "gguf"


def test_create_from_a_model_with_system_and_parameters(client):
    statuses = [p.status for p in client.create(
        model="tiny-brief", from_="tiny", system="Be brief.",
        parameters={"temperature": 0.5, "stop": ["END", "STOP"]}, stream=True)]
    assert statuses[-1] == "success" and statuses.count("success") == 1
    r = client.show("tiny-brief")
    assert "SYSTEM Be brief." in r.modelfile
    lines = r.parameters.splitlines()
    assert f"{'temperature':<30} 0.5" in lines and f"{'stop':<30} \"END\"" in lines
    assert client.generate(model="tiny-brief", prompt="Hi", options=FEW).done
    assert client.delete("tiny-brief").status == "success"


def test_create_from_an_uploaded_gguf(client, tmp_path):
    path = write_tiny_gguf(tmp_path / "other.gguf", seed=7)
    digest = client.create_blob(path)
    assert digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    r = client.create(model="uploaded", files={"other.gguf": digest},
                      template="{{ .Prompt }}", license="MIT")
    assert r.status == "success"
    assert "uploaded:latest" in [m.model for m in client.list().models]
    assert client.show("uploaded").license == "MIT"
    assert client.generate(model="uploaded", prompt="Hi", options=FEW).done
    client.delete("uploaded")


def test_create_with_quantize_streams_the_quantizer_progress(client):
    parts = list(client.create(model="tiny-q8", from_="tiny", quantize="q8_0", stream=True))
    bars = [p for p in parts if p.status == "quantizing F32 to Q8_0"]
    assert bars and bars[-1].completed == bars[-1].total > 0
    assert parts[-1].status == "success"
    assert client.show("tiny-q8").details.quantization_level == "Q8_0"
    assert client.generate(model="tiny-q8", prompt="Hi", options=FEW).done
    client.delete("tiny-q8")


def test_create_from_the_older_modelfile_field(client, server, tmp_path):
    r = post(server, "/api/create", {"model": "legacy", "modelfile": "FROM tiny\nSYSTEM Hi.\n",
                                     "stream": False})
    assert r.status_code == 200 and r.json() == {"status": "success"}
    client.delete("legacy")
    digest = client.create_blob(write_tiny_gguf(tmp_path / "m.gguf", seed=3))
    r = post(server, "/api/create", {"model": "legacy", "modelfile": f"FROM @{digest}\n",
                                     "stream": False})
    assert r.status_code == 200
    client.delete("legacy")


@pytest.mark.parametrize("body, status", [
    ({"model": "x"}, 400),  # neither from nor files
    ({"model": "x", "from": "/etc/passwd"}, 400),  # a path is not a model name
    ({"model": "x", "from": "../tiny.gguf"}, 400),
    ({"model": "x", "modelfile": "FROM /tmp/tiny.gguf"}, 400),
    ({"model": "x", "files": {"a.gguf": "sha256:" + "0" * 64}}, 400),  # never uploaded
    ({"model": "x", "from": "nothing-here"}, 404),
    ({"model": "x", "from": "tiny", "quantize": "q9_X"}, 400),
    ({"model": "x", "from": "tiny", "quantize": "q4_0", "imatrix": "sha256:" + "0" * 64}, 400),
    ({"model": "x", "from": "tiny", "parameters": {"no_such_option": 1}}, 400),
    ({"model": "x", "from": "tiny", "template": "{% for %}"}, 400),
    ({"model": "bad name!", "from": "tiny"}, 400),
])
def test_bad_creates_are_refused_before_anything_is_written(client, server, body, status):
    r = post(server, "/api/create", body)
    assert r.status_code == status and r.json()["error"]
    assert "x:latest" not in [m.model for m in client.list().models]
    still_serves(client)


def test_a_blob_that_is_not_a_gguf_makes_no_model(client, server, tmp_path):
    path = tmp_path / "junk.gguf"
    path.write_bytes(b"GGUF but not really" * 100)
    digest = client.create_blob(path)
    with pytest.raises(ollama.ResponseError) as caught:
        client.create(model="junk", files={"junk.gguf": digest})
    assert caught.value.status_code == 400  # the client sent the bad file, not a 500
    r = post(server, "/api/create", {"model": "junk", "files": {"junk.gguf": digest},
                                     "stream": False})
    assert r.status_code == 400 and r.json()["code"] == "invalid_model_file"
    with pytest.raises(ollama.ResponseError):
        list(client.create(model="junk", files={"junk.gguf": digest}, stream=True))
    assert "junk:latest" not in [m.model for m in client.list().models]


def test_a_stored_model_gone_bad_is_still_a_500(client, server, tmp_path):
    """The store's state, not the client's mistake."""
    client.create(model="spoilt", files={"m.gguf": client.create_blob(
        write_tiny_gguf(tmp_path / "m.gguf", seed=9))})
    server.runtime.store.get("spoilt").model_path.write_bytes(b"GGUF but not really" * 100)
    for path, body in [("/api/create", {"model": "x", "from": "spoilt", "stream": False}),
                       ("/api/generate", {"model": "spoilt", "prompt": "Hi", "stream": False})]:
        r = post(server, path, body)
        assert r.status_code == 500 and r.json()["code"] == "bad_model_file", r.text
    client.delete("spoilt")
    still_serves(client)


def test_copy_and_delete(client, server):
    assert client.copy("tiny", "tiny-copy").status == "success"
    assert "tiny-copy:latest" in [m.model for m in client.list().models]
    assert client.delete("tiny-copy").status == "success"
    assert "tiny-copy:latest" not in [m.model for m in client.list().models]
    for call in (lambda: client.delete("tiny-copy"), lambda: client.copy("missing", "x")):
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == 404
    r = post(server, "/api/copy", {"source": "tiny", "destination": "tiny-2"})
    assert r.status_code == 200 and r.content == b""
    assert post(server, "/api/delete", {"model": "tiny-2"}, "DELETE").status_code == 200


def test_ps(client):
    client.generate(model="tiny", prompt="Hi", options=FEW, keep_alive="10m")
    [tiny] = [m for m in client.ps().models if m.model == "tiny:latest"]
    assert tiny.name == "tiny:latest" and len(tiny.digest) == 64 and tiny.size > 0
    assert tiny.size_vram == 0 and tiny.context_length > 0 and tiny.details.family == "llama"
    assert tiny.expires_at > datetime.now(UTC)


@pytest.mark.parametrize("keep_alive", ["100000000h", 1e20])
def test_a_keep_alive_too_long_to_hold_is_refused_and_ps_keeps_answering(client, server,
                                                                         keep_alive):
    """Accepted once, it made /api/ps answer 500 until the model unloaded."""
    r = post(server, "/api/generate", {"model": "tiny", "prompt": "Hi", "options": FEW,
                                       "keep_alive": keep_alive})
    ps = httpx.get(server.url + "/api/ps", timeout=60)
    assert ps.status_code == 200, ps.text
    assert r.status_code == 400 and "keep_alive" in r.json()["error"]
    still_serves(client)


def test_the_longest_keep_alive_shows_in_ps(client):
    client.generate(model="tiny", prompt="Hi", options=FEW, keep_alive="2562047h")
    [tiny] = [m for m in client.ps().models if m.model == "tiny:latest"]
    assert tiny.expires_at.year > 2300  # about 292 years from now: Go's longest duration
    client.generate(model="tiny", keep_alive=0)
    assert "tiny:latest" not in [m.model for m in client.ps().models]


def test_pull_of_an_unknown_model_fails(client):
    with pytest.raises(ollama.ResponseError):
        client.pull("no-such-model")
    with pytest.raises(ollama.ResponseError):
        list(client.pull("no-such-model", stream=True))
    still_serves(client)


def test_push_is_refused(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.push("tiny")
    assert info.value.status_code == 501 and "registry" in info.value.error


def test_version(server):
    assert httpx.get(server.url + "/api/version").json() == {"version": __version__}


# -- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b'{"model": "tiny"', b"null"])
def test_malformed_json_is_a_400(client, server, body):
    r = httpx.post(server.url + "/api/generate", content=body,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and isinstance(r.json()["error"], str)
    still_serves(client)


@pytest.mark.parametrize("path, body, words", [
    ("/api/generate", {"prompt": "Hi"}, "model is required"),
    ("/api/chat", {"messages": HELLO}, "model is required"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "options": {"num_predict": "ten"}},
     "num_predict"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "stream": [1]}, "stream"),
    ("/api/generate", {"model": "tiny", "prompt": 3}, "prompt"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]},
     "messages[0].role"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "options": {"num_predict": -3}},
     "num_predict"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "images": [IMAGE]}, "images"),
    ("/api/chat", {"model": "tiny", "messages": [{**HELLO[0], "images": [IMAGE]}]}, "images"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "format": {"type": "nonsense"}},
     "schema"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "format": "yaml"}, "format"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "keep_alive": "soon"}, "keep_alive"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "top_logprobs": 99}, "top_logprobs"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "think": True}, "thinking"),
    ("/api/generate", {"model": "../../etc/passwd", "prompt": "Hi"}, "model name"),
    ("/api/embed", {"model": "tiny", "input": "x", "dimensions": 3}, "dimensions"),
    ("/api/copy", {"source": "tiny"}, "destination is required"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "options": {"num_thread": 100000}},
     "num_thread"),  # once took the whole server down (libgomp could not make them)
    ("/api/generate", {"model": "tiny", "options": {"num_thread": 100000}}, "num_thread"),
    ("/api/embed", {"model": "tiny", "input": "x", "options": {"num_thread": 100000}},
     "num_thread"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_bad_requests_are_400s_that_say_why(client, server, path, body, words):
    r = post(server, path, body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]
    still_serves(client)


@pytest.mark.parametrize("path, body, option", [
    ("/api/generate", b'{"model": "tiny", "prompt": "Hi", "options": {"temperature": NaN}}',
     "temperature"),
    ("/api/chat", b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], '
                  b'"options": {"top_p": Infinity}}', "top_p"),
    ("/api/generate", b'{"model": "tiny", "prompt": "Hi", "options": {"repeat_penalty": '
                      b'-Infinity}}', "repeat_penalty"),
    ("/api/generate", b'{"model": "tiny", "prompt": "Hi", "options": {"min_p": "nan"}}',
     "min_p"),
], ids=["nan", "infinity", "minus-infinity", "nan-string"])
def test_options_that_are_not_finite_numbers_are_400s(client, server, path, body, option):
    """NaN and Infinity are not JSON, but Python's parser reads them."""
    r = httpx.post(server.url + path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert f"option '{option}' must be a finite number" in r.json()["error"]
    still_serves(client)


LONE = "\ud800"  # valid JSON (an escape of half a UTF-16 pair), not valid Unicode


@pytest.mark.parametrize("path, body, field", [
    ("/api/generate", {"model": "tiny", "prompt": LONE, "raw": True}, "prompt"),
    ("/api/generate", {"model": "tiny", "prompt": "Hi", "system": "a" + LONE}, "system"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": LONE}]},
     "messages[0].content"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": {"city": LONE}}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ("/api/embed", {"model": "tiny", "input": ["ok", LONE]}, "input"),
    ("/api/embeddings", {"model": "tiny", "prompt": LONE}, "prompt"),
    ("/api/tokenize", {"model": "tiny", "content": LONE}, "content"),
    ("/api/create", {"model": "x", "from": "tiny", "system": LONE}, "system"),
], ids=["raw-prompt", "system", "message", "tool-arguments", "embed", "embeddings",
        "tokenize", "create-system"])
def test_text_that_is_not_unicode_is_a_400_naming_the_field(client, server, path, body, field):
    """Python's JSON reads a lone surrogate, UTF-8 cannot hold it: once a 500 ("'utf-8'
    codec can't encode") or a misleading "renderer process ended unexpectedly"."""
    r = httpx.post(server.url + path, content=json.dumps(body),
                   headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(
        f"invalid {field}: not valid Unicode: a lone surrogate U+D800 at character"), r.text
    assert "x:latest" not in [m.model for m in client.list().models]
    still_serves(client)


@pytest.mark.parametrize("path, body", [
    ("/api/generate", {"model": "nope", "prompt": "Hi"}),
    ("/api/generate", {"model": "nope", "prompt": "Hi", "stream": True}),
    ("/api/generate", {"model": "nope"}),
    ("/api/chat", {"model": "nope", "messages": HELLO}),
    ("/api/embed", {"model": "nope", "input": "x"}),
    ("/api/embeddings", {"model": "nope", "prompt": "x"}),
    ("/api/show", {"model": "nope"}),
])
def test_an_unknown_model_is_a_404(client, server, path, body):
    r = post(server, path, body)
    assert r.status_code == 404 and "nope" in r.json()["error"]
    still_serves(client)


def test_a_body_without_a_json_content_type_is_read_as_json(server):
    """What ``curl -d '{...}'`` sends, as in Ollama's documentation."""
    r = httpx.post(server.url + "/api/generate", content=json.dumps(
        {"model": "tiny", "prompt": "Hi", "stream": False, "options": FEW}),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["done"]


# -- blobs ---------------------------------------------------------------------------------


def test_blobs(client, server):
    data = b"some bytes for a blob"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    url = f"{server.url}/api/blobs/{digest}"
    assert httpx.head(url).status_code == 404
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    r = httpx.post(f"{server.url}/api/blobs/{wrong}", content=data)
    assert r.status_code == 400 and "digest" in r.json()["error"]
    assert httpx.head(f"{server.url}/api/blobs/{wrong}").status_code == 404
    assert not server.runtime.has_blob(wrong) and not server.runtime.has_blob(digest)
    assert httpx.post(url, content=data).status_code == 201
    assert httpx.head(url).status_code == 200
    assert httpx.post(url, content=data).status_code == 200  # already there
    for bad in ("sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64):
        assert httpx.head(f"{server.url}/api/blobs/{bad}").status_code == 400
        assert httpx.post(f"{server.url}/api/blobs/{bad}", content=data).status_code == 400
    still_serves(client)


# -- the server as a whole -----------------------------------------------------------------


def test_root_and_openapi(server):
    assert httpx.get(server.url + "/").status_code == 200
    assert httpx.head(server.url + "/").status_code == 200
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    for route in ("generate", "chat", "embed", "embeddings", "tags", "show", "create", "copy",
                  "delete", "pull", "push", "ps", "version", "blobs/{digest}"):
        assert f"/api/{route}" in paths, route
    assert {"head", "post"} <= set(paths["/api/blobs/{digest}"])


def test_a_client_that_drops_a_stream_stops_the_generation(client, server, tmp_path):
    """Left alone, the dropped answer runs on for over 11k tokens (15 s or more here);
    its sequence must be freed at once, and the next request must not wait for it."""
    digest = client.create_blob(write_tiny_gguf(tmp_path / "long.gguf", n_ctx_train=16384))
    client.create(model="long", files={"long.gguf": digest}, parameters={"num_ctx": 16384})
    try:
        with httpx.stream("POST", server.url + "/api/generate", timeout=60, json={
                "model": "long", "prompt": "Tell me everything",
                "options": {"num_predict": 100_000, "temperature": 0}}) as response:
            lines = response.iter_lines()
            assert not json.loads(next(lines))["done"] and not json.loads(next(lines))["done"]
            [entry] = [e for e in server.runtime.loader.entries() if e.name == "long:latest"]
            assert entry.model.scheduler.active() == 1
        dropped = time.monotonic()
        while entry.model.scheduler.active() and time.monotonic() - dropped < 3:
            time.sleep(0.01)
        assert entry.model.scheduler.active() == 0, "the dropped generation kept going"
        assert client.generate(model="long", prompt="Hi", options=FEW).done
        assert time.monotonic() - dropped < 3
    finally:
        client.delete("long")


def test_a_client_that_leaves_a_non_streaming_answer_stops_the_generation(
        client, server, tmp_path):
    """No stream to close here: the server must notice the client left and cancel."""
    digest = client.create_blob(write_tiny_gguf(tmp_path / "long.gguf", n_ctx_train=16384))
    client.create(model="long", files={"long.gguf": digest}, parameters={"num_ctx": 16384})
    try:
        client.generate(model="long", prompt="Hi", options=FEW)  # loaded
        [entry] = [e for e in server.runtime.loader.entries() if e.name == "long:latest"]
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/api/generate", timeout=1.5, json={
                "model": "long", "prompt": "Tell me everything", "stream": False,
                "options": {"num_predict": 100_000, "temperature": 0}})
        left = time.monotonic()
        while entry.model.scheduler.active() and time.monotonic() - left < 3:
            time.sleep(0.01)
        assert entry.model.scheduler.active() == 0, "the abandoned generation kept going"
    finally:
        client.delete("long")


def test_truncate_false_refuses_a_prompt_longer_than_the_context(client, server):
    long, options = "word " * 400, {"num_ctx": 128, "num_predict": 2}
    for path, body in (("generate", {"prompt": long}),
                       ("chat", {"messages": [{"role": "user", "content": long}]})):
        refused = httpx.post(f"{server.url}/api/{path}", json={
            "model": "tiny", **body, "truncate": False, "options": options, "stream": False})
        assert refused.status_code == 400
        assert "longer than the context" in refused.json()["error"]
    kept = client.generate(model="tiny", prompt=long, options={"num_ctx": 128, "num_predict": 2})
    assert kept.done and kept.prompt_eval_count <= 128


def test_concurrent_requests_all_complete(client):
    def one(i: int) -> bool:
        if i % 3 == 0:
            return client.chat(model="tiny", messages=HELLO, options=FEW).done
        if i % 3 == 1:
            return list(client.generate(model="tiny", prompt=f"Hi {i}", options=FEW,
                                        stream=True))[-1].done
        return len(client.embed(model="tiny", input=f"text {i}").embeddings) == 1

    with ThreadPoolExecutor(6) as pool:
        assert all(pool.map(one, range(12)))


def test_more_waiting_requests_than_worker_threads_do_not_deadlock(client, server):
    """anyio lends 40 worker threads and a request waiting for the model holds one;
    the request that holds the model must still get threads for its next steps."""
    with httpx.stream("POST", server.url + "/api/generate", timeout=60, json={
            "model": "tiny", "prompt": "Go on", "options": {"num_predict": 1000}}) as first:
        lines = first.iter_lines()
        next(lines)
        with ThreadPoolExecutor(45) as pool:
            waiting = [pool.submit(client.generate, model="tiny", prompt=f"Hi {i}",
                                   options={"num_predict": 2}) for i in range(45)]
            assert json.loads([line for line in lines if line][-1])["done"]
            assert all(f.result(timeout=60).done for f in waiting)


# -- a scripted Runtime: tool calls, errors mid-stream, what reaches the Runtime -----------


@pytest.fixture
def fake():
    runtime = FakeRuntime()
    with serve(runtime) as url:
        runtime.client = ollama.Client(host=url, timeout=30)
        runtime.url = url
        yield runtime


CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
RUNTIME_CALL = ToolCall("get_weather", {"city": "Paris"})
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_tool_calls_come_back_in_ollama_shape(fake):
    fake.script = [Chunk(done=True, done_reason="stop", tool_calls=[RUNTIME_CALL],
                         eval_count=7)]
    r = fake.client.chat(model="fake", messages=HELLO, tools=TOOLS)
    [call] = r.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
    assert r.message.content == "" and r.done_reason == "stop"
    *_, last = fake.client.chat(model="fake", messages=HELLO, tools=TOOLS, stream=True)
    assert last.message.tool_calls[0].function.arguments == {"city": "Paris"}


def test_what_reaches_the_runtime(fake):
    messages = [{"role": "system", "content": "Be brief."}, *HELLO,
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    fake.client.chat(model="fake", messages=messages, tools=TOOLS, format="json",
                     options={"num_ctx": 128, "stop": ["END"]}, keep_alive="1m",
                     logprobs=True, top_logprobs=3)
    request = fake.requests[-1]
    assert isinstance(request, ChatRequest)
    assert request.messages == [Message("system", "Be brief."),
                                *[Message(m["role"], m["content"]) for m in HELLO],
                                Message("assistant", "", tool_calls=[RUNTIME_CALL]),
                                Message("tool", "sunny", tool_name="get_weather")]
    assert request.tools[0].name == "get_weather"
    assert [t.function_json() for t in request.tools] == TOOLS
    assert (request.format, request.keep_alive, request.logprobs, request.top_logprobs) == (
        "json", "1m", True, 3)
    assert request.options == {"num_ctx": 128, "stop": ["END"]}

    fake.client.generate(model="fake", prompt="Hi", suffix="", system="", template="",
                         raw=True, context=[1, 2], images=None, format={"type": "object"})
    request = fake.requests[-1]
    assert isinstance(request, GenerateRequest)
    assert (request.prompt, request.raw, request.context, request.system, request.template,
            request.format) == ("Hi", True, [1, 2], None, None, {"type": "object"})


def test_an_error_in_the_middle_of_a_stream_is_a_last_error_line(fake):
    fake.script = [Chunk(text="a"), Chunk(text="b"), Chunk(done=True)]
    fake.fail_after = 1
    with pytest.raises(ollama.ResponseError, match="the model broke down"):
        list(fake.client.generate(model="fake", prompt="Hi", stream=True))
    raw = httpx.post(fake.url + "/api/chat", json={"model": "fake", "messages": HELLO}).text
    lines = [json.loads(line) for line in raw.splitlines()]
    assert lines[0]["message"]["content"] == "a" and lines[-1]["error"] == "the model broke down"
    assert not any(line.get("done") for line in lines)


def test_an_error_before_the_first_chunk_is_an_http_status(fake):
    fake.fail_after = 0
    r = httpx.post(fake.url + "/api/generate", json={"model": "fake", "prompt": "Hi"})
    assert r.status_code == 400 and r.json()["error"] == "the model broke down"


def test_pull_streams_progress_then_success(fake):
    parts = list(fake.client.pull("some-model", stream=True))
    assert [p.completed for p in parts[:-1]] == [0, 50, 100]
    assert parts[0].status == "pulling some-model"
    assert parts[0].digest == "sha256:ab" and parts[0].total == 100
    assert parts[-1].status == "success" and [p.status for p in parts].count("success") == 1
    assert fake.client.pull("some-model").status == "success"
    fake.fail_after = 1
    raw = httpx.post(fake.url + "/api/pull", json={"model": "some-model"}).text
    lines = [json.loads(line) for line in raw.splitlines()]
    assert lines[0]["completed"] == 0 and lines[-1]["error"] == "the network went away"
    assert not any(line.get("status") == "success" for line in lines)
    r = httpx.post(fake.url + "/api/pull", json={"model": "some-model", "stream": False})
    assert r.status_code == 500 and r.json()["error"] == "the network went away"


def test_a_client_that_leaves_closes_the_runtime_stream(fake):
    fake.endless = True
    with httpx.stream("POST", fake.url + "/api/chat", json={
            "model": "fake", "messages": HELLO}) as response:
        for line in response.iter_lines():
            if "x" in line:
                break
    assert fake.closed.wait(10)


def test_a_client_that_leaves_a_pull_stops_it(fake):
    fake.endless = True
    with httpx.stream("POST", fake.url + "/api/pull", json={"model": "big"}) as response:
        next(response.iter_lines())
    assert fake.closed.wait(10)


def test_api_key_is_checked_when_set(tmp_path):
    with serve(FakeRuntime(), api_key="sekret", tmp=tmp_path) as url:
        with pytest.raises(ollama.ResponseError) as info:
            ollama.Client(host=url).generate(model="fake", prompt="Hi")
        assert info.value.status_code == 401
        assert httpx.get(url + "/").status_code == 200  # the health check stays open
        right = ollama.Client(host=url, headers={"Authorization": "Bearer sekret"})
        assert right.generate(model="fake", prompt="Hi").response == "ok"


def test_an_empty_generate_loads_with_its_options(server):
    body = {"model": "tiny", "options": {"num_ctx": 256}, "keep_alive": -1, "stream": False}
    loaded = httpx.post(f"{server.url}/api/generate", json=body, timeout=60).json()
    assert loaded["done_reason"] == "load"
    running = httpx.get(f"{server.url}/api/ps", timeout=10).json()["models"]
    # (an embedding context of the same model, from an earlier test, may be listed too)
    assert 256 in [m["context_length"] for m in running if m["name"] == "tiny:latest"]
    httpx.post(f"{server.url}/api/generate", json={"model": "tiny", "keep_alive": 0}, timeout=60)


def test_a_huge_template_error_is_cut_to_a_readable_size_in_both_faces(server):
    """A template (a stranger's code) chooses its error message; the body stays small."""
    made = post(server, "/api/create", {"model": "shouty", "from": "tiny",
                                        "template": "{{ raise_exception('x' * 300000) }}"})
    assert made.status_code == 200, made.text[:500]
    try:
        answers = [post(server, "/api/generate", {"model": "shouty", "prompt": "Hi",
                                                   "stream": False}),
                   post(server, "/api/chat", {"model": "shouty", "stream": False,
                                               "messages": HELLO}),
                   post(server, "/v1/chat/completions", {"model": "shouty",
                                                         "messages": HELLO})]
        for answer in answers:
            assert answer.status_code == 400, answer.text[:500]
            assert len(answer.content) < 2000
            body = answer.json()
            message = body["error"] if isinstance(body["error"], str) else \
                body["error"]["message"]
            assert "template" in message.lower() and "xxxx" in message, message
            assert message.endswith("…"), message
    finally:
        post(server, "/api/delete", {"model": "shouty"}, method="DELETE")
