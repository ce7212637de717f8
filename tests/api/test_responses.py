"""The Responses API's translations: bodies -> ChatRequest (api/responses.py) and chunks
-> the response object and its events (api/responses_stream.py), every object checked
against the openai SDK's own types."""

from __future__ import annotations

import json

import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from locallama.api.responses import (
    ResponseCreate,
    chat_request,
    input_items,
    response_fields,
)
from locallama.api.responses_stream import ResponseStream, usage
from locallama.errors import InvalidRequest
from locallama.runtime.types import Chunk, Message, ToolCall, ToolCallDelta

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def body(**fields) -> ResponseCreate:
    return ResponseCreate.model_validate({"model": "m", "input": "hi", **fields})


def request(**fields):
    b = body(**fields)
    return chat_request(b, input_items(b))


def run(chunks: list[Chunk], **fields) -> tuple[list[dict], dict]:
    """Feed ``chunks``; the events (each validated as the SDK's event type, numbered in
    order) and the response (validated as the SDK's Response)."""
    stream = ResponseStream(response_fields(body(**fields)))
    events = stream.start()
    for chunk in chunks:
        events += stream.feed(chunk)
    for n, event in enumerate(events):
        assert event["sequence_number"] == n
        EVENT.validate_python(event)
    response = stream.response()
    Response.model_validate(response)
    return events, response


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


DONE = Chunk(done=True, done_reason="stop", prompt_tokens=7, prompt_eval_count=3, eval_count=4)


# -- requests ---------------------------------------------------------------------------------


def test_string_input_is_one_user_message_after_the_instructions():
    chat = request(instructions="Be brief.", temperature=0.5, top_p=0.9, max_output_tokens=12)
    assert chat.messages == [Message("system", "Be brief."), Message("user", "hi")]
    assert chat.options == {"temperature": 0.5, "top_p": 0.9, "num_predict": 12}
    assert chat.think is None and chat.tools is None and chat.tool_choice is None


def test_items_become_a_conversation_with_tool_calls_results_and_thinking():
    items = [
        {"role": "developer", "content": "sys"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                         {"type": "input_text", "text": "b"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [],
         "content": [{"type": "reasoning_text", "text": "let me think"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "calling", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": '{"x": 1}'},
        {"type": "function_call", "call_id": "call_2", "name": "put", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_2", "output": "done"},
        {"type": "function_call_output", "call_id": "call_1",
         "output": [{"type": "input_text", "text": "42"}]},
    ]
    chat = request(input=items)
    assert chat.messages == [
        Message("system", "sys"), Message("user", "a\nb"),
        Message("assistant", "calling", thinking="let me think",
                tool_calls=[ToolCall("get", {"x": 1}, "call_1"), ToolCall("put", {}, "call_2")]),
        Message("tool", "done", tool_name="put"), Message("tool", "42", tool_name="get"),
    ]


def test_a_function_call_without_text_starts_its_own_assistant_turn():
    chat = request(input=[{"role": "user", "content": "q"},
                          {"type": "function_call", "call_id": "c", "name": "f",
                           "arguments": "{}"}])
    assert chat.messages[-1] == Message("assistant", tool_calls=[ToolCall("f", {}, "c")])


@pytest.mark.parametrize(("item", "param"), [
    ({"type": "file_search_call", "id": "x"}, "input[0].type"),
    ({"type": "item_reference", "id": "x"}, "input[0].type"),
    ({"role": "robot", "content": "x"}, "input[0].role"),
    ({"role": "user", "content": [{"type": "input_file", "file_id": "f"}]},
     "input[0].content[0].type"),
    ({"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x/y.png"}]},
     "input[0].content[0].image_url"),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"},
     "input[0].arguments"),
    ({"type": "function_call_output", "output": "x"}, "input[0].call_id"),
])
def test_items_it_cannot_translate_are_refused_by_name(item, param):
    with pytest.raises(InvalidRequest) as caught:
        request(input=[item])
    assert caught.value.param == param


def test_tools_tool_choice_format_and_reasoning():
    tool = {"type": "function", "name": "get", "description": "d",
            "parameters": {"type": "object"}, "strict": True}
    chat = request(tools=[tool], tool_choice={"type": "function", "name": "get"},
                   text={"format": {"type": "json_schema", "name": "r",
                                    "schema": {"type": "object"}}},
                   reasoning={"effort": "minimal"})
    assert [(t.name, t.description, t.parameters) for t in chat.tools] == [
        ("get", "d", {"type": "object"})]
    assert chat.tool_choice == "get" and chat.format == {"type": "object"}
    assert chat.think == "low"
    assert request(tools=[tool], tool_choice="required").tool_choice == "required"
    none = request(tools=[tool], tool_choice="none")
    assert none.tools is None and none.tool_choice == "none"
    assert request(tools=[tool], tool_choice="auto").tool_choice is None
    assert request(text={"format": {"type": "json_object"}}).format == "json"
    assert request(reasoning={"effort": "none"}).think is False
    assert request(reasoning={"effort": "xhigh"}).think == "high"


@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": [], "tool_choice": {"type": "function", "name": "x"}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"text": {"format": {"type": "json_schema", "name": "r"}}}, "text.format.schema"),
    ({"input": []}, "input"),
])
def test_requests_it_refuses_name_the_field(fields, param):
    with pytest.raises(InvalidRequest) as caught:
        request(**fields)
    assert caught.value.param == param


