"""The Anthropic Messages API's translations: bodies -> ChatRequest, chunks -> the message
object and its stream events, errors.  Pure: no server (tests/server/test_anthropic_api.py
runs the official SDK against one)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from locallama.api.anthropic import CountTokensRequest, MessagesRequest, chat_request
from locallama.api.anthropic_answers import (
    MessageStream,
    error_body,
    joined_calls,
    message,
    stop_reason,
)
from locallama.errors import InvalidRequest
from locallama.runtime.types import Chunk, Message, Tool, ToolCall, ToolCallDelta

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def body(**fields) -> MessagesRequest:
    return MessagesRequest.model_validate(
        {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}],
         **fields})


# -- requests ------------------------------------------------------------------------------


def test_a_whole_request_maps_onto_the_runtime_request():
    request = chat_request(body(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        stop_sequences=["END"], temperature=0.5, top_p=0.9, top_k=40,
        metadata={"user_id": "u1"}, tools=[WEATHER], tool_choice={"type": "auto"},
        thinking={"type": "enabled", "budget_tokens": 2048}))
    assert request.model == "m"
    assert request.messages == [Message("system", "Be brief.\n\nBe kind."), Message("user", "Hi")]
    assert request.options == {"num_predict": 16, "stop": ["END"], "temperature": 0.5,
                               "top_p": 0.9, "top_k": 40}
    assert request.tools == [Tool("get_weather", "Weather in a city", WEATHER["input_schema"])]
    assert request.tool_choice is None and request.think is True


def test_max_tokens_is_required_and_at_least_one():
    with pytest.raises(ValidationError, match="max_tokens"):
        MessagesRequest.model_validate({"model": "m", "messages": []})
    with pytest.raises(ValidationError, match="max_tokens"):
        body(max_tokens=0)
    # count_tokens takes the prompt only
    assert CountTokensRequest.model_validate({"model": "m", "messages": []}).model == "m"


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, None), ({"type": "any"}, "required"),
    ({"type": "tool", "name": "get_weather"}, "get_weather"), ({"type": "none"}, "none")])
def test_tool_choice(choice, expected):
    request = chat_request(body(tools=[WEATHER], tool_choice=choice))
    assert request.tool_choice == expected and request.tools


def test_tool_choice_must_name_a_given_tool():
    with pytest.raises(InvalidRequest, match="'nope' is not in tools") as info:
        chat_request(body(tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}))
    assert info.value.param == "tool_choice.name"


@pytest.mark.parametrize(("thinking", "think"), [
    (None, None), ({"type": "enabled", "budget_tokens": 1024}, True),
    ({"type": "disabled"}, False)])
def test_thinking(thinking, think):
    assert chat_request(body(thinking=thinking)).think is think


def test_a_tool_round_trip_keeps_ids_and_names():
    request = chat_request(body(messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Call the tool.", "signature": "sig"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "text", "text": "18C"}, {"type": "text", "text": "sunny"}]},
            {"type": "text", "text": "And tomorrow?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no data",
             "is_error": True}]},
    ], tools=[WEATHER]))
    assert request.messages == [
        Message("user", "Weather in Paris?"),
        Message("assistant", "Let me look.", tool_calls=[
            ToolCall("get_weather", {"city": "Paris"}, "toolu_1")], thinking="Call the tool."),
        Message("tool", "18C\n\nsunny", tool_name="get_weather"),
        Message("user", "And tomorrow?"),
        Message("assistant", "", tool_calls=[ToolCall("get_weather", {}, "toolu_2")]),
        Message("tool", "Error: no data", tool_name="get_weather"),
    ]


def test_base64_and_url_images_reach_the_runtime_and_files_are_refused():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "aGk="}}
    request = chat_request(body(messages=[{"role": "user", "content": [
        image, {"type": "text", "text": "What is this?"}]}]))
    assert request.messages == [Message("user", "What is this?", ["aGk="])]
    by_url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    request = chat_request(body(messages=[{"role": "user", "content": [by_url]}]))
    assert request.messages[0].images == ["https://example.com/a.png"]  # the server fetches it
    by_file = {"type": "image", "source": {"type": "file", "file_id": "f"}}
    with pytest.raises(InvalidRequest, match="only base64 images") as info:
        chat_request(body(messages=[{"role": "user", "content": [by_file]}]))
    assert info.value.param == "messages[0].content[0].source"


def test_what_is_not_read_here_is_refused_by_name():
    with pytest.raises(InvalidRequest, match="'document' block is not supported"):
        chat_request(body(messages=[{"role": "user", "content": [
            {"type": "document", "source": {}}]}]))
    with pytest.raises(InvalidRequest, match="'tool_use' block is not supported in a user"):
        chat_request(body(messages=[{"role": "user", "content": [
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]))
    with pytest.raises(InvalidRequest, match="only client tools") as info:
        chat_request(body(tools=[{"type": "web_search_20250305", "name": "web_search"}]))
    assert info.value.param == "tools[0]"
    with pytest.raises(InvalidRequest, match="at least one message"):
        chat_request(body(messages=[]))


def test_a_known_block_with_a_bad_field_names_the_field():
    with pytest.raises(ValidationError) as info:
        body(messages=[{"role": "user", "content": [{"type": "text"}]}])
    # one error per member of content's union (a string, or blocks): the block's names
    # the missing field
    assert [e["loc"][-1] for e in info.value.errors() if e["type"] == "missing"] == ["text"]


# -- answers -------------------------------------------------------------------------------


FINAL = Chunk(done=True, done_reason="stop", prompt_tokens=12, prompt_eval_count=4,
              eval_count=6)


def test_message_object_with_thinking_text_and_a_tool_call():
    chunks = [Chunk(thinking="Hmm, "), Chunk(thinking="weather."), Chunk(text="Looking "),
              Chunk(text="it up."),
              Chunk(**{**FINAL.__dict__, "tool_calls": [
                  ToolCall("get_weather", {"city": "Paris"}, "toolu_9")]})]
    m = message("msg_1", "m", chunks, None)
    assert m == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "thinking", "thinking": "Hmm, weather.", "signature": ""},
                    {"type": "text", "text": "Looking it up."},
                    {"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                     "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        # 8 of the 12 prompt tokens came from the cache
        "usage": {"input_tokens": 4, "output_tokens": 6, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 8}}


def test_a_tool_call_without_an_id_gets_a_toolu_id():
    m = message("msg_1", "m", [Chunk(done=True, tool_calls=[ToolCall("f", {})])], None)
    assert m["content"][0]["id"].startswith("toolu_") and m["content"][0]["input"] == {}


@pytest.mark.parametrize(("final", "calls", "stops", "expected"), [
    (Chunk(done=True, done_reason="stop"), False, None, ("end_turn", None)),
    (Chunk(done=True, done_reason="length"), False, None, ("max_tokens", None)),
    (Chunk(done=True, done_reason="stop", stop_sequence="END"), False, ["END"],
     ("stop_sequence", "END")),
    # the template's own stop (end of turn) is no stop sequence of the request's
    (Chunk(done=True, done_reason="stop", stop_sequence="<|im_end|>"), False, ["END"],
     ("end_turn", None)),
    (Chunk(done=True, done_reason="stop"), True, None, ("tool_use", None)),
])
def test_stop_reason(final, calls, stops, expected):
    assert stop_reason(final, calls, stops) == expected


def test_tool_calls_joined_from_deltas_when_the_final_chunk_has_none():
    chunks = [Chunk(tool_call_deltas=[ToolCallDelta(0, "toolu_a", "f")]),
              Chunk(tool_call_deltas=[ToolCallDelta(0, arguments='{"x": '),
                                      ToolCallDelta(1, "toolu_b", "g")]),
              Chunk(tool_call_deltas=[ToolCallDelta(0, arguments="1}")]),
              Chunk(done=True)]
    assert joined_calls(chunks) == [ToolCall("f", {"x": 1}, "toolu_a"),
                                    ToolCall("g", {}, "toolu_b")]


def names(events):
    return [name for name, _ in events]


def test_stream_events_in_anthropics_order():
    stream = MessageStream("msg_1", "m", ["END"])
    events = stream.start()
    for chunk in [Chunk(thinking="Hmm."), Chunk(text="Hel"), Chunk(text="lo"),
                  Chunk(tool_call_deltas=[ToolCallDelta(0, "toolu_1", "f")]),
                  Chunk(tool_call_deltas=[ToolCallDelta(0, arguments='{"a"')]),
                  Chunk(tool_call_deltas=[ToolCallDelta(0, arguments=": 1}")]),
                  Chunk(**{**FINAL.__dict__, "tool_calls": [ToolCall("f", {"a": 1}, "toolu_1")]})]:
        events += stream.event(chunk)
    assert names(events) == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["id"] == "msg_1" and start["content"] == [] and start["stop_reason"] is None
    data = [d for _, d in events]
    assert data[2] == {"type": "content_block_start", "index": 0,
                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    assert data[3]["delta"] == {"type": "thinking_delta", "thinking": "Hmm."}
    assert data[4]["delta"] == {"type": "signature_delta", "signature": ""}
    assert [d["delta"]["text"] for d in data[7:9]] == ["Hel", "lo"]
    assert data[10]["content_block"] == {"type": "tool_use", "id": "toolu_1", "name": "f",
                                         "input": {}}
    fragments = [d["delta"]["partial_json"] for d in data[11:13]]
    assert json.loads("".join(fragments)) == {"a": 1}  # the final calls are not sent again
    assert [d.get("index") for d in data[2:14]] == [0] * 4 + [1] * 4 + [2] * 4
    assert data[14] == {"type": "message_delta",
                        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                        "usage": {"input_tokens": 4, "output_tokens": 6,
                                  "cache_creation_input_tokens": 0,
                                  "cache_read_input_tokens": 8}}


def test_stream_sends_final_tool_calls_that_came_without_deltas():
    stream = MessageStream("msg_1", "m")
    events = stream.start() + stream.event(Chunk(text="Sure.")) + stream.event(
        Chunk(done=True, tool_calls=[ToolCall("f", {"a": 1}), ToolCall("g", {})]))
    data = [d for _, d in events]
    blocks = [d["content_block"] for d in data if d["type"] == "content_block_start"]
    assert [b["type"] for b in blocks] == ["text", "tool_use", "tool_use"]
    assert [b["name"] for b in blocks[1:]] == ["f", "g"]
    jsons = [d["delta"]["partial_json"] for d in data
             if d["type"] == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert [json.loads(j) for j in jsons] == [{"a": 1}, {}]
    assert data[-2]["delta"]["stop_reason"] == "tool_use"


def test_an_empty_answer_opens_no_block():
    stream = MessageStream("msg_1", "m")
    events = stream.start() + stream.event(Chunk(done=True, done_reason="length"))
    assert names(events) == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[2][1]["delta"]["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(("status", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
    (500, "api_error"), (529, "overloaded_error"), (405, "invalid_request_error"),
    (502, "api_error")])
def test_error_types_follow_anthropics_statuses(status, kind):
    assert error_body("no", status) == {"type": "error",
                                        "error": {"type": kind, "message": "no"}}
