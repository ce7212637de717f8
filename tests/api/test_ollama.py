"""Ollama's wire format (api/ollama*.py: requests, bodies, stream lines, answers),
without HTTP.

The server encodes and the client decodes with these functions, so each shape is
checked as a round trip: what the server sends, the client reads back as the value
the server had.  A field spelt differently on the two sides, or dropped by one,
fails here.  The last section pins the JSON to the names Ollama's docs/api.md uses,
which Ollama's own clients read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from locallama import errors
from locallama.api.ollama import (
    chat_body,
    chat_request,
    create_body,
    create_modelfile,
    embed_body,
    embed_inputs,
    generate_body,
    generate_request,
)
from locallama.api.ollama_answers import (
    details_json,
    details_of,
    embed_json,
    embeddings_of,
    error_json,
    error_of,
    progress_json,
    progress_of,
    running_json,
    running_of,
    show_json,
    show_of,
    tag_json,
    tag_of,
)
from locallama.api.ollama_bodies import ChatBody, CreateBody, EmbedBody, GenerateBody
from locallama.api.ollama_stream import ChatLines, chat_line, chunk_of, chunks_of, generate_line
from locallama.errors import InvalidRequest, LocallamaError, ModelNotFound, NotSupported
from locallama.progress import ProgressEvent
from locallama.runtime.types import (
    ChatRequest,
    Chunk,
    Details,
    Embeddings,
    GenerateRequest,
    LoadedModelInfo,
    Message,
    ModelDetails,
    ModelEntry,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from locallama.store import parse_name
from locallama.store.modelfile import Modelfile

HEX = "ab" * 32
WHEN = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
DETAILS = Details(family="llama", families=["llama"], parameter_size="268.10M",
                  quantization_level="Q4_K_M")


def wire(value: dict[str, Any]) -> dict[str, Any]:
    """What the other side reads: the object through JSON text, as on the wire."""
    return json.loads(json.dumps(value))


def same(a: object, b: object) -> None:
    """Equal, with nan equal to nan (a prompt's first token has a nan logprob)."""
    assert repr(a) == repr(b)


#: fields of the Runtime's vocabulary added for issue 15 (reasoning, streamed tool
#: calls, tool_choice, tool-call ids) whose place on Ollama's wire is not built yet;
#: each leaves this set when its translation lands
#: Ollama's wire has no place for these: a stream sends each tool call whole on the
#: line where it completes (``chunks_of`` turns such a line into whole-call deltas, so
#: one chunk's fragments do not round-trip); tools are always the model's choice (no
#: tool_choice field); stop_sequence is Anthropic's face only; infill is llama-server's
#: /infill only
NOT_YET_ON_THE_WIRE = {"tool_call_deltas", "tool_choice", "stop_sequence", "infill"}


def every_field_set(value: object) -> None:
    """The 'every field' example really sets every field: a field added to the type
    without a place in the wire fails the round trip that uses this example."""
    def required(f: dataclasses.Field) -> bool:
        return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING

    fields = dataclasses.fields(value)
    defaults = type(value)(**{f.name: getattr(value, f.name) for f in fields if required(f)})
    for f in fields:
        if not required(f) and f.name not in NOT_YET_ON_THE_WIRE:
            assert getattr(value, f.name) != getattr(defaults, f.name), f.name


# -- requests ----------------------------------------------------------------------------


FULL_GENERATE = GenerateRequest(
    model="m:latest", prompt="Why?", system="Be brief.", template="{{ .Prompt }}",
    suffix="END", raw=True, context=[1, 2, 3], options={"temperature": 0.5, "stop": ["x"]},
    format={"type": "object"}, images=["aGk="], keep_alive="10m", logprobs=True,
    top_logprobs=3, echo=True, truncate=False, shift=False, think="high")

FULL_CHAT = ChatRequest(
    model="m:latest",
    messages=[Message("system", "Be brief."), Message("user", "Look", images=["aGk="]),
              Message("assistant", "", tool_calls=[ToolCall("f", {"x": [1, "y"]}, "call_1")],
                      thinking="Let me add."),
              Message("tool", "42", tool_name="f")],
    options={"num_ctx": 4096}, format="json",
    tools=[Tool("f", "adds", {"type": "object", "properties": {"x": {"type": "array"}}}),
           Tool("g")],
    keep_alive=0, logprobs=True, top_logprobs=20, truncate=False, shift=False, think=True)


@pytest.mark.parametrize("request_", [FULL_GENERATE, GenerateRequest("m"),
                                      GenerateRequest("m", "hi", keep_alive=-1)])
def test_generate_request_round_trip(request_):
    body = GenerateBody.model_validate(wire(generate_body(request_)))
    assert generate_request(body) == request_


@pytest.mark.parametrize("request_", [FULL_CHAT, ChatRequest("m"),
                                      ChatRequest("m", [Message("user", "hi")])])
def test_chat_request_round_trip(request_):
    body = ChatBody.model_validate(wire(chat_body(request_)))
    assert chat_request(body) == request_


def test_the_full_examples_set_every_field():
    every_field_set(FULL_GENERATE)
    every_field_set(FULL_CHAT)


def test_request_bodies_leave_defaults_out():
    assert generate_body(GenerateRequest("m")) == {"model": "m", "prompt": ""}
    assert chat_body(ChatRequest("m")) == {"model": "m", "messages": []}
    assert embed_body("m", ["a"]) == {"model": "m", "input": ["a"], "truncate": True}


def test_bodies_take_name_for_model_ignore_extras_and_read_null_as_unset():
    body = GenerateBody.model_validate({"name": "old", "prompt": "hi", "system": None,
                                        "options": None, "truncate": None, "mystery": 1})
    assert generate_request(body) == GenerateRequest("old", "hi")
    chat = ChatBody.model_validate({"model": "m", "messages": [
        {"role": "user", "content": None, "images": None, "tool_calls": None}]})
    assert chat_request(chat).messages == [Message("user", "")]


LONE = "\ud800"  # valid JSON (an escape of half a UTF-16 pair), not valid Unicode


@pytest.mark.parametrize("body, fields, loc, within", [
    (GenerateBody, {"prompt": "a" + LONE}, ("prompt",), None),
    (GenerateBody, {"prompt": "hi", "system": LONE}, ("system",), None),
    (GenerateBody, {"prompt": "hi", "format": {"properties": {"a": {"enum": [LONE]}}}},
     ("format",), "format.properties.a.enum[0]"),
    (GenerateBody, {"prompt": "hi", "options": {"stop": ["x", LONE]}}, ("options",),
     "options.stop[1]"),
    (GenerateBody, {"prompt": "hi", "options": {LONE: 1}}, ("options",), "a key in options"),
    (ChatBody, {"messages": [{"role": "user", "content": "ok"},
                             {"role": "user", "content": LONE}]},
     ("messages", 1, "content"), None),
    (ChatBody, {"messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": {"city": LONE}}}]}]},
     ("messages", 0, "tool_calls", 0, "function", "arguments"), "arguments.city"),
    (ChatBody, {"messages": [], "tools": [{"function": {"name": "f", "description": LONE}}]},
     ("tools",), "tools[0].function.description"),
    (EmbedBody, {"input": ["ok", LONE]}, ("input",), "input[1]"),
    (CreateBody, {"from": "m", "system": LONE}, ("system",), None),
    (CreateBody, {"modelfile": f"FROM m\nSYSTEM {LONE}"}, ("modelfile",), None),
], ids=["prompt", "system", "format", "stop", "option-name", "message", "tool-arguments",
        "tool-description", "input", "create-system", "modelfile"])