def test_other_tool_types_and_oversized_metadata_fail_validation():
    with pytest.raises(pydantic.ValidationError):
        body(tools=[{"type": "web_search"}])
    with pytest.raises(pydantic.ValidationError):
        body(metadata={str(i): "v" for i in range(17)})


def test_the_response_echoes_its_request():
    fields = response_fields(body(instructions="i", metadata={"k": "v"},
                                  previous_response_id="resp_1",
                                  tool_choice={"type": "function", "name": "f"},
                                  tools=[{"type": "function", "name": "f"}]))
    assert fields["instructions"] == "i" and fields["metadata"] == {"k": "v"}
    assert fields["previous_response_id"] == "resp_1"
    assert fields["tool_choice"] == {"type": "function", "name": "f"}
    assert fields["tools"] == [{"type": "function", "name": "f", "strict": None}]
    assert fields["text"] == {"format": {"type": "text"}} and fields["store"] is True
    schema = {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": True}
    assert response_fields(body(text={"format": schema}))["text"] == {"format": schema}


# -- answers ----------------------------------------------------------------------------------


def test_text_streams_as_one_message_item():
    events, response = run([Chunk(text="Hel"), Chunk(text="lo"), DONE])
    assert types(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["delta"] for e in events if e["type"].endswith("text.delta")] == ["Hel", "lo"]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[-1]["response"] == response
    [message] = response["output"]
    assert message["id"].startswith("msg_") and message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "text": "Hello", "annotations": [],
                                   "logprobs": []}]
    assert Response.model_validate(response).output_text == "Hello"
    assert response["status"] == "completed" and response["id"].startswith("resp_")
    assert response["usage"] == usage(DONE, 0)
    assert response["usage"]["input_tokens"] == 7
    assert response["usage"]["input_tokens_details"]["cached_tokens"] == 4
    assert response["usage"]["total_tokens"] == 11


def test_thinking_then_text_then_streamed_tool_calls():
    chunks = [Chunk(thinking="hm"), Chunk(thinking="m"), Chunk(text="ok"),
              Chunk(tool_call_deltas=[ToolCallDelta(0, "call_a", "get")]),
              Chunk(tool_call_deltas=[ToolCallDelta(0, arguments='{"x":')]),
              Chunk(tool_call_deltas=[ToolCallDelta(0, arguments=" 1}"),
                                      ToolCallDelta(1, "call_b", "put", "{}")]),
              Chunk(done=True, done_reason="stop", eval_count=9,
                    tool_calls=[ToolCall("get", {"x": 1}, "call_a"),
                                ToolCall("put", {}, "call_b")])]
    events, response = run(chunks)
    reasoning, message, get, put = response["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert message["content"][0]["text"] == "ok"
    assert (get["call_id"], get["name"], get["arguments"]) == ("call_a", "get", '{"x": 1}')
    assert (put["call_id"], put["name"], put["arguments"]) == ("call_b", "put", "{}")
    assert get["id"].startswith("fc_") and get["status"] == "completed"
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
              and e["item_id"] == get["id"]]
    assert deltas == ['{"x":', " 1}"]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], e["arguments"]) for e in done] == [(2, '{"x": 1}'), (3, "{}")]
    assert [e["delta"] for e in events if e["type"] == "response.reasoning_text.delta"] == [
        "hm", "m"]
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == [0, 1, 2, 3]
    assert response["usage"]["output_tokens_details"]["reasoning_tokens"] == 2


def test_calls_only_on_the_final_chunk_still_stream_as_items():
    """Until the runtime streams deltas, the final chunk's calls are whole items."""
    events, response = run([Chunk(done=True, done_reason="stop",
                                  tool_calls=[ToolCall("get", {"city": "Oslo"})])])
    [call] = response["output"]
    assert call["type"] == "function_call" and call["call_id"].startswith("call_")
    assert json.loads(call["arguments"]) == {"city": "Oslo"}
    assert "response.function_call_arguments.delta" in types(events)


def test_a_length_stop_is_incomplete():
    events, response = run([Chunk(text="a"), Chunk(done=True, done_reason="length")])
    assert events[-1]["type"] == "response.incomplete"
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_a_failure_mid_stream_is_an_error_event_and_a_failed_response():
    stream = ResponseStream(response_fields(body()))
    events = stream.start() + stream.feed(Chunk(text="a"))
    events += stream.fail(InvalidRequest("the model broke down"), 400)
    assert types(events)[-2:] == ["error", "response.failed"]
    for event in events:
        EVENT.validate_python(event)
    assert events[-2]["message"] == "the model broke down"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["message"] == "the model broke down"
