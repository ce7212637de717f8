"""RemoteRuntime: the same behaviour as LocalRuntime, through a live server's Ollama API.

Most tests run twice, on the in-process runtime and on the client of a server
that owns an identical store, so the two cannot drift apart.  The tests at the
end fake the server (httpx.MockTransport) to pin down the wire format: the
request shapes Ollama documents and the mapping of error answers to typed errors.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from liveserver import free_port, serve
from locallama.client import RemoteRuntime
from locallama.errors import (
    DigestMismatch,
    InvalidRequest,
    LocallamaError,
    ModelNotFound,
    NotSupported,
    TemplateError,
)
from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import ChatRequest, Chunk, GenerateRequest, Message, ToolCall
from locallama.settings import Settings
from locallama.store import ModelName
from runtimes import add_model, create, local_runtime
from tinymodel import tiny_parameter_count, write_tiny_gguf

GREEDY = {"temperature": 0, "seed": 42, "num_predict": 12}
LONG_CTX = 8192  # the "long" model fills this in ~10 s on a CPU: long enough to see a stop


# -- fixtures: one store in this process, an identical one behind a live server ----------


def _fill_store(home: Path, tiny: Path, long: Path) -> LocalRuntime:
    return local_runtime(home, ("tiny", tiny), ("long", long), host="127.0.0.1",
                         port=free_port())


@pytest.fixture(scope="module")
def long_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a long trained context, so one answer can run for seconds."""
    path = tmp_path_factory.mktemp("long") / "long.gguf"
    return write_tiny_gguf(path, n_ctx_train=LONG_CTX)


@pytest.fixture(scope="module")
def local(tmp_path_factory, tiny_gguf, long_gguf) -> Iterator[LocalRuntime]:
    runtime = _fill_store(tmp_path_factory.mktemp("local"), tiny_gguf, long_gguf)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def remote(tmp_path_factory, tiny_gguf, long_gguf) -> Iterator[RemoteRuntime]:
    served = _fill_store(tmp_path_factory.mktemp("served"), tiny_gguf, long_gguf)
    with serve(served, served.settings):
        client = RemoteRuntime(served.settings)
        yield client
        client.close()
    served.close()


@pytest.fixture(params=["local", "remote"])
def runtime(request: pytest.FixtureRequest):
    """Each behaviour test runs on both runtimes."""
    return request.getfixturevalue(request.param)


def answer(runtime, request) -> tuple[str, list[Chunk]]:
    chunks = list(runtime.chat(request) if isinstance(request, ChatRequest)
                  else runtime.generate(request))
    assert chunks[-1].done and not any(c.done for c in chunks[:-1])
    return "".join(c.text for c in chunks), chunks


# -- the same behaviour on both runtimes ---------------------------------------------------


def test_list_gives_store_entries(runtime):
    entries = {e.name.display: e for e in runtime.list()}
    assert {"tiny:latest", "long:latest"} <= set(entries)
    tiny = entries["tiny:latest"]
    assert isinstance(tiny.name, ModelName)
    assert tiny.digest.startswith("sha256:") and len(tiny.id) == 12
    assert tiny.size > 0 and tiny.modified.tzinfo is not None


def test_show_reports_the_model(runtime):
    d = runtime.show("tiny")
    assert (d.name, d.architecture, d.quantization) == ("tiny:latest", "llama", "F32")
    assert d.context_length == 2048 and d.embedding_length == 64
    assert d.parameter_count == tiny_parameter_count()
    assert d.template and "im_start" in d.template
    assert d.modelfile.splitlines()[1].startswith("FROM ")
    entry = next(e for e in runtime.list() if e.name.display == "tiny:latest")
    assert (d.digest, d.size) == (entry.digest, entry.size)


def test_generate_streams_text_then_counts(runtime):
    text, chunks = answer(runtime, GenerateRequest("tiny", "The cat sat on the",
                                                   options=GREEDY))
    final = chunks[-1]
    assert text and len(chunks) > 2
    assert final.eval_count == 12 and final.done_reason == "length"
    assert final.prompt_eval_count > 0 and final.total_duration >= final.eval_duration > 0
    assert final.context and final.prompt_tokens == len(final.context) - final.eval_count