def test_text_that_is_not_unicode_is_refused_naming_the_field(body, fields, loc, within):
    """Python's JSON reads a lone surrogate; UTF-8 (llama.cpp, templates, files) cannot
    hold it, which once made a 500 far from the body."""
    with pytest.raises(ValidationError) as caught:
        body.model_validate({"model": "m", **fields})
    [error] = caught.value.errors()
    assert error["loc"] == loc
    assert error["msg"].startswith("not valid Unicode: a lone surrogate U+D800 at character")
    if within:
        assert error["msg"].endswith(f" of {within}")


def test_surrogate_pairs_and_other_text_pass():
    body = GenerateBody.model_validate({"model": "m", "prompt": "\U0001F600 caf\u00e9",
                                        "context": list(range(100_000))})
    assert body.prompt == "\U0001F600 caf\u00e9"


def test_think_passes_through_and_nameless_tools_are_refused():
    for value, think in ((True, True), ("low", "low"), ("false", False), (None, None)):
        assert generate_request(GenerateBody(model="m", prompt="hi", think=value)).think \
            == think
        assert chat_request(ChatBody(model="m", think=value)).think == think
    with pytest.raises(InvalidRequest, match="function.name") as caught:
        chat_request(ChatBody(model="m", tools=[{"type": "function", "function": {}}]))
    assert caught.value.param == "tools[0].function.name"
    with pytest.raises(InvalidRequest, match="a non-empty string") as caught:
        chat_request(ChatBody(model="m", tools=[{"function": {"name": "f"}},
                                                {"function": {"name": 5}}]))
    assert caught.value.param == "tools[1].function.name"


