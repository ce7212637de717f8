"""The OpenAI wire format without HTTP: bodies -> the Runtime's requests (api/openai.py)
and hand-built chunks -> the objects the OpenAI API reference documents
(api/openai_objects.py).  Objects are also validated with the official ``openai`` SDK's
own types where those accept what the reference allows (they type a logprob and a
stream event's finish_reason as never null, which the API sends; the SDK itself reads
answers without validating)."""

from __future__ import annotations

import base64
import json
import math
import struct
from datetime import UTC, datetime

import pytest
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from locallama.api.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    Run,
    chat_requests,
    completion_requests,
    embedding_inputs,
)
from locallama.api.openai_objects import (
    ChatStream,
    CompletionStream,
    Head,
    chat_completion,
    embedding_list,
    error_body,
    invalid_body,
    model_list,
    model_object,
    text_completion,
)
from locallama.errors import (
    MESSAGE_LIMIT,
    BadModelFile,
    InvalidModelFile,
    InvalidRequest,
    ModelNotFound,
    NotSupported,
)
from locallama.runtime.types import (
    Chunk,
    GenerateRequest,
    ModelEntry,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
)
from locallama.store import parse_name

HEAD = Head("chatcmpl-1", 1_700_000_000, "tiny")
NAN, INF = math.nan, math.inf


def tok(text: str, logprob: float, *top: tuple[str, float]) -> TokenLogprob:
    return TokenLogprob(text, logprob, list(text.encode()),
                        [TokenLogprob(t, lp, list(t.encode())) for t, lp in top])


def dumps(value: object) -> str:
    """As the server sends it: JSON has no nan or inf, so any left would fail here."""
    return json.dumps(value, allow_nan=False)


# A streamed answer: text with logprobs (one alternative the model gives no chance,
# -inf, and a token without a value, nan), a chunk that carries nothing, the final chunk.
ANSWER = [
    Chunk(text="Hel", logprobs=[tok("Hel", -0.25, ("Hel", -0.25), ("Hi", -INF))]),
    Chunk(),
    Chunk(text="lo", logprobs=[tok("lo", NAN)]),
    Chunk(done=True, done_reason="length", prompt_tokens=5, prompt_eval_count=3, eval_count=2),
]
CALL = ToolCall("get_weather", {"city": "Paris"})
CALLS = [Chunk(done=True, done_reason="stop", tool_calls=[CALL], prompt_tokens=5, eval_count=7)]


# -- chat.completion ------------------------------------------------------------------------


def test_a_chat_completion_joins_the_text_and_keeps_every_logprob():
    out = chat_completion(HEAD, [ANSWER], logprobs=True)
    ChatCompletion.model_validate_json(dumps(chat_completion(HEAD, [ANSWER], logprobs=False)))
    assert {k: out[k] for k in ("id", "object", "created", "model")} == {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "tiny"}
    [choice] = out["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert choice["message"] == {"role": "assistant", "content": "Hello", "refusal": None}
    hel, lo = choice["logprobs"]["content"]
    assert hel == {"token": "Hel", "logprob": -0.25, "bytes": [72, 101, 108], "top_logprobs": [
        {"token": "Hel", "logprob": -0.25, "bytes": [72, 101, 108]},
        {"token": "Hi", "logprob": -9999.0, "bytes": [72, 105]}]}
    assert lo["logprob"] is None and lo["top_logprobs"] == []
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                            "prompt_tokens_details": {"cached_tokens": 2}}


def test_a_chat_completion_without_logprobs_has_null_logprobs():
    out = chat_completion(HEAD, [ANSWER], logprobs=False)
    assert out["choices"][0]["logprobs"] is None


def test_tool_calls_are_the_message_and_the_finish_reason():
    out = chat_completion(HEAD, [CALLS], logprobs=False)
    parsed = ChatCompletion.model_validate_json(dumps(out))
    [choice] = out["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert parsed.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_text_and_tool_calls_together_keep_the_text():
    chunks = [Chunk(text="Let me check."), *CALLS]
    message = chat_completion(HEAD, [chunks], logprobs=False)["choices"][0]["message"]
    assert message["content"] == "Let me check." and len(message["tool_calls"]) == 1


def test_n_choices_count_the_prompt_once_and_every_completion():
    second = [Chunk(text="Hi"), Chunk(done=True, done_reason="stop", prompt_tokens=5,
                                      prompt_eval_count=5, eval_count=1)]
    out = chat_completion(HEAD, [ANSWER, second], logprobs=False)
    ChatCompletion.model_validate_json(dumps(out))
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert [c["message"]["content"] for c in out["choices"]] == ["Hello", "Hi"]
    assert [c["finish_reason"] for c in out["choices"]] == ["length", "stop"]
    # the prompt is cached only as far as every choice found it cached
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                            "prompt_tokens_details": {"cached_tokens": 0}}