def test_chat_streams_an_answer(runtime):
    messages = [Message("system", "Be brief."), Message("user", "Hi")]
    text, chunks = answer(runtime, ChatRequest("tiny", messages, dict(GREEDY)))
    assert text and chunks[-1].eval_count == 12


def test_embed_gives_unit_vectors(runtime):
    result = runtime.embed("tiny", ["hello world", "the cat"])
    assert len(result.embeddings) == 2 and all(len(v) == 64 for v in result.embeddings)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in result.embeddings)
    assert result.prompt_eval_count > 0


def test_tokenize_round_trip(runtime):
    tokens = runtime.tokenize("tiny", "hello world")
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert runtime.detokenize("tiny", tokens).strip() == "hello world"


def test_create_copy_delete(runtime, make_gguf, tmp_path):
    """A new GGUF file (so the remote client must upload it), with every instruction."""
    make_gguf("fresh.gguf", seed=3)
    (tmp_path / "Modelfile").write_text(
        'FROM ./fresh.gguf\nPARAMETER temperature 0.3\nPARAMETER stop "###"\n'
        "SYSTEM Answer briefly.\nMESSAGE user Hi\nMESSAGE assistant Hello\nLICENSE MIT\n")
    events = []
    create(runtime, "made", (tmp_path / "Modelfile").read_text(), tmp_path, events.append)
    assert events and events[-1].status
    d = runtime.show("made")
    assert d.parameters == {"temperature": 0.3, "stop": ["###"]}
    assert d.system == "Answer briefly." and d.licenses == ["MIT"]
    assert d.messages == [Message("user", "Hi"),
                          Message("assistant", "Hello")]
    assert answer(runtime, GenerateRequest("made", "Hi", options={"num_predict": 2}))[0]

    runtime.copy("made", "made-too")
    names = {e.name.display for e in runtime.list()}
    assert {"made:latest", "made-too:latest"} <= names
    runtime.delete("made")
    runtime.delete("made-too")
    assert not {"made:latest", "made-too:latest"} & {e.name.display for e in runtime.list()}


def test_create_from_a_stored_model_inherits(runtime, tmp_path):
    create(runtime, "child", "FROM tiny\nPARAMETER num_predict 3\n", tmp_path)
    try:
        assert runtime.show("child").parameters == {"num_predict": 3}
        assert answer(runtime, GenerateRequest("child", "Once"))[1][-1].eval_count == 3
    finally:
        runtime.delete("child")


def test_create_with_quantize_and_an_importance_matrix(runtime, make_gguf, tmp_path):
    """Remotely the source file and the importance matrix are uploaded first."""
    from imatrix import importance, write_gguf_imatrix

    make_gguf("q.gguf", seed=4)
    imatrix = write_gguf_imatrix(tmp_path / "imatrix.gguf", importance(2))
    events = []
    create(runtime, "q", "FROM ./q.gguf\n", tmp_path, events.append, quantize="q4_0",
           imatrix=imatrix)
    try:
        assert "using an importance matrix for 14 tensors" in [e.status for e in events]
        assert runtime.show("q").quantization == "Q4_0"
    finally:
        runtime.delete("q")


def test_unknown_model_is_model_not_found(runtime):
    with pytest.raises(ModelNotFound, match="nope:latest"):
        list(runtime.generate(GenerateRequest("nope", "hi")))
    for call in (lambda: runtime.show("nope"), lambda: runtime.delete("nope"),
                 lambda: runtime.copy("nope", "x"), lambda: runtime.embed("nope", ["a"])):
        with pytest.raises(ModelNotFound, match="nope:latest"):
            call()


def test_bad_requests_are_invalid_requests(runtime):
    with pytest.raises(InvalidRequest, match="num_predict"):
        list(runtime.generate(GenerateRequest("tiny", "hi", options={"num_predict": -7})))
    with pytest.raises(InvalidRequest, match="role"):
        list(runtime.chat(ChatRequest("tiny", [Message("wizard", "x")])))