@pytest.mark.parametrize(("inputs", "dimensions"), [(["a", "b"], None), (["a"], 8)])
def test_embed_body_round_trip(inputs, dimensions):
    body = EmbedBody.model_validate(wire(embed_body("m", inputs, False, {"num_ctx": 64}, "1m",
                                                    dimensions)))
    assert (body.model, embed_inputs(body), body.truncate, body.options, body.keep_alive,
            body.dimensions) == ("m", inputs, False, {"num_ctx": 64}, "1m", dimensions)


def test_embed_input_may_be_one_string_or_none():
    assert embed_inputs(EmbedBody(model="m", input="one")) == ["one"]
    assert embed_inputs(EmbedBody(model="m", input="")) == []
    assert embed_inputs(EmbedBody(model="m")) == []


# -- create --------------------------------------------------------------------------------


def blob_path(digest: str) -> Path:
    """The server's side of an upload: where a blob of that digest lives."""
    return Path("/store/blobs") / digest.replace(":", "-")


def created(body: dict[str, Any]) -> Modelfile:
    return create_modelfile(CreateBody.model_validate(wire(body)), blob_path)


def test_modelfile_round_trip_through_the_create_body():
    modelfile = Modelfile(
        from_="llama3.2", template="{{ .Prompt }}", system="Be kind.",
        parameters=[("temperature", "0.5"), ("num_ctx", "4096"), ("stop", "a b"),
                    ("stop", "<|im_end|>"), ("use_mmap", "false")],
        messages=[("user", "Hi"), ("assistant", "Hello")], licenses=["MIT", "Apache 2.0"])
    every_field_set(dataclasses.replace(modelfile, adapter="set below, from a file",
                                        projectors=["set below, from files"]))
    assert created(create_body("m", modelfile)) == modelfile


def test_uploaded_files_are_reached_only_by_their_digests():
    modelfile = Modelfile(from_="/home/me/w.gguf", adapter="./lora.gguf")
    body = create_body("m", modelfile, files={"w.gguf": "sha256:" + HEX},
                       adapters={"lora.gguf": "sha256:" + "cd" * 32},
                       quantize="q4_0", imatrix="sha256:" + "ef" * 32)
    assert body == {"model": "m", "files": {"w.gguf": "sha256:" + HEX},
                    "adapters": {"lora.gguf": "sha256:" + "cd" * 32}, "quantize": "q4_0",
                    "imatrix": "sha256:" + "ef" * 32}
    assert created(body) == Modelfile(from_=str(blob_path("sha256:" + HEX)),
                                      adapter=str(blob_path("sha256:" + "cd" * 32)))
    read = CreateBody.model_validate(wire(body))
    assert (read.quantize, read.imatrix) == ("q4_0", "sha256:" + "ef" * 32)


