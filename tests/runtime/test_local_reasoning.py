"""Reasoning and streamed tool calls through LocalRuntime's one streaming path."""

from __future__ import annotations

import json

import pytest

from locallama.errors import InvalidRequest
from locallama.runtime.types import ChatRequest, GenerateRequest, Message, Tool
from thinkers import scripted, thinking_runtime

ANSWER = ["<th", "ink>\nThe user", " greets.</thi", "nk>\n\n", "Hello", "!"]
#: a short enum keeps the noise of the tiny model within num_predict
WEATHER = Tool("get_weather", "today's weather",
               {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                "required": ["city"]})
CLOCK = Tool("get_time", parameters={"type": "object", "properties": {"tz": {"const": "UTC"}},
                                     "required": ["tz"]})


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, tiny_gguf):
    rt = thinking_runtime(tmp_path_factory.mktemp("thinking"), tiny_gguf)
    yield rt
    rt.close()


def prompt_text(runtime, job) -> str:
    return runtime.detokenize("thinker", job.prompt)


def test_thinking_streams_apart_from_the_answer(runtime, monkeypatch):
    jobs = scripted(monkeypatch, ANSWER)
    chunks = list(runtime.chat(ChatRequest("thinker", [Message("user", "hi")], think=True)))
    assert "".join(c.thinking for c in chunks) == "The user greets."
    assert "".join(c.text for c in chunks) == "Hello!"
    assert [c.thinking for c in chunks if c.thinking] == ["The user", " greets."]  # streamed
    assert "enable_thinking" not in prompt_text(runtime, jobs[0])
    assert "</think>" not in prompt_text(runtime, jobs[0])


def test_think_false_reaches_the_template_and_nothing_is_stripped(runtime, monkeypatch):
    jobs = scripted(monkeypatch, ["Just ", "<b>hello</b>"])
    chunks = list(runtime.chat(ChatRequest("thinker", [Message("user", "hi")], think=False)))
    assert prompt_text(runtime, jobs[0]).endswith("assistant\n<think>\n\n</think>\n\n")
    assert "".join(c.text for c in chunks) == "Just <b>hello</b>"
    assert not any(c.thinking for c in chunks)


def test_the_model_default_splits_what_the_model_thinks(runtime, monkeypatch):
    scripted(monkeypatch, ANSWER)
    chunks = list(runtime.generate(GenerateRequest("thinker", "hi")))
    assert ("".join(c.thinking for c in chunks), "".join(c.text for c in chunks)) == (
        "The user greets.", "Hello!")


def test_a_prompt_that_opened_the_thinking(runtime, monkeypatch):
    scripted(monkeypatch, ["Hmm, ", "a greeting.\n</think>", "\n\nHi."])
    chunks = list(runtime.chat(ChatRequest("opener", [Message("user", "hi")])))
    assert "".join(c.thinking for c in chunks) == "Hmm, a greeting.\n"
    assert "".join(c.text for c in chunks) == "Hi."


def test_thinking_sent_back_reaches_the_template(runtime, monkeypatch):
    jobs = scripted(monkeypatch, ["ok"])
    messages = [Message("user", "hi"), Message("assistant", "Hello!", thinking="A greeting."),
                Message("user", "bye")]
    list(runtime.chat(ChatRequest("thinker", messages)))
    assert "<think>\nA greeting.\n</think>\n\nHello!" in prompt_text(runtime, jobs[0])


def test_think_on_a_model_that_does_not_think_is_refused(runtime):
    for think in (True, "high"):
        with pytest.raises(InvalidRequest, match="'plain:latest' does not support thinking"):
            list(runtime.chat(ChatRequest("plain", [Message("user", "hi")], think=think)))
    with pytest.raises(InvalidRequest, match="think must be"):
        list(runtime.chat(ChatRequest("thinker", [Message("user", "hi")], think="max")))
    chunks = list(runtime.chat(ChatRequest("plain", [Message("user", "hi")], think=False,
                                           options={"num_predict": 2})))
    assert chunks[-1].done


def test_tool_calls_stream_after_thinking_and_text(runtime, monkeypatch):
    scripted(monkeypatch, ["<think>Weather.</think>", "Let me check.", " <tool_",
                           'call>{"name": "get_weather", "arguments": {"ci',
                           'ty": "Paris"}}</tool_call>'])
    chunks = list(runtime.chat(ChatRequest("thinker", [Message("user", "weather?")],
                                           tools=[WEATHER])))
    assert "".join(c.thinking for c in chunks) == "Weather."
    assert "".join(c.text for c in chunks) == "Let me check. "
    deltas = [d for c in chunks for d in c.tool_call_deltas or ()]
    assert (deltas[0].index, deltas[0].name) == (0, "get_weather")
    assert json.loads("".join(d.arguments for d in deltas)) == {"city": "Paris"}
    [call] = chunks[-1].tool_calls
    assert (call.name, call.arguments, call.id) == ("get_weather", {"city": "Paris"},
                                                    deltas[0].id)


# -- tool_choice: the tiny model's noise, forced by a grammar into a call ----------------


def test_tool_choice_required_forces_a_call(runtime):
    chunks = list(runtime.chat(ChatRequest(
        "thinker", [Message("user", "weather?")], {"num_predict": 400, "seed": 1},
        tools=[WEATHER, CLOCK],
        tool_choice="required", think=False)))
    [call] = chunks[-1].tool_calls
    assert call.name in ("get_weather", "get_time") and call.id.startswith("call_")
    assert call.arguments in ({"city": "Paris"}, {"city": "Rome"}, {"tz": "UTC"})
    deltas = [d for c in chunks for d in c.tool_call_deltas or ()]
    assert deltas[0].name == call.name
    assert json.loads("".join(d.arguments for d in deltas)) == call.arguments
    assert "".join(c.text for c in chunks) == ""


def test_a_named_tool_choice_forces_that_function_and_its_schema(runtime):
    for seed in (1, 2):
        chunks = list(runtime.chat(ChatRequest(
            "thinker", [Message("user", "time?")], {"num_predict": 400, "seed": seed},
            tools=[CLOCK, WEATHER], tool_choice="get_weather", think=False)))
        [call] = chunks[-1].tool_calls
        assert call.name == "get_weather" and call.arguments["city"] in ("Paris", "Rome")


def test_a_tool_choice_naming_no_tool_is_refused(runtime):
    with pytest.raises(InvalidRequest, match="not among the tools"):
        runtime.chat(ChatRequest("thinker", [Message("user", "hi")], tools=[WEATHER],
                                 tool_choice="nope"))


def test_a_raw_prompt_that_opens_the_thinking_is_split_by_the_template(runtime, monkeypatch):
    scripted(monkeypatch, ["plan</think>", "done"])
    chunks = list(runtime.generate(GenerateRequest(
        "thinker", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n",
        raw=True, think=True)))
    assert ("".join(c.thinking for c in chunks), "".join(c.text for c in chunks)) == (
        "plan", "done")
    with pytest.raises(InvalidRequest, match="does not support thinking"):
        list(runtime.generate(GenerateRequest("plain", "hi", raw=True, think=True)))