@pytest.mark.parametrize(("modelfile", "error", "match"), [
    ("FROM ./missing.gguf\n", InvalidRequest, "no such file"),
    ("FROM nosuchmodel\n", ModelNotFound, "nosuchmodel"),
    ("FROM tiny\nPARAMETER warp 9\n", InvalidRequest, "warp"),
    ("FROM tiny\nPARAMETER temperature -1\n", InvalidRequest, "temperature"),
    ("FROM tiny\nTEMPLATE {% for %}\n", InvalidRequest, "compile"),
    ("FROM tiny\nPARAMETER\n", InvalidRequest, "line 2"),
])
def test_create_errors(runtime, tmp_path, modelfile, error, match):
    with pytest.raises(error, match=match):
        create(runtime, "broken", modelfile, tmp_path)
    assert "broken:latest" not in {e.name.display for e in runtime.list()}


def test_closing_a_stream_stops_the_generation(runtime):
    """What Ctrl-C in the REPL relies on: the model is free again at once."""
    options = {"temperature": 0, "num_ctx": LONG_CTX, "num_predict": -1}
    chunks = runtime.generate(GenerateRequest("long", "The cat", options=options))
    for _ in range(5):
        next(chunks)
    chunks.close()
    done: list[Chunk] = []
    short = GenerateRequest("long", "The cat", options={**options, "num_predict": 4})
    worker = threading.Thread(target=lambda: done.extend(runtime.generate(short)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=20)
    assert done and done[-1].eval_count == 4, "the closed answer kept the model busy"
    assert time.monotonic() - started < 3


def test_load_ps_unload(runtime):
    runtime.load("tiny", keep_alive="10m")
    loaded = {i.name: i for i in runtime.ps()}
    info = loaded["tiny:latest"]
    assert info.digest == runtime.show("tiny").digest
    assert info.size > 0 and info.context_length > 0 and info.details.family == "llama"
    assert info.expires_at is not None and info.expires_at.tzinfo is not None
    assert 500 < info.expires_at.timestamp() - time.time() <= 600
    runtime.load("tiny", keep_alive=-1)
    assert {i.name: i for i in runtime.ps()}["tiny:latest"].expires_at is None
    runtime.unload("tiny")
    assert "tiny:latest" not in {i.name for i in runtime.ps()}


# -- the two runtimes answer alike ---------------------------------------------------------


def test_remote_generate_equals_local(local, remote):
    request = GenerateRequest("tiny", "Once upon a time", options=GREEDY)
    (local_text, local_chunks), (remote_text, remote_chunks) = (
        answer(local, request), answer(remote, request))
    assert remote_text == local_text
    assert [c.text for c in remote_chunks] == [c.text for c in local_chunks]
    assert remote_chunks[-1].context == local_chunks[-1].context


def test_remote_chat_and_embed_equal_local(local, remote):
    request = ChatRequest("tiny", [Message("user", "Tell me a story")], GREEDY)
    assert answer(remote, request)[0] == answer(local, request)[0]
    a, b = local.embed("tiny", ["hi there"]), remote.embed("tiny", ["hi there"])
    assert b.prompt_eval_count == a.prompt_eval_count
    assert all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a.embeddings[0],
                                                                 b.embeddings[0], strict=True))


def test_remote_embed_passes_dimensions(remote):
    """The server checks them: the model's own size is fine, another is refused."""
    assert len(remote.embed("tiny", ["hi there"], dimensions=64).embeddings[0]) == 64
    with pytest.raises(InvalidRequest, match="64-dimensional") as caught:
        remote.embed("tiny", ["hi there"], dimensions=8)
    assert caught.value.param == "dimensions"


def test_remote_show_equals_local(local, remote):
    a, b = local.show("tiny"), remote.show("tiny")
    for field in ("name", "digest", "size", "architecture", "parameter_count",
                  "context_length", "embedding_length", "quantization", "template", "system",
                  "parameters", "messages", "licenses"):
        assert getattr(b, field) == getattr(a, field), field


def test_remote_errors_equal_local(local, remote, tmp_path):
    calls: list[Callable[[Any], object]] = [
        lambda rt: list(rt.generate(GenerateRequest("ghost", "hi"))),
        lambda rt: rt.show("../../etc/passwd"),
        lambda rt: list(rt.generate(GenerateRequest("tiny", "hi", options={"top_p": 2}))),
        lambda rt: create(rt, "x", "FROM tiny\nTEMPLATE {% for %}\n", tmp_path),
    ]
    for call in calls:
        with pytest.raises(LocallamaError) as expected:
            call(local)
        with pytest.raises(LocallamaError) as got:
            call(remote)
        assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))