def test_a_path_where_a_model_name_belongs_is_refused():
    with pytest.raises(InvalidRequest):
        created({"model": "m", "from": "/etc/passwd"})
    with pytest.raises(InvalidRequest, match="neither 'from' nor 'files'"):
        created({"model": "m"})
    with pytest.raises(NotSupported, match="exactly one GGUF file"):
        created({"model": "m", "files": {"a.gguf": "sha256:" + HEX},
                 "adapters": {"a.gguf": "sha256:" + HEX, "b.gguf": "sha256:" + HEX}})


def test_several_files_are_a_model_and_its_projectors():
    files = {"model.gguf": "sha256:" + HEX, "mmproj.gguf": "sha256:" + "cd" * 32}
    assert created({"model": "m", "files": files}) == Modelfile(
        from_=str(blob_path("sha256:" + HEX)), projectors=[str(blob_path("sha256:" + "cd" * 32))])


def test_a_bad_parameter_fails_while_the_body_is_built():
    with pytest.raises(InvalidRequest, match="warp"):
        create_body("m", Modelfile(from_="tiny", parameters=[("warp", "9")]))


# -- stream lines --------------------------------------------------------------------------


def logprob(token: str, value: float, *top: TokenLogprob) -> TokenLogprob:
    return TokenLogprob(token, value, list(token.encode()), list(top))


FINAL = Chunk(
    text="end", done=True, done_reason="length", prompt_eval_count=5,
    prompt_eval_duration=1_000, eval_count=3, eval_duration=2_000, load_duration=300,
    total_duration=4_000, context=[1, 2, 3, 4, 5, 6, 7, 8],
    logprobs=[logprob("a", -0.25, logprob("a", -0.25), logprob("b", -math.inf)),
              logprob("c", -math.inf)],
    prompt_logprobs=[logprob("<s>", math.nan), logprob("Hi", -3.5)],
    tool_calls=[ToolCall("f", {"x": 1}, "call_a"), ToolCall("g")], prompt_tokens=5,
    warnings=["prompt truncated"], thinking="so", draft_n=9, draft_n_accepted=7)


def test_the_final_example_sets_every_field():
    every_field_set(FINAL)


def test_generate_chunks_round_trip():
    final = dataclasses.replace(FINAL, tool_calls=None)  # a generate line has no message
    for chunk in (Chunk("a", logprobs=[logprob("a", -0.5)]), Chunk(""), final):
        same(chunk_of(wire(generate_line("m", chunk)), chat=False), chunk)


def test_chat_chunks_round_trip():
    final = dataclasses.replace(FINAL, context=None)  # a chat line has no context
    for chunk in (Chunk("a", prompt_logprobs=[logprob("<s>", math.nan)]), final):
        same(chunk_of(wire(chat_line("m", chunk)), chat=True), chunk)


def test_logprobs_without_a_json_value_come_back():
    line = wire(generate_line("m", FINAL))
    assert line["prompt_logprobs"][0]["logprob"] is None
    assert line["logprobs"][1]["logprob"] == -9999.0
    back = chunk_of(line, chat=False)
    assert math.isnan(back.prompt_logprobs[0].logprob)
    assert back.logprobs[1].logprob == back.logprobs[0].top[1].logprob == -math.inf


def test_a_raw_answer_has_no_context_but_keeps_its_prompt_tokens():
    back = chunk_of(wire(generate_line("m", FINAL, context=False)), chat=False)
    assert back.context is None and back.prompt_tokens == FINAL.prompt_tokens


def test_an_ollama_final_line_without_prompt_tokens():
    line = {"response": "", "done": True, "eval_count": 3, "prompt_eval_count": 2}
    assert chunk_of(line, chat=False).prompt_tokens == 2
    assert chunk_of(line | {"context": [1] * 10}, chat=False).prompt_tokens == 7
    assert chunk_of(line, chat=False).done_reason is None  # as sent (absent)


