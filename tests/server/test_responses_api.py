"""The Responses API face (POST/GET/DELETE /v1/responses) through the official ``openai``
client, unmodified.

Against the live server over the tiny random-weight model: shapes, streaming, the
stored conversation (previous_response_id), retrieve and delete, store=false, errors.
A scripted Runtime (``fake``) shows what the tiny model cannot: thinking, tool calls as
they form, an error mid-stream, and exactly what reaches the Runtime.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from fakeruntime import FakeRuntime
from liveserver import free_port, serve
from locallama.runtime.types import Chunk, Message, ToolCall, ToolCallDelta
from locallama.settings import Settings

GREEDY = {"temperature": 0, "extra_body": {"options": {"repeat_penalty": 1.0}}}


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def create(client: OpenAI, **kwargs):
    return client.responses.create(**{"model": "tiny", "input": "Hello there",
                                      "max_output_tokens": 8, **GREEDY, **kwargs})


# -- the tiny model through a real server -------------------------------------------------------


def test_string_input_gives_a_completed_response(client):
    r = create(client, metadata={"run": "1"})
    assert r.id.startswith("resp_") and r.object == "response" and r.model == "tiny"
    assert r.status in ("completed", "incomplete") and r.created_at > 0
    [message] = r.output
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and isinstance(r.output_text, str)
    assert r.output_text == message.content[0].text
    assert r.metadata == {"run": "1"} and r.tool_choice == "auto" and r.tools == []
    u = r.usage
    assert u.input_tokens > 0 and 0 < u.output_tokens <= 8
    assert u.total_tokens == u.input_tokens + u.output_tokens


def test_a_token_limit_makes_the_response_incomplete(client):
    r = create(client, max_output_tokens=1)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 1 and r.max_output_tokens == 1


def test_item_input_and_instructions(client):
    r = create(client, instructions="Answer in French.", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Bonjour"}]},
        {"role": "user", "content": "Again"}])
    assert r.instructions == "Answer in French." and r.status in ("completed", "incomplete")
    plain = create(client, input="Again")
    assert r.usage.input_tokens > plain.usage.input_tokens


def test_streamed_events_build_the_same_response(client):
    events = list(create(client, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text
    assert client.responses.retrieve(final.id).output_text == final.output_text
    unstreamed = create(client)
    assert unstreamed.output_text == final.output_text  # greedy: the same answer


def test_previous_response_id_continues_the_conversation(client):
    first = create(client, input="My name is Ada.")
    second = create(client, input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    # the second prompt is exactly the conversation with the first exchange in it
    same = client.chat.completions.create(
        model="tiny", max_tokens=1, temperature=0,
        messages=[{"role": "user", "content": "My name is Ada."},
                  {"role": "assistant", "content": first.output_text},
                  {"role": "user", "content": "What is my name?"}])
    assert second.usage.input_tokens == same.usage.prompt_tokens
    alone = create(client, input="What is my name?")
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    third = create(client, input="And again?", previous_response_id=second.id)
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens


def test_retrieve_and_delete(client):
    r = create(client)
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.usage == r.usage
    answer = httpx.delete(f"{client.base_url}responses/{r.id}")
    assert answer.status_code == 200
    assert answer.json() == {"id": r.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        create(client, previous_response_id=r.id)


def test_sdk_delete(client):
    r = create(client)
    assert client.responses.delete(r.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


def test_store_false_is_not_kept(client):
    r = create(client, store=False)
    assert r.status in ("completed", "incomplete") and r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as caught:
        create(client, previous_response_id=r.id)
    assert caught.value.body["param"] == "previous_response_id"
    assert r.id in caught.value.body["message"]


def test_function_call_items_reach_the_model(client):
    """The tiny model's template has no tools: the calls and results still reach its
    prompt; tools themselves are refused for it, as on /v1/chat/completions."""
    question = {"role": "user", "content": "Weather in Oslo?"}
    r = create(client, input=[
        question,
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny and warm"}])
    assert r.status in ("completed", "incomplete")
    assert r.usage.input_tokens > create(client, input=[question]).usage.input_tokens
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, input=[question], tools=TOOLS)
    assert "tools" in caught.value.body["message"]


def test_errors_come_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as caught:
        create(client, model="no-such-model")
    assert caught.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        create(client, model="no-such-model", stream=True)
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, input=[{"type": "web_search_call", "id": "ws_1"}])
    assert caught.value.body["param"] == "input[0].type"
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, temperature=3)
    assert caught.value.body["param"] == "temperature"


# -- a scripted Runtime ---------------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path):
    runtime = FakeRuntime(script=[])
    with serve(runtime, tmp=tmp_path) as url:
        runtime.client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                timeout=30)
        yield runtime


TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
DONE = Chunk(done=True, done_reason="stop", prompt_tokens=5, eval_count=3)


def test_a_function_tool_round_trip(fake):
    call = ToolCall("get_weather", {"city": "Paris"}, "call_abc")
    fake.script = [Chunk(text="Let me look."),
                   Chunk(done=True, done_reason="stop", tool_calls=[call], prompt_tokens=5)]
    first = fake.client.responses.create(model="fake", input="Weather in Paris?",
                                         instructions="Be brief.", tools=TOOLS)
    message, fc = first.output
    assert message.content[0].text == "Let me look."
    assert (fc.type, fc.name, fc.call_id) == ("function_call", "get_weather", "call_abc")
    assert json.loads(fc.arguments) == {"city": "Paris"}
    asked = fake.requests[-1]
    assert asked.messages == [Message("system", "Be brief."),
                              Message("user", "Weather in Paris?")]
    assert [t.function_json()["function"]["name"] for t in asked.tools] == ["get_weather"]

    fake.script = [Chunk(text="Sunny."), DONE]
    second = fake.client.responses.create(
        model="fake", previous_response_id=first.id, tools=TOOLS,
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "22C"}])
    assert second.output_text == "Sunny."
    assert fake.requests[-1].messages == [
        Message("user", "Weather in Paris?"),  # instructions are not carried over
        Message("assistant", "Let me look.", tool_calls=[call]),
        Message("tool", "22C", tool_name="get_weather")]


def test_thinking_and_tool_calls_stream_as_they_form(fake):
    fake.script = [Chunk(thinking="Paris, "), Chunk(thinking="so weather."),
                   Chunk(text="Checking"), Chunk(text="."),
                   Chunk(tool_call_deltas=[ToolCallDelta(0, "call_1", "get_weather")]),
                   Chunk(tool_call_deltas=[ToolCallDelta(0, arguments='{"city": ')]),
                   Chunk(tool_call_deltas=[ToolCallDelta(0, arguments='"Paris"}')]),
                   Chunk(done=True, done_reason="stop", prompt_tokens=5, eval_count=6,
                         tool_calls=[ToolCall("get_weather", {"city": "Paris"}, "call_1")])]
    with fake.client.responses.stream(model="fake", input="Weather?", tools=TOOLS,
                                      reasoning={"effort": "high"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds.count("response.reasoning_text.delta") == 2
    args = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert args == ['{"city": ', '"Paris"}']
    reasoning, message, fc = final.output
    assert reasoning.content[0].text == "Paris, so weather."
    assert final.output_text == message.content[0].text == "Checking."
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        "Checking."
    assert (fc.call_id, fc.name, fc.arguments) == ("call_1", "get_weather", '{"city": "Paris"}')
    assert fake.requests[-1].think == "high"
    # passed back, the reasoning item is the assistant turn's thinking
    fake.script = [Chunk(text="ok"), DONE]
    fake.client.responses.create(model="fake", previous_response_id=final.id, input=[
        {"type": "function_call_output", "call_id": "call_1", "output": "rain"}])
    assistant = fake.requests[-1].messages[1]
    assert assistant.thinking == "Paris, so weather." and assistant.content == "Checking."
    assert assistant.tool_calls == [ToolCall("get_weather", {"city": "Paris"}, "call_1")]


def test_an_error_mid_stream_is_an_error_event_and_response_failed(fake):
    fake.script = [Chunk(text="a"), Chunk(text="b"), DONE]
    fake.fail_after = 1
    events = list(fake.client.responses.create(model="fake", input="x", stream=True))
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert events[-2].message == "the model broke down"
    assert events[-1].response.status == "failed"
    failed = events[-1].response.id
    with pytest.raises(openai.NotFoundError):  # a failed response is not stored
        fake.client.responses.retrieve(failed)


def test_the_store_keeps_the_newest_responses_max(tmp_path):
    runtime = FakeRuntime()
    settings = Settings(host="127.0.0.1", port=free_port(), models_dir=tmp_path / "models",
                        responses_max=2)
    with serve(runtime, settings) as url:
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
        ids = [client.responses.create(model="fake", input=str(i)).id for i in range(3)]
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(ids[0])
        assert [client.responses.retrieve(i).id for i in ids[1:]] == ids[1:]
    assert (tmp_path / "responses.sqlite").is_file()