# -- the wire format, against a fake server -------------------------------------------------


def fake(handler: Callable[[httpx.Request], httpx.Response]) -> RemoteRuntime:
    return RemoteRuntime(Settings(host="127.0.0.1", port=1), transport=httpx.MockTransport(handler))


def ndjson(*lines: dict[str, Any], status: int = 200) -> httpx.Response:
    return httpx.Response(status, content="".join(json.dumps(x) + "\n" for x in lines))


def test_an_error_line_mid_stream_raises_the_typed_error():
    rt = fake(lambda r: ndjson({"response": "a", "done": False},
                               {"error": "model 'm:latest' not found", "code": "model_not_found"}))
    chunks = rt.generate(GenerateRequest("m", "hi"))
    assert next(chunks).text == "a"
    with pytest.raises(ModelNotFound) as caught:
        next(chunks)
    assert caught.value.name == "m:latest"
    rt = fake(lambda r: ndjson({"error": "the template broke", "code": "invalid_template"}))
    with pytest.raises(TemplateError, match="^the template broke$"):
        list(rt.chat(ChatRequest("m", [])))
    rt = fake(lambda r: ndjson({"error": "something odd"}))
    with pytest.raises(LocallamaError, match="^something odd$"):
        list(rt.generate(GenerateRequest("m", "hi")))


@pytest.mark.parametrize(("status", "body", "error", "message"), [
    (404, {"error": "model 'x:latest' not found"}, ModelNotFound, "model 'x:latest' not found"),
    (400, {"error": "top_p must be between 0 and 1"}, InvalidRequest,
     "top_p must be between 0 and 1"),
    (400, {"error": "bad bytes", "code": "digest_mismatch"}, DigestMismatch, "bad bytes"),
    (501, {"error": "vision models are not supported yet"}, NotSupported,
     "vision models are not supported yet"),
    (500, {"error": "llama.cpp failed"}, LocallamaError, "llama.cpp failed"),
    (404, None, NotSupported, "does not offer /api/show"),
])
def test_http_errors_map_to_typed_errors(status, body, error, message):
    rt = fake(lambda r: httpx.Response(status, json=body) if body else httpx.Response(status))
    with pytest.raises(error) as caught:
        rt.show("x")
    assert type(caught.value) is error and message in str(caught.value)


def test_no_server_is_one_clear_error():
    rt = RemoteRuntime(Settings(host="127.0.0.1", port=free_port()))
    with pytest.raises(LocallamaError, match="no locallama server answers at http://127"):
        rt.list()
    with pytest.raises(LocallamaError, match="no locallama server answers"):
        next(rt.generate(GenerateRequest("m", "hi")))


def test_create_uploads_the_file_and_sends_ollamas_shape(make_gguf):
    gguf = make_gguf("w.gguf")
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.read()))
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.url.path.startswith("/api/blobs/"):
            return httpx.Response(201)
        return ndjson({"status": "writing manifest"}, {"status": "success"})

    lines = ("TEMPLATE {{ .Prompt }}\nSYSTEM Be kind.\n"
             'PARAMETER temperature 0.5\nPARAMETER stop "a"\nPARAMETER stop "b"\n'
             "MESSAGE user Hi\nLICENSE MIT\n")
    events = []
    add_model(fake(handler), "m", gguf, lines, progress=events.append)
    (head, blob_path, _), (post, post_path, data), (_, create_path, body) = seen
    digest = blob_path.removeprefix("/api/blobs/")
    assert (head, post, post_path, create_path) == ("HEAD", "POST", blob_path, "/api/create")
    assert digest.startswith("sha256:") and data == gguf.read_bytes()
    assert json.loads(body) == {
        "model": "m", "stream": True, "files": {"w.gguf": digest},
        "template": "{{ .Prompt }}", "system": "Be kind.",
        "parameters": {"temperature": 0.5, "stop": ["a", "b"]},
        "messages": [{"role": "user", "content": "Hi"}], "license": ["MIT"],
    }
    assert [e.status for e in events][-2:] == ["writing manifest", "success"]
    assert any(e.completed == e.total == gguf.stat().st_size for e in events)