def test_tool_calls_sent_early_ride_on_the_final_chunk():
    call = {"function": {"name": "f", "arguments": {"x": 1}}}
    lines = [{"message": {"role": "assistant", "content": "", "tool_calls": [call]},
              "done": False},
             {"message": {"role": "assistant", "content": "ok"}, "done": False},
             {"message": {"role": "assistant", "content": ""}, "done": True},
             {"message": {"content": "after the end"}, "done": False}]
    chunks = list(chunks_of(lines, chat=True))
    assert [c.text for c in chunks] == ["", "ok", ""]
    assert [(d.index, d.name, d.arguments) for d in chunks[0].tool_call_deltas] == [
        (0, "f", ""), (0, "", '{"x": 1}')]
    assert chunks[0].tool_calls is None and chunks[2].tool_calls == [ToolCall("f", {"x": 1})]


def test_a_tool_message_names_its_tool_by_the_call_id():
    body = ChatBody.model_validate({"model": "m", "messages": [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_9", "function": {"name": "weather", "arguments": {}}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_9"}]})
    assert chat_request(body).messages[1].tool_name == "weather"


def test_chat_lines_send_each_call_whole_where_it_completes():
    lines = ChatLines("m")
    first = lines(Chunk(tool_call_deltas=[ToolCallDelta(0, "call_a", "f"),
                                          ToolCallDelta(0, arguments='{"x": ')]))
    assert "tool_calls" not in first["message"]
    second = lines(Chunk(tool_call_deltas=[ToolCallDelta(0, arguments="1}"),
                                           ToolCallDelta(1, "call_b", "g")]))
    assert second["message"]["tool_calls"] == [
        {"id": "call_a", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}]
    final = lines(Chunk(done=True, tool_calls=[ToolCall("f", {"x": 1}, "call_a"),
                                               ToolCall("g", {}, "call_b")]))
    assert final["message"]["tool_calls"] == [
        {"id": "call_b", "function": {"index": 1, "name": "g", "arguments": {}}}]


def test_a_stream_without_a_final_line_ends_without_a_done_chunk():
    chunks = list(chunks_of([{"response": "a", "done": False}], chat=False))
    assert [c.done for c in chunks] == [False]


# -- records -------------------------------------------------------------------------------


def test_details_round_trip():
    assert details_of(wire(details_json(DETAILS))) == DETAILS
    assert details_of(wire(details_json(Details()))) == Details()
    assert details_of(None) == Details()


@pytest.mark.parametrize("broken", [None, "blob sha256:ab… is missing"])
def test_model_entry_round_trip(broken):
    entry = ModelEntry(parse_name("hf.co/me/model:Q4_K_M"), "sha256:" + HEX, 1234, WHEN,
                       DETAILS, broken)
    assert tag_of(wire(tag_json(entry))) == entry


@pytest.mark.parametrize("expires", [WHEN + timedelta(minutes=5), None])
def test_loaded_model_round_trip(expires):
    info = LoadedModelInfo("m:latest", "sha256:" + HEX, 5_000_000, expires, 4096, DETAILS,
                           size_vram=1_000)
    line = wire(running_json(info))
    assert running_of(line) == info
    if expires is None:  # kept until stopped: a date centuries away, as Ollama shows it
        assert datetime.fromisoformat(line["expires_at"]).year > 2300


def test_a_cluster_replicas_row_round_trips_and_a_plain_row_has_no_replica():
    info = LoadedModelInfo("m:latest", "sha256:" + HEX, 5, None, 4096, DETAILS,
                           replica="r1x2", node="10.0.0.7")
    line = wire(running_json(info))
    assert (line["replica"], line["node"]) == ("r1x2", "10.0.0.7")
    assert running_of(line) == info
    plain = running_json(LoadedModelInfo("m:latest", "sha256:" + HEX, 5, None, 4096, DETAILS))
    assert "replica" not in plain and "node" not in plain


