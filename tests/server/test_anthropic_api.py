"""The Anthropic face through the official ``anthropic`` client, unmodified.

Most tests run against the live server over the tiny random-weight model, so they
check plumbing and shapes, never content.  A scripted Runtime (``FakeRuntime``) shows
what the tiny model cannot: reasoning and tool calls as they form, an error in the
middle of a stream, a full queue, and exactly what reaches the Runtime.
"""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import pytest
from anthropic import Anthropic

from fakeruntime import FakeRuntime
from liveserver import serve
from locallama.errors import ServerBusy
from locallama.runtime.types import Chunk, ToolCall, ToolCallDelta
from runtimes import add_model
from tinymodel import CHATML_TEMPLATE, write_tiny_gguf

HELLO = [{"role": "user", "content": "Hello there"}]
#: sampling fields go as extra_body: the current SDK no longer has parameters for them
GREEDY = {"extra_body": {"temperature": 0, "top_k": 1}}
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


@pytest.fixture(scope="module")
def client(server) -> Anthropic:
    return Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def create(client: Anthropic, **kwargs):
    return client.messages.create(**{"model": "tiny", "messages": HELLO, "max_tokens": 8,
                                     **GREEDY, **kwargs})


# -- the tiny model through a real server ----------------------------------------------------


def test_message_shape(client):
    m = create(client)
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == "tiny"
    assert [b.type for b in m.content] in (["text"], [])
    assert m.stop_reason in ("end_turn", "max_tokens") and m.stop_sequence is None
    u = m.usage
    assert 0 < u.output_tokens <= 8
    assert u.input_tokens + (u.cache_read_input_tokens or 0) > 0


def test_max_tokens_stops_with_max_tokens(client):
    m = create(client, max_tokens=1)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 1