def test_create_from_a_model_name_sends_from_and_skips_uploads(tmp_path):
    seen = []

    def handler(request):
        seen.append(json.loads(request.read()))
        return ndjson({"status": "success"})

    create(fake(handler), "m", "FROM llama3.2\n", tmp_path)
    assert seen == [{"model": "m", "stream": True, "from": "llama3.2"}]


def test_show_and_ps_read_ollamas_json():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tags":
            return httpx.Response(200, json={"models": [{
                "name": "m:latest", "model": "m:latest", "modified_at": "2025-01-02T03:04:05Z",
                "size": 7, "digest": "ab" * 32}]})
        if request.url.path == "/api/ps":
            return httpx.Response(200, json={"models": [{
                "name": "m:latest", "model": "m:latest", "size": 9, "digest": "ab" * 32,
                "details": {"family": "llama"}, "context_length": 4096,
                "expires_at": "2318-01-01T00:00:00.123456789-07:00"}]})
        return httpx.Response(200, json={
            "modelfile": "FROM x\n", "template": "{{ .Prompt }}", "license": "MIT",
            "parameters": 'temperature                    0.7\n'
                          'stop                           "a b"\n'
                          'stop                           "<|im_end|>"',
            "details": {"family": "llama", "quantization_level": "Q4_0"},
            "model_info": {"general.architecture": "llama", "general.parameter_count": 8,
                           "llama.context_length": 2048, "llama.embedding_length": 64},
            "modified_at": "2025-01-02T03:04:05Z"})

    rt = fake(handler)
    d = rt.show("m")
    assert (d.name, d.digest, d.size) == ("m:latest", "sha256:" + "ab" * 32, 7)
    assert (d.architecture, d.parameter_count, d.context_length, d.quantization) == (
        "llama", 8, 2048, "Q4_0")
    assert d.parameters == {"temperature": 0.7, "stop": ["a b", "<|im_end|>"]}
    assert d.licenses == ["MIT"] and d.system is None
    (info,) = rt.ps()
    assert (info.name, info.digest, info.context_length) == ("m:latest", "sha256:" + "ab" * 32,
                                                             4096)
    assert info.expires_at is None  # Ollama's "forever"


def test_tool_calls_arrive_as_deltas_and_on_the_final_chunk():
    call = {"function": {"name": "f", "arguments": {"x": 1}}}
    rt = fake(lambda r: ndjson(
        {"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
        {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
         "eval_count": 3, "prompt_eval_count": 5}))
    chunks = list(rt.chat(ChatRequest("m", [Message("user", "hi")])))
    assert len(chunks) == 2 and chunks[1].tool_calls == [ToolCall("f", {"x": 1})]
    assert [(d.name, d.arguments) for d in chunks[0].tool_call_deltas] == [
        ("f", ""), ("", '{"x": 1}')]
    assert chunks[1].prompt_tokens == 5


def test_a_stream_that_stops_early_is_an_error():
    rt = fake(lambda r: ndjson({"response": "a", "done": False}))
    with pytest.raises(LocallamaError, match="ended the answer"):
        list(rt.generate(GenerateRequest("m", "hi")))


def test_embed_sends_dimensions_only_when_set():
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.read()))
        return httpx.Response(200, json={"embeddings": [[1.0, 0.0]], "prompt_eval_count": 2})

    rt = fake(handler)
    result = rt.embed("m", ["a"])
    rt.embed("m", ["a"], dimensions=2)
    assert (result.embeddings, result.prompt_eval_count) == ([[1.0, 0.0]], 2)
    assert seen == [{"model": "m", "input": ["a"], "truncate": True},
                    {"model": "m", "input": ["a"], "truncate": True, "dimensions": 2}]


def test_what_json_cannot_carry_is_refused_before_anything_is_sent():
    sent = []
    rt = fake(lambda r: sent.append(r) or ndjson({"done": True}))
    with pytest.raises(InvalidRequest, match="not valid Unicode .*U\\+DCFF"):
        list(rt.chat(ChatRequest("m", [Message("user", "hi \udcff")])))  # bytes b"\xff"
    with pytest.raises(InvalidRequest, match="a number JSON cannot carry"):
        list(rt.generate(GenerateRequest("m", "hi", options={"temperature": float("nan")})))
    with pytest.raises(InvalidRequest, match="not valid Unicode"):
        rt.tokenize("m", "\ud800")
    assert sent == []