def test_model_details_round_trip():
    details = ModelDetails(
        name="m:latest", digest="sha256:" + HEX, size=1234, architecture="llama",
        parameter_count=268_100_000, context_length=2048, embedding_length=64,
        quantization="Q4_K_M", template="{{ .Prompt }}", system="Be brief.",
        parameters={"temperature": 0.3, "num_ctx": 4096, "stop": ["a b", "<|im_end|>"],
                    "use_mmap": False},
        messages=[Message("user", "Hi"),
                  Message("assistant", "", tool_calls=[ToolCall("f", {"x": 1})])],
        licenses=["MIT"], modelfile="FROM x\n",
        model_info={"general.architecture": "llama", "general.parameter_count": 268_100_000,
                    "llama.context_length": 2048, "llama.embedding_length": 64},
        modified_at="2025-01-02T03:04:05.123456Z", capabilities=["completion", "tools"],
        projector_info={"general.architecture": "clip", "clip.projector_type": "gemma3"})
    every_field_set(details)
    assert show_of(wire(show_json(details)), details.name, details.digest,
                   details.size) == details


def test_show_joins_several_licenses_as_ollama_does():
    details = ModelDetails("m", "", 0, "llama", 8, None, None, "F32", None, None, {}, [],
                           ["MIT", "Apache 2.0"], "")
    assert show_of(wire(show_json(details)), "m").licenses == ["MIT\nApache 2.0"]


def test_embeddings_round_trip():
    result = Embeddings([[0.5, -0.25], [1.0, 0.0]], 7, total_duration=900, load_duration=100)
    assert embeddings_of(wire(embed_json("m", result))) == result


@pytest.mark.parametrize("event", [ProgressEvent("pulling sha256:ab", "sha256:ab", 100, 50),
                                   ProgressEvent("success")])
def test_progress_round_trip(event):
    assert progress_of(wire(progress_json(event))) == event


# -- errors --------------------------------------------------------------------------------


def _every_error() -> list[LocallamaError]:
    made: list[LocallamaError] = []
    for cls in vars(errors).values():
        if not (isinstance(cls, type) and issubclass(cls, LocallamaError)):
            continue
        if cls is ModelNotFound:
            made.append(ModelNotFound("m:latest", "pull it first"))
        elif issubclass(cls, errors.ModelfileError):
            made.append(cls("unknown instruction", 3))
        elif issubclass(cls, InvalidRequest):
            made.append(cls(f"{cls.__name__} happened", "options.top_p"))
        else:
            made.append(cls(f"{cls.__name__} happened"))
    return made


@pytest.mark.parametrize("exc", _every_error(), ids=lambda e: type(e).__name__)
def test_each_error_class_round_trips_by_its_code(exc):
    back = error_of(wire(error_json(exc)))
    assert (type(back), str(back)) == (type(exc), str(exc))
    assert getattr(back, "param", None) == getattr(exc, "param", None)
    if isinstance(exc, ModelNotFound):
        assert back.name == "m:latest"


def test_every_error_class_is_covered():
    classes = {cls for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, LocallamaError)}
    assert {type(e) for e in _every_error()} == classes
    assert len({cls.code for cls in classes}) == len(classes)  # a code names one class


def test_error_bodies_without_a_code():
    assert type(error_of({"error": "model 'x' not found"}, 404)) is ModelNotFound
    assert type(error_of({"error": "odd"}, 500)) is LocallamaError
    assert type(error_of({"error": {"message": "no", "code": "invalid_request"}})) is \
        InvalidRequest  # an OpenAI-shaped body
    assert error_of({}, 404) is None and error_of(None, 500) is None


def test_error_messages_are_capped():
    body = error_json(InvalidRequest("x" * 5000))
    assert len(body["error"]) == errors.MESSAGE_LIMIT + 1 and body["error"].endswith("…")
    assert "param" not in body


# -- Ollama's documented field names (docs/api.md) ---------------------------------------------