# -- chat.completion.chunk ---------------------------------------------------------------------


def chat_events(answers: list[list[Chunk]], logprobs: bool, include_usage: bool) -> list[dict]:
    stream = ChatStream(HEAD, logprobs, include_usage)
    events = []
    for index, chunks in enumerate(answers):
        events.append(stream.start(index))
        events += [e for c in chunks if (e := stream.event(index, c)) is not None]
    if (usage := stream.end()) is not None:
        events.append(usage)
    for event in events:
        dumps(event)
        if not logprobs:
            ChatCompletionChunk.model_validate_json(dumps(event))
    return events


def test_a_chat_stream_starts_with_the_role_and_ends_with_the_usage():
    events = chat_events([ANSWER], logprobs=True, include_usage=True)
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == "chatcmpl-1"
               for e in events)
    *body, usage = events
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [e["choices"][0]["delta"] for e in body[1:]] == [
        {"content": "Hel"}, {"content": "lo"}, {}]  # the chunk carrying nothing sends nothing
    assert [e["choices"][0]["finish_reason"] for e in body] == [None, None, None, "length"]
    logprobs = [e["choices"][0]["logprobs"] for e in body]
    assert logprobs[0] is None and logprobs[3] is None  # the role, the final delta
    assert [t["logprob"] for t in logprobs[1]["content"]] == [-0.25]
    assert [t["logprob"] for t in logprobs[2]["content"]] == [None]  # nan: null
    assert all(e["usage"] is None for e in body)
    assert usage["choices"] == [] and usage["usage"] == chat_completion(
        HEAD, [ANSWER], logprobs=False)["usage"]


def test_a_chat_stream_without_include_usage_has_no_usage_at_all():
    events = chat_events([ANSWER], logprobs=False, include_usage=False)
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in e and e["choices"][0]["logprobs"] is None for e in events)


def test_a_chat_stream_sends_the_tool_calls_on_the_final_delta():
    events = chat_events([CALLS], logprobs=False, include_usage=False)
    [choice] = events[-1]["choices"]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["delta"]["tool_calls"]
    assert call["index"] == 0 and call["id"].startswith("call_")
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_a_chat_stream_of_n_choices_sends_them_in_turn_and_sums_the_usage():
    second = [Chunk(text="Hi"), Chunk(done=True, done_reason="stop", text="!",
                                      prompt_tokens=5, prompt_eval_count=5, eval_count=2)]
    events = chat_events([ANSWER, second], logprobs=False, include_usage=True)
    indexes = [e["choices"][0]["index"] for e in events[:-1]]
    assert indexes == [0, 0, 0, 0, 1, 1, 1]
    texts = ["".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]
                     if e["choices"][0]["index"] == i) for i in (0, 1)]
    assert texts == ["Hello", "Hi!"]  # the final chunk's text is not lost
    assert events[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4,
                                   "total_tokens": 9,
                                   "prompt_tokens_details": {"cached_tokens": 0}}


# -- text_completion ----------------------------------------------------------------------------


def run(prompt: str | list[int], index: int = 0, **fields) -> Run:
    request = GenerateRequest(model="tiny", raw=True,
                              prompt=prompt if isinstance(prompt, str) else "",
                              context=None if isinstance(prompt, str) else prompt, **fields)
    return Run(index, prompt, request)


# The prompt "ab" scored with echo: its first token has no logprob (nan), then a
# completion of two chunks.
SCORED = [Chunk(prompt_logprobs=[tok("a", NAN), tok("b", -1.0, ("c", -0.5))]),
          Chunk(text=" x", logprobs=[tok(" x", -0.5, ("y", -1.5), (" x", -0.5))]),
          Chunk(text="y", logprobs=[tok("y", -INF)]),
          Chunk(done=True, done_reason="stop", prompt_tokens=2, prompt_eval_count=2,
                eval_count=2)]