def test_stream_matches_the_whole_message(client):
    whole = create(client, max_tokens=12)
    events = list(create(client, max_tokens=12, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[0].message.id.startswith("msg_") and events[0].message.content == []
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "".join(b.text for b in whole.content)
    delta = events[-2]
    assert delta.delta.stop_reason == whole.stop_reason
    assert delta.usage.output_tokens == whole.usage.output_tokens


def test_raw_events_carry_anthropics_event_names(server):
    with httpx.stream("POST", server.url + "/v1/messages", timeout=60, json={
            "model": "tiny", "messages": HELLO, "max_tokens": 4, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [line for line in lines if line.startswith("data: ")]
    assert len(names) == len(data)
    assert names[:2] == ["message_start", "ping"] and names[-1] == "message_stop"
    assert set(names) <= {"message_start", "ping", "content_block_start",
                          "content_block_delta", "content_block_stop", "message_delta",
                          "message_stop"}


def test_stream_helper_text_stream_and_final_message(client):
    whole = create(client, max_tokens=10)
    with client.messages.stream(model="tiny", messages=HELLO, max_tokens=10,
                                **GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "".join(b.text for b in whole.content)
    assert [(b.type, b.text) for b in final.content] == [(b.type, b.text) for b in whole.content]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_stop_sequence_is_reported(client):
    text = "".join(b.text for b in create(client, max_tokens=30).content)
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop.strip(), text
    m = create(client, max_tokens=30, stop_sequences=[stop, "never-said-zzz"])
    assert "".join(b.text for b in m.content) == text[: text.index(stop)]
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", stop)


def test_count_tokens_counts_the_rendered_prompt(client, server):
    system = "You are a helpful assistant."
    counted = client.messages.count_tokens(model="tiny", messages=HELLO, system=system)
    m = create(client, system=system, max_tokens=1)
    assert counted.input_tokens == m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)
    longer = client.messages.count_tokens(model="tiny", system=system, messages=[
        *HELLO, {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "More"}])
    assert longer.input_tokens > counted.input_tokens
    plain = server.runtime.tokenize("tiny", "Hello there")
    assert counted.input_tokens > len(plain)  # the template and the system prompt count


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        create(client, model="no-such-model")
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in info.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such-model", messages=HELLO)


def test_missing_max_tokens_is_a_bad_request(client):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.post("/v1/messages", body={"model": "tiny", "messages": HELLO}, cast_to=object)
    assert info.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: Field required"}}


def test_images_are_refused_for_a_model_without_vision(client):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "aGk="}}
    with pytest.raises(anthropic.BadRequestError, match="does not support images"):
        create(client, messages=[{"role": "user", "content": [
            image, {"type": "text", "text": "What is it?"}]}])


def test_an_unknown_path_under_messages_answers_in_anthropics_shape(server):
    r = httpx.get(server.url + "/v1/messages/nothing-here")
    assert r.status_code == 404
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "not_found_error"
    assert "error" in httpx.get(server.url + "/v1/nothing-here").json()  # OpenAI's still


@pytest.fixture(scope="module")
def tool_model(server, tmp_path_factory) -> str:
    """A tiny model whose template reads tools (so the Runtime takes them)."""
    template = ("{% if tools %}<|im_start|>system\nTools:{% for t in tools %} "
                "{{ t.function.name }}{% endfor %}<|im_end|>\n{% endif %}" + CHATML_TEMPLATE)
    path = write_tiny_gguf(tmp_path_factory.mktemp("tools") / "tools.gguf",
                           chat_template=template)
    add_model(server.runtime, "tooly", Path(path))
    return "tooly"


def test_tool_result_round_trip_on_the_tiny_model(client, tool_model):
    m = client.messages.create(model=tool_model, max_tokens=8, tools=[WEATHER], **GREEDY,
                               messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"}]}])
    assert m.type == "message" and m.stop_reason in ("end_turn", "max_tokens", "tool_use")
    counted = client.messages.count_tokens(model=tool_model, tools=[WEATHER], messages=HELLO)
    bare = client.messages.count_tokens(model=tool_model, messages=HELLO)
    assert counted.input_tokens > bare.input_tokens  # the tools are in the prompt


def test_tools_for_a_model_without_tool_support_are_refused(client):
    with pytest.raises(anthropic.BadRequestError, match="does not support tools"):
        create(client, tools=[WEATHER])


# -- keys and headers --------------------------------------------------------------------------


def test_x_api_key_and_bearer_both_pass_the_key_check(tmp_path):
    fake = FakeRuntime()
    with serve(fake, api_key="sekrit", tmp=tmp_path) as url:
        beta = {"anthropic-beta": "some-beta-2025-01-01"}  # read by nobody
        ok = Anthropic(base_url=url, api_key="sekrit", max_retries=0, default_headers=beta)
        assert ok.messages.create(model="fake", max_tokens=4, messages=HELLO).content[0].text \
            == "ok"
        bearer = Anthropic(base_url=url, auth_token="sekrit", max_retries=0)
        assert bearer.messages.create(model="fake", max_tokens=4, messages=HELLO).content
        wrong = Anthropic(base_url=url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            wrong.messages.create(model="fake", max_tokens=4, messages=HELLO)
        assert info.value.body["error"]["type"] == "authentication_error"
        assert "x-api-key" in info.value.body["error"]["message"]


# -- a scripted runtime: reasoning, tool calls as they form, faults ---------------------------


THOUGHT_AND_CALL = [
    Chunk(thinking="The user wants "), Chunk(thinking="the weather."),
    Chunk(text="Let me "), Chunk(text="check."),
    Chunk(tool_call_deltas=[ToolCallDelta(0, "toolu_abc", "get_weather")]),
    Chunk(tool_call_deltas=[ToolCallDelta(0, arguments='{"city": ')]),
    Chunk(tool_call_deltas=[ToolCallDelta(0, arguments='"Paris"}')]),
    Chunk(done=True, done_reason="stop", prompt_tokens=20, prompt_eval_count=20, eval_count=9,
          tool_calls=[ToolCall("get_weather", {"city": "Paris"}, "toolu_abc")]),
]


@pytest.fixture
def fake(tmp_path):
    runtime = FakeRuntime(list(THOUGHT_AND_CALL))
    with serve(runtime, tmp=tmp_path) as url:
        yield runtime, Anthropic(base_url=url, api_key="x", max_retries=0, timeout=30)


def test_thinking_and_a_tool_call_as_they_form(fake):
    runtime, client = fake
    seen = []
    with client.messages.stream(model="fake", max_tokens=50, messages=HELLO, tools=[WEATHER],
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        for event in stream:
            if event.type == "thinking":
                seen.append(("thinking", event.thinking))
            elif event.type == "text":
                seen.append(("text", event.text))
            elif event.type == "input_json":
                seen.append(("json", event.partial_json))
        final = stream.get_final_message()
    assert seen == [("thinking", "The user wants "), ("thinking", "the weather."),
                    ("text", "Let me "), ("text", "check."),
                    ("json", '{"city": '), ("json", '"Paris"}')]
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "The user wants the weather."
    call = final.content[2]
    assert (call.id, call.name, call.input) == ("toolu_abc", "get_weather", {"city": "Paris"})
    assert final.stop_reason == "tool_use" and final.usage.input_tokens == 20
    assert runtime.requests[-1].think is True


def test_tool_use_round_trip(fake):
    runtime, client = fake
    first = client.messages.create(model="fake", max_tokens=50, messages=HELLO,
                                   tools=[WEATHER], tool_choice={"type": "any"})
    assert first.stop_reason == "tool_use"
    assert runtime.requests[-1].tool_choice == "required"
    call = next(b for b in first.content if b.type == "tool_use")
    client.messages.create(model="fake", max_tokens=50, tools=[WEATHER], messages=[
        *HELLO, {"role": "assistant", "content": first.content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]}])
    sent = runtime.requests[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool"]
    assert sent[1].tool_calls == [ToolCall("get_weather", {"city": "Paris"}, "toolu_abc")]
    assert sent[1].thinking == "The user wants the weather."
    assert (sent[2].content, sent[2].tool_name) == ("18C", "get_weather")


def test_an_error_mid_stream_is_an_error_event(fake):
    runtime, client = fake
    runtime.fail_after = 3
    with pytest.raises(anthropic.APIStatusError, match="the model broke down") as info:
        list(client.messages.create(model="fake", max_tokens=50, messages=HELLO, stream=True))
    assert info.value.body["error"]["type"] == "invalid_request_error"


def test_an_error_before_the_stream_is_a_status(fake):
    runtime, client = fake
    runtime.fail_after = 0
    with pytest.raises(anthropic.BadRequestError, match="the model broke down"):
        client.messages.create(model="fake", max_tokens=50, messages=HELLO, stream=True)


def test_a_full_queue_is_overloaded_529(tmp_path):
    class Busy(FakeRuntime):
        def chat(self, request):
            raise ServerBusy("too many requests wait for this model", retry_after=3)

    with serve(Busy(), tmp=tmp_path) as url:
        client = Anthropic(base_url=url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(model="fake", max_tokens=5, messages=HELLO)
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert info.value.response.headers["retry-after"] == "3"