def test_generate_lines_use_ollamas_names():
    line = generate_line("m", FINAL)
    assert {"model", "created_at", "response", "done", "done_reason", "context",
            "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
            "eval_count", "eval_duration"} <= set(line)
    assert line["created_at"].endswith("Z") and datetime.fromisoformat(line["created_at"])
    assert set(generate_line("m", Chunk("a"))) == {"model", "created_at", "response", "done"}


def test_chat_lines_use_ollamas_names():
    line = chat_line("m", FINAL)
    assert line["message"] == {"role": "assistant", "content": "end", "thinking": "so",
                               "tool_calls": [
        {"id": "call_a", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}},
        {"function": {"index": 1, "name": "g", "arguments": {}}}]}
    assert "context" not in line and line["done_reason"] == "length"


def test_request_bodies_use_ollamas_names():
    body = generate_body(FULL_GENERATE)
    assert set(body) == {"model", "prompt", "system", "template", "suffix", "raw", "context",
                         "options", "format", "images", "keep_alive", "logprobs",
                         "top_logprobs", "echo", "truncate", "shift", "think"}
    chat = chat_body(FULL_CHAT)
    assert chat["tools"][0] == {"type": "function", "function": {
        "name": "f", "description": "adds",
        "parameters": {"type": "object", "properties": {"x": {"type": "array"}}}}}
    assert chat["messages"][2] == {"role": "assistant", "content": "",
                                   "thinking": "Let me add.",
                                   "tool_calls": [{"id": "call_1", "function": {
                                       "index": 0, "name": "f", "arguments": {"x": [1, "y"]}}}]}
    assert chat["messages"][3] == {"role": "tool", "content": "42", "tool_name": "f"}


def test_records_use_ollamas_names():
    entry = ModelEntry(parse_name("m"), "sha256:" + HEX, 1, WHEN, DETAILS)
    tag = tag_json(entry)
    assert tag == {"name": "m:latest", "model": "m:latest",
                   "modified_at": "2025-01-02T03:04:05.123456Z", "size": 1, "digest": HEX,
                   "details": {"parent_model": "", "format": "gguf", "family": "llama",
                               "families": ["llama"], "parameter_size": "268.10M",
                               "quantization_level": "Q4_K_M"}}
    assert details_json(Details())["families"] is None
    ps = running_json(LoadedModelInfo("m:latest", "sha256:" + HEX, 9, WHEN, 4096, DETAILS))
    assert set(ps) == {"name", "model", "size", "digest", "details", "expires_at",
                       "size_vram", "context_length"}
    assert (ps["digest"], ps["expires_at"]) == (HEX, "2025-01-02T03:04:05.123456Z")


def test_show_uses_ollamas_names_and_text_parameters():
    details = ModelDetails("m", "", 0, "llama", 8, 2048, 64, "F32", "{{ .Prompt }}", None,
                           {"temperature": 0.7, "stop": ["a", "b"]}, [Message("user", "Hi")],
                           ["MIT"], "FROM x\n", {"tokenizer.ggml.tokens": "[32 items]"})
    show = show_json(details)
    assert set(show) == {"license", "modelfile", "parameters", "template", "messages",
                         "details", "model_info", "capabilities"}  # no empty system
    assert show["parameters"] == ('temperature                    0.7\n'
                                  'stop                           "a"\n'
                                  'stop                           "b"')
    assert show["details"]["parameter_size"] and show["details"]["quantization_level"] == "F32"
    assert show["model_info"] == {"tokenizer.ggml.tokens": [], "general.parameter_count": 8}


def test_embed_and_progress_use_ollamas_names():
    assert set(embed_json("m", Embeddings([[1.0]], 1))) == {
        "model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
    assert progress_json(ProgressEvent("pulling", "sha256:ab", 10, 5)) == {
        "status": "pulling", "digest": "sha256:ab", "total": 10, "completed": 5}
    assert progress_json(ProgressEvent("success")) == {"status": "success"}