def test_echo_puts_the_scored_prompt_before_the_completion():
    echoed = run("ab", echo=True, logprobs=True, top_logprobs=1)
    out = text_completion(Head("cmpl-1", 1, "tiny"), [(echoed, SCORED)])
    dumps(out)
    assert out["object"] == "text_completion" and out["id"] == "cmpl-1"
    [choice] = out["choices"]
    assert choice["text"] == "ab xy" and choice["finish_reason"] == "stop"
    lp = choice["logprobs"]
    assert lp["tokens"] == ["a", "b", " x", "y"]
    assert "".join(lp["tokens"]) == choice["text"]
    assert [choice["text"][o:o + len(t)] for o, t in zip(lp["text_offset"], lp["tokens"],
                                                         strict=True)] == lp["tokens"]
    assert lp["token_logprobs"] == [None, -1.0, -0.5, -9999.0]
    # the alternatives and the chosen token; none for the token without a value
    assert lp["top_logprobs"] == [None, {"c": -0.5, "b": -1.0}, {"y": -1.5, " x": -0.5},
                                  {"y": -9999.0}]
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4,
                            "prompt_tokens_details": {"cached_tokens": 0}}


def test_without_echo_the_offsets_start_after_the_prompt():
    plain = run("ab", logprobs=True, top_logprobs=1)
    [choice] = text_completion(Head("cmpl-1", 1, "tiny"), [(plain, SCORED)])["choices"]
    assert choice["text"] == " xy"
    assert choice["logprobs"]["tokens"] == [" x", "y"]
    assert choice["logprobs"]["text_offset"] == [2, 4]


def test_echo_of_token_ids_spells_the_prompt_by_its_scored_tokens():
    ids = run([5, 6], echo=True)
    [choice] = text_completion(Head("cmpl-1", 1, "tiny"), [(ids, SCORED)])["choices"]
    assert choice["text"] == "ab xy" and choice["logprobs"] is None


def test_completions_usage_counts_each_prompt_once_over_its_choices():
    def final(prompt_tokens: int, eval_count: int) -> list[Chunk]:
        return [Chunk(text="z"), Chunk(done=True, prompt_tokens=prompt_tokens,
                                       prompt_eval_count=1, eval_count=eval_count)]

    answers = [(run("a", 0), final(3, 1)), (run("a", 0), final(3, 2)),
               (run("bb", 1), final(7, 4)), (run("bb", 1), final(7, 8))]
    out = text_completion(Head("cmpl-1", 1, "tiny"), answers)
    Completion.model_validate_json(dumps(out))
    assert [c["index"] for c in out["choices"]] == [0, 1, 2, 3]
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 15, "total_tokens": 25,
                            "prompt_tokens_details": {"cached_tokens": 2 + 6}}


def test_a_completion_stream_matches_the_whole_answer():
    head = Head("cmpl-1", 1, "tiny")
    echoed = run("ab", echo=True, logprobs=True, top_logprobs=1)
    stream = CompletionStream(head, include_usage=True)
    stream.start(0, echoed)
    events = [e for c in SCORED if (e := stream.event(c)) is not None]
    events.append(stream.end())
    for event in events:
        dumps(event)
    *body, usage = events
    whole = text_completion(head, [(echoed, SCORED)])
    [choice] = whole["choices"]
    assert body[0]["choices"][0]["text"] == "ab"  # the echo comes first, on its own
    assert "".join(e["choices"][0]["text"] for e in body) == choice["text"]
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [x for e in body if e["choices"][0]["logprobs"]
                for x in e["choices"][0]["logprobs"][key]] == choice["logprobs"][key]
    assert [e["choices"][0]["finish_reason"] for e in body] == [None, None, None, "stop"]
    assert all(e["usage"] is None for e in body)
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]


def test_a_completion_stream_without_include_usage_ends_with_the_finish():
    stream = CompletionStream(Head("cmpl-1", 1, "tiny"), include_usage=False)
    stream.start(3, run("ab"))
    events = [e for c in SCORED if (e := stream.event(c)) is not None]
    assert stream.end() is None and all("usage" not in e for e in events)
    assert [e["choices"][0]["text"] for e in events] == [" x", "y", ""]
    assert {e["choices"][0]["index"] for e in events} == {3}


# -- embeddings, models, errors -----------------------------------------------------------------


