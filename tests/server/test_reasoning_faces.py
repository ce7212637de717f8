"""Reasoning and streamed tool calls on both faces, through the official clients, over a
live server whose runtime has a thinking template (``tests/thinkers.py``): a scripted
scheduler for exact text, the tiny model itself where a grammar forces its output."""

from __future__ import annotations

import json

import httpx
import ollama
import openai
import pytest

from liveserver import free_port, serve
from thinkers import scripted, thinking_runtime

THOUGHT = ["<think>\nThe user", " greets.</th", "ink>\n\nHel", "lo!"]
CALLED = ["<think>Weather.</think>", "Checking.", " <tool_call>",
          '{"name": "get_weather", "arguments": {"city": ', '"Paris"}}', "</tool_call>"]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "today's weather",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                   "required": ["city"]}}}
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_gguf):
    runtime = thinking_runtime(tmp_path_factory.mktemp("faces"), tiny_gguf,
                               host="127.0.0.1", port=free_port())
    with serve(runtime, runtime.settings) as base:
        yield base
    runtime.close()


@pytest.fixture
def oai(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused")


@pytest.fixture
def oll(url):
    return ollama.Client(host=url)


# -- OpenAI -----------------------------------------------------------------------------------


def test_openai_reasoning_content_apart_from_content(oai, monkeypatch):
    scripted(monkeypatch, THOUGHT)
    r = oai.chat.completions.create(model="thinker", messages=HELLO)
    message = r.choices[0].message
    assert (message.content, message.model_extra["reasoning_content"]) == (
        "Hello!", "The user greets.")
    chunks = list(oai.chat.completions.create(model="thinker", messages=HELLO, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = [d.model_extra.get("reasoning_content") for d in deltas]
    assert [t for t in reasoning if t] == ["The user", " greets."]
    assert "".join(d.content or "" for d in deltas) == "Hello!"


def test_openai_reasoning_effort_none_turns_thinking_off(oai, monkeypatch):
    jobs = scripted(monkeypatch, ["Hello!"])
    r = oai.chat.completions.create(model="thinker", messages=HELLO, reasoning_effort="none")
    assert r.choices[0].message.content == "Hello!"
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    assert len(jobs) == 1
    with pytest.raises(openai.BadRequestError, match="does not support thinking"):
        oai.chat.completions.create(model="plain", messages=HELLO, reasoning_effort="high")


def test_openai_tool_calls_stream_as_they_form(oai, monkeypatch):
    scripted(monkeypatch, CALLED)
    chunks = list(oai.chat.completions.create(model="thinker", messages=HELLO,
                                              tools=[WEATHER], stream=True))
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    first, *fragments = calls
    assert (first.index, first.type, first.function.name, first.function.arguments) == (
        0, "function", "get_weather", "")
    assert first.id.startswith("call_")
    assert len(fragments) >= 2 and all(f.id is None and f.function.name is None
                                       for f in fragments)
    assert json.loads("".join(f.function.arguments for f in fragments)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking. "

    r = oai.chat.completions.create(model="thinker", messages=HELLO, tools=[WEATHER])
    [call] = r.choices[0].message.tool_calls
    assert call.id.startswith("call_") and json.loads(call.function.arguments) == {
        "city": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls"


def test_openai_tool_choice_forces_the_tiny_model_to_call(oai):
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"const": "UTC"}}, "required": ["tz"]}}}
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = oai.chat.completions.create(
            model="thinker", messages=HELLO, tools=[clock, WEATHER], tool_choice=choice,
            reasoning_effort="none", seed=3, max_tokens=300)
        [call] = r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "tool_calls"
        if choice != "required":
            assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) in ({"tz": "UTC"}, {"city": "Paris"},
                                                       {"city": "Rome"})
    stream = oai.chat.completions.create(
        model="thinker", messages=HELLO, tools=[WEATHER], tool_choice="required",
        reasoning_effort="none", seed=3, max_tokens=300, stream=True)
    calls = [t for c in stream if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
    assert json.loads("".join(t.function.arguments for t in calls))["city"] in ("Paris", "Rome")


# -- Ollama -----------------------------------------------------------------------------------


def test_ollama_thinking_apart_from_content(oll, monkeypatch):
    scripted(monkeypatch, THOUGHT)
    r = oll.chat(model="thinker", messages=HELLO, think=True)
    assert (r.message.thinking, r.message.content) == ("The user greets.", "Hello!")
    parts = list(oll.chat(model="thinker", messages=HELLO, think=True, stream=True))
    assert [p.message.thinking for p in parts if p.message.thinking] == ["The user",
                                                                        " greets."]
    assert "".join(p.message.content for p in parts) == "Hello!"
    g = oll.generate(model="thinker", prompt="hi", think=True)
    assert (g.thinking, g.response) == ("The user greets.", "Hello!")
    parts = list(oll.generate(model="thinker", prompt="hi", think=True, stream=True))
    assert "".join(p.thinking or "" for p in parts) == "The user greets."


def test_ollama_show_lists_thinking_for_a_thinking_template(oll):
    assert "thinking" in oll.show("thinker").capabilities
    assert "thinking" not in oll.show("plain").capabilities


def test_ollama_think_on_a_model_that_does_not_think_is_a_400(oll):
    with pytest.raises(ollama.ResponseError, match="does not support thinking") as caught:
        oll.chat(model="plain", messages=HELLO, think=True)
    assert caught.value.status_code == 400


def test_ollama_thinking_sent_back_reaches_the_template(oll, monkeypatch):
    jobs = scripted(monkeypatch, ["ok"])
    oll.chat(model="thinker", messages=[
        *HELLO, {"role": "assistant", "content": "Hello!", "thinking": "A greeting."},
        {"role": "user", "content": "bye"}])
    assert jobs and len(jobs[0].prompt) > 0


def test_ollama_tool_calls_arrive_on_the_line_where_they_complete(oll, monkeypatch):
    scripted(monkeypatch, CALLED)
    parts = list(oll.chat(model="thinker", messages=HELLO, tools=[WEATHER], stream=True))
    with_calls = [i for i, p in enumerate(parts) if p.message.tool_calls]
    assert len(with_calls) == 1 and not parts[with_calls[0]].done  # before the final line
    [call] = parts[with_calls[0]].message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", {"city": "Paris"})
    assert "".join(p.message.thinking or "" for p in parts) == "Weather."
    r = oll.chat(model="thinker", messages=HELLO, tools=[WEATHER])
    assert r.message.tool_calls[0].function.arguments == {"city": "Paris"}


def test_ollama_tool_call_ids_on_the_wire_and_back(url, monkeypatch):
    """The ollama package drops ids; the wire carries them (Ollama's tool_calls[].id)."""
    scripted(monkeypatch, CALLED)
    body = {"model": "thinker", "messages": HELLO, "tools": [WEATHER], "stream": False}
    message = httpx.post(f"{url}/api/chat", json=body, timeout=30).json()["message"]
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_") and call["function"]["index"] == 0
    jobs = scripted(monkeypatch, ["ok"])
    body["messages"] = [*HELLO, message, {"role": "tool", "content": "sunny",
                                          "tool_call_id": call["id"]}]
    assert httpx.post(f"{url}/api/chat", json=body, timeout=30).status_code == 200
    assert len(jobs) == 1