def test_embeddings_as_floats_and_as_base64():
    vectors = [[0.5, -0.25, 1.0], [0.0, 0.125, -1.5]]
    floats = embedding_list("tiny", vectors, 6)
    CreateEmbeddingResponse.model_validate_json(dumps(floats))
    assert floats["object"] == "list" and floats["model"] == "tiny"
    assert [(d["object"], d["index"], d["embedding"]) for d in floats["data"]] == [
        ("embedding", 0, vectors[0]), ("embedding", 1, vectors[1])]
    assert floats["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    encoded = embedding_list("tiny", vectors, 6, "base64")
    for item, vector in zip(encoded["data"], vectors, strict=True):
        raw = base64.b64decode(item["embedding"])
        assert list(struct.unpack("<3f", raw)) == vector  # little-endian float32


def test_model_objects():
    when = datetime(2024, 5, 1, tzinfo=UTC)
    entries = [ModelEntry(parse_name("tiny"), "sha256:0", 1, when),
               ModelEntry(parse_name("someone/big:q4"), "sha256:1", 1, when, broken="no blob")]
    out = model_list(entries)
    assert out["object"] == "list"
    tiny, big = out["data"]
    Model.model_validate_json(dumps(tiny))
    assert tiny == {"id": "tiny:latest", "object": "model", "created": int(when.timestamp()),
                    "owned_by": "library"}
    assert big["id"] == "someone/big:q4" and big["owned_by"] == "someone"
    assert big["broken"] == "no blob"
    assert model_object(entries[0]) == tiny


@pytest.mark.parametrize("exc, status, kind, param", [
    (ModelNotFound("no-such-model"), 404, "invalid_request_error", "model"),
    (InvalidRequest("bad", "messages[0].role"), 400, "invalid_request_error",
     "messages[0].role"),
    (NotSupported("not yet"), 501, "invalid_request_error", None),
    (BadModelFile("broken"), 500, "server_error", None),
    (InvalidModelFile("not a GGUF"), 400, "invalid_request_error", None),
])
def test_error_bodies(exc, status, kind, param):
    assert error_body(exc, status) == {"error": {"message": exc.message, "type": kind,
                                                 "param": param, "code": exc.code}}


def test_an_error_message_is_capped():
    message = error_body(InvalidRequest("x" * 5000), 400)["error"]["message"]
    assert len(message) == MESSAGE_LIMIT + 1 and message.endswith("…")


def test_a_validation_error_body():
    assert invalid_body("n: too small", "n", "invalid_value") == {"error": {
        "message": "n: too small", "type": "invalid_request_error", "param": "n",
        "code": "invalid_value"}}


# -- bodies -> the Runtime's requests ----------------------------------------------------------


def test_completion_requests_are_prompt_major_with_seeded_choices():
    body = CompletionRequest(model="tiny", prompt=["a", "b"], n=2, seed=4, logprobs=3)
    runs = completion_requests(body)
    assert [(r.prompt_index, r.prompt, r.request.prompt) for r in runs] == [
        (0, "a", "a"), (0, "a", "a"), (1, "b", "b"), (1, "b", "b")]
    assert [r.request.options["seed"] for r in runs] == [4, 5, 4, 5]
    [ids] = completion_requests(CompletionRequest(model="tiny", prompt=[[7], [1, 2]]))[1:]
    assert ids.request.context == [1, 2] and ids.request.prompt == ""  # the ids as they are
    assert all(r.request.raw and r.request.logprobs and r.request.top_logprobs == 3
               and r.request.options["num_predict"] == 16 for r in runs)


def test_chat_requests_follow_tool_choice():
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
    named = {"type": "function", "function": {"name": "b"}}
    names = [[t.name for t in chat_requests(ChatCompletionRequest(
        model="tiny", messages=[{"role": "user", "content": "hi"}], tools=tools,
        tool_choice=choice))[0].tools or ()] for choice in ("auto", "none", named)]
    assert names == [["a", "b"], [], ["a", "b"]]
    choices = [chat_requests(ChatCompletionRequest(
        model="tiny", messages=[USER], tools=tools, tool_choice=choice))[0].tool_choice
        for choice in ("auto", "required", named)]
    assert choices == [None, "required", "b"]


@pytest.mark.parametrize(("effort", "think"), [
    (None, None), ("none", False), ("minimal", False), ("low", "low"), ("high", "high")])
def test_reasoning_effort_is_think(effort, think):
    body = ChatCompletionRequest(model="m", messages=[USER], reasoning_effort=effort)
    assert chat_requests(body)[0].think == think


def test_reasoning_content_and_call_ids_sent_back_reach_the_runtime():
    body = ChatCompletionRequest(model="m", messages=[
        USER, {"role": "assistant", "content": "", "reasoning_content": "hmm",
               "tool_calls": [{"id": "call_7", "type": "function",
                               "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_7", "content": "42"}])
    _, assistant, tool = chat_requests(body)[0].messages
    assert (assistant.thinking, assistant.tool_calls[0].id) == ("hmm", "call_7")
    assert tool.tool_name == "f"


def test_a_chat_stream_sends_reasoning_and_tool_calls_as_they_form():
    chunks = [Chunk(thinking="Weather? "), Chunk(thinking="Paris."),
              Chunk(text="Checking."),
              Chunk(tool_call_deltas=[ToolCallDelta(0, "call_x", "get_weather"),
                                      ToolCallDelta(0, arguments='{"city": ')]),
              Chunk(tool_call_deltas=[ToolCallDelta(0, arguments='"Paris"}')]),
              Chunk(done=True, done_reason="stop", tool_calls=[
                  ToolCall("get_weather", {"city": "Paris"}, "call_x")])]
    events = chat_events([chunks], logprobs=False, include_usage=False)
    for event in events:
        ChatCompletionChunk.model_validate(event)
    deltas = [e["choices"][0]["delta"] for e in events]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Weather? Paris."
    assert "".join(d.get("content") or "" for d in deltas) == "Checking."
    calls = [c for d in deltas for c in d.get("tool_calls", ())]
    assert calls[0] == {"index": 0, "id": "call_x", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_chat_completion_carries_reasoning_content_and_the_call_ids():
    chunks = [Chunk(thinking="hmm"), Chunk(text="ok"),
              Chunk(done=True, tool_calls=[ToolCall("f", {}, "call_q")])]
    message = chat_completion(HEAD, [chunks], logprobs=False)["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("hmm", "ok")
    assert message["tool_calls"][0]["id"] == "call_q"


LONE = "\ud800"  # valid JSON (an escape of half a UTF-16 pair), not valid Unicode
USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize("body, fields, loc", [
    (CompletionRequest, {"prompt": LONE}, ("prompt",)),
    (CompletionRequest, {"prompt": ["ok", LONE]}, ("prompt",)),
    (EmbeddingRequest, {"input": LONE}, ("input",)),
    (ChatCompletionRequest, {"messages": [{"role": "user", "content": LONE}]},
     ("messages", 0, "content")),
    (ChatCompletionRequest, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": LONE}]}]}, ("messages", 0, "content")),
    (ChatCompletionRequest, {"messages": [USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "function": {"name": "f", "arguments": '{"a": "' + LONE + '"}'}}]}]},
     ("messages", 1, "tool_calls", 0, "function", "arguments")),
    (ChatCompletionRequest, {"messages": [USER], "tools": [
        {"function": {"name": "f", "description": LONE}}]},
     ("tools", 0, "function", "description")),
    (ChatCompletionRequest, {"messages": [USER], "stop": [LONE]}, ("stop",)),
], ids=["prompt", "prompts", "input", "content", "content-part", "tool-arguments",
        "tool-description", "stop"])
def test_text_that_is_not_unicode_is_refused_naming_the_field(body, fields, loc):
    with pytest.raises(ValidationError) as caught:
        body.model_validate({"model": "m", **fields})
    [error] = caught.value.errors()
    assert error["loc"] == loc
    assert error["msg"].startswith("not valid Unicode: a lone surrogate U+D800")


def test_tool_arguments_whose_json_escapes_a_lone_surrogate_are_refused():
    body = ChatCompletionRequest.model_validate({"model": "m", "messages": [
        USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {
            "name": "f", "arguments": json.dumps({"where": {"city": LONE}})}}]}]})
    with pytest.raises(InvalidRequest, match="U\\+D800 at character 0 of arguments.where.city"
                       ) as caught:
        chat_requests(body)
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize("value, param", [([], "input"), ([[1], []], "input[1]")])
def test_empty_embedding_inputs_are_refused(value, param):
    with pytest.raises(InvalidRequest) as info:
        embedding_inputs(EmbeddingRequest(model="tiny", input=value))
    assert info.value.param == param


def test_embedding_inputs_keep_texts_and_token_ids():
    assert embedding_inputs(EmbeddingRequest(model="tiny", input="a")) == ["a"]
    assert embedding_inputs(EmbeddingRequest(model="tiny", input=[1, 2])) == [[1, 2]]
    assert embedding_inputs(EmbeddingRequest(model="tiny", input=["a", "b"])) == ["a", "b"]
