"""The OpenAI face through the official ``openai`` client, unmodified.

Most tests run against the live server over the tiny random-weight model, so
they check plumbing and shapes, never content.  A few use a scripted Runtime
(``fake``) for what the tiny model cannot show: tool calls, an error in the
middle of a stream, a client that leaves, and exactly what reaches the Runtime.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import struct

import httpx
import openai
import pytest
from openai import OpenAI

from fakeruntime import FakeRuntime
from liveserver import serve
from locallama.runtime.types import Chunk, ToolCall

HELLO = [{"role": "user", "content": "Hello there"}]
GREEDY = {"temperature": 0, "extra_body": {"options": {"repeat_penalty": 1.0}}}


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def chat(client: OpenAI, **kwargs):
    kwargs = {"model": "tiny", "messages": HELLO, "max_tokens": 8, **GREEDY, **kwargs}
    return client.chat.completions.create(**kwargs)


def still_answers(client: OpenAI) -> None:
    assert chat(client, max_tokens=2).choices[0].finish_reason in ("stop", "length")


# -- chat ------------------------------------------------------------------------------


def test_chat_completion_shape(client):
    r = chat(client)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.model == "tiny" and r.system_fingerprint and r.created > 0
    [choice] = r.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.logprobs is None
    assert choice.finish_reason in ("stop", "length") and not choice.message.tool_calls
    u = r.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 8
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_chat_is_deterministic_at_temperature_zero(client):
    assert chat(client).choices[0].message.content == chat(client).choices[0].message.content


def test_chat_stream_matches_the_whole_answer_and_ends_with_usage(client):
    whole = chat(client)
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    *body, usage = chunks
    assert usage.choices == [] and usage.usage == whole.usage
    assert all(c.usage is None for c in body)
    finishes = [c.choices[0].finish_reason for c in body]
    assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in body)
    assert text == whole.choices[0].message.content


def test_chat_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(chat(client, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_n_choices_with_a_seed_differ_and_are_reproducible(client):
    def run():
        return chat(client, n=2, seed=7, temperature=1.5, top_p=1.0, max_tokens=10,
                    extra_body={"options": {"top_k": 0}})

    a, b = run(), run()
    assert [c.index for c in a.choices] == [0, 1]
    texts = [c.message.content for c in a.choices]
    assert texts == [c.message.content for c in b.choices]
    assert texts[0] != texts[1]
    assert a.usage.completion_tokens <= 20


def test_stop_sequence_cuts_the_answer(client):
    text = chat(client, max_tokens=30).choices[0].message.content
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop.strip(), text
    r = chat(client, max_tokens=30, stop=[stop])
    assert r.choices[0].message.content == text[: text.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    assert chat(client, max_tokens=30, stop=stop).choices[0].message.content == text[
        : text.index(stop)]


def test_chat_logprobs_and_top_logprobs(client):
    r = chat(client, logprobs=True, top_logprobs=3, max_tokens=6)
    content = r.choices[0].logprobs.content
    assert content
    for item in content:
        assert item.logprob <= 0 and item.bytes is not None
        tops = [t.logprob for t in item.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert all(t <= 0 for t in tops)
        # greedy, no penalties: the chosen token is the most likely one
        assert item.token == item.top_logprobs[0].token
        assert math.isclose(item.logprob, tops[0], abs_tol=1e-6)
    text = r.choices[0].message.content
    assert "".join(i.token for i in content).startswith(text)


def test_chat_logprobs_stream(client):
    chunks = list(chat(client, logprobs=True, top_logprobs=2, max_tokens=4, stream=True))
    items = [i for c in chunks if c.choices and c.choices[0].logprobs
             for i in c.choices[0].logprobs.content]
    assert items and all(len(i.top_logprobs) == 2 and i.logprob <= 0 for i in items)


def test_top_logprobs_without_logprobs_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, top_logprobs=2)
    assert info.value.param == "top_logprobs"


def test_json_object_output_is_json(client):
    r = chat(client, response_format={"type": "json_object"}, max_tokens=40, n=4, seed=1,
             temperature=1.0)
    for choice in r.choices:
        text = choice.message.content
        assert text.lstrip().startswith("{"), text
        if choice.finish_reason == "stop":  # a random model may not close it in time
            assert isinstance(json.loads(text), dict)


SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "count": {"type": "integer"}},
    "required": ["ok", "count"],
    "additionalProperties": False,
}


def test_json_schema_output_matches_the_schema(client):
    r = chat(client, max_tokens=60, response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}})
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"ok", "count"}
    assert isinstance(value["ok"], bool) and type(value["count"]) is int


def test_json_schema_without_a_schema_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError):
        chat(client, response_format={"type": "json_schema", "json_schema": {"name": "x"}})


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


def test_tools_on_a_model_without_tool_support_is_a_clear_bad_request(client):
    # The tiny model's ChatML template does not read tools: the runtime says so.
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        chat(client, tools=TOOLS)
    still_answers(client)


def test_tool_choice_none_drops_the_tools(client):
    r = chat(client, tools=TOOLS, tool_choice="none")
    assert r.choices[0].finish_reason in ("stop", "length")


def test_options_pass_through_and_explicit_fields_win(client):
    r = chat(client, max_tokens=None, extra_body={"options": {"num_predict": 2}})
    assert r.usage.completion_tokens <= 2
    r = chat(client, max_tokens=1, extra_body={"options": {"num_predict": 50}})
    assert r.usage.completion_tokens == 1
    r = chat(client, max_tokens=None, max_completion_tokens=3)
    assert r.usage.completion_tokens <= 3


def test_a_prompt_longer_than_num_ctx_is_handled(client):
    long = [{"role": "user", "content": "the quick brown fox jumps " * 40}]
    r = chat(client, messages=long, max_tokens=4, extra_body={"options": {"num_ctx": 64}})
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens <= 64
    still_answers(client)


def test_content_parts_and_developer_role_are_accepted(client):
    messages = [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                             {"type": "text", "text": "there"}]}]
    assert chat(client, messages=messages).choices[0].message.role == "assistant"


def test_images_on_a_text_model_are_refused(client):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(openai.BadRequestError, match="does not support images"):
        chat(client, messages=[{"role": "user", "content": [image]}])
    with pytest.raises(openai.BadRequestError):
        chat(client, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])


# -- completions ----------------------------------------------------------------------


def complete(client: OpenAI, **kwargs):
    kwargs = {"model": "tiny", "prompt": "The cat sat on the", **GREEDY, **kwargs}
    return client.completions.create(**kwargs)


def test_completion_shape_and_default_max_tokens(client):
    r = complete(client)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == "tiny"
    [choice] = r.choices
    assert choice.index == 0 and isinstance(choice.text, str) and choice.logprobs is None
    assert choice.finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 16  # OpenAI's default max_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_of_a_list_of_prompts_with_n(client):
    r = complete(client, prompt=["The cat", "Once upon a time"], max_tokens=4, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text == r.choices[1].text  # greedy: same prompt, same text
    single = complete(client, prompt="Once upon a time", max_tokens=4)
    assert r.choices[2].text == single.choices[0].text
    assert r.usage.prompt_tokens == single.usage.prompt_tokens + complete(
        client, prompt="The cat", max_tokens=1).usage.prompt_tokens


def test_completion_of_token_ids(client, server):
    ids = server.runtime.tokenize("tiny", "The cat sat")
    r = complete(client, prompt=ids, max_tokens=3, echo=True, logprobs=0)
    assert r.usage.prompt_tokens == len(ids)
    assert len(r.choices[0].logprobs.tokens) >= len(ids)
    r = complete(client, prompt=[ids, ids[1:]], max_tokens=3)
    assert len(r.choices) == 2


def test_echo_with_zero_max_tokens_scores_the_prompt(client):
    prompt = "the quick brown fox jumps over the lazy dog"
    r = complete(client, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    [choice] = r.choices
    assert choice.text == prompt
    lp = choice.logprobs
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(math.isfinite(x) and x < 0 for x in lp.token_logprobs[1:])
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == r.usage.prompt_tokens
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    assert all(1 <= len(top) <= 2 for top in lp.top_logprobs[1:])
    assert r.usage.completion_tokens == 0
    again = complete(client, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    for x, y in zip(lp.token_logprobs[1:], again.choices[0].logprobs.token_logprobs[1:],
                    strict=True):
        assert math.isclose(x, y, abs_tol=1e-4)


def test_echo_tokens_spell_the_echoed_text(client):
    """OpenAI's contract: the tokens concatenate to the text and text_offset indexes it."""
    prompt = "the quick brown fox"
    r = complete(client, prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text == prompt
    assert [prompt[o:o + len(t)] for o, t in zip(lp.text_offset, lp.tokens, strict=True)] == (
        lp.tokens)


@pytest.mark.parametrize("echo", [False, True])
def test_out_of_range_token_ids_are_bad_requests(client, echo):
    with pytest.raises(openai.BadRequestError):
        complete(client, prompt=[5, 10**6], max_tokens=2, echo=echo)
    still_answers(client)


def test_completion_logprobs_include_the_chosen_token(client):
    r = complete(client, max_tokens=4, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) >= 1
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert logprob <= 0 and 2 <= len(top) <= 3 and top[token] == logprob
    prompt_length = len("The cat sat on the")
    assert lp.text_offset[0] == prompt_length


def test_completion_stream(client):
    whole = complete(client, max_tokens=6)
    chunks = list(complete(client, max_tokens=6, stream=True,
                           stream_options={"include_usage": True}))
    *body, usage = chunks
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in body) == whole.choices[0].text
    assert body[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert usage.choices == [] and usage.usage == whole.usage


def test_completion_stream_with_echo_starts_with_the_prompt(client):
    chunks = list(complete(client, max_tokens=2, stream=True, echo=True))
    assert chunks[0].choices[0].text.startswith("The cat sat on the")


def test_suffix_on_a_model_without_fim_tokens_is_a_bad_request_naming_it(client):
    with pytest.raises(openai.BadRequestError, match="'tiny:latest' does not support insert"):
        complete(client, suffix="done", max_tokens=2)
    still_answers(client)


# -- embeddings -------------------------------------------------------------------------


def test_embeddings_of_a_string_and_a_list(client):
    one = client.embeddings.create(model="tiny", input="hello", encoding_format="float")
    assert one.object == "list" and one.model == "tiny" and len(one.data) == 1
    vector = one.data[0].embedding
    assert one.data[0].object == "embedding" and len(vector) == 64
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-3)
    assert one.usage.prompt_tokens > 0 and one.usage.total_tokens == one.usage.prompt_tokens
    many = client.embeddings.create(model="tiny", input=["hello", "the cat"],
                                    encoding_format="float")
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == pytest.approx(vector, abs=1e-5)


def test_embeddings_base64_decodes_to_the_float_values(client, server):
    floats = client.embeddings.create(model="tiny", input=["hello", "the cat"],
                                      encoding_format="float")
    decoded = client.embeddings.create(model="tiny", input=["hello", "the cat"])  # SDK: base64
    raw = httpx.post(server.url + "/v1/embeddings", json={
        "model": "tiny", "input": ["hello", "the cat"], "encoding_format": "base64"}).json()
    for f, d, r in zip(floats.data, decoded.data, raw["data"], strict=True):
        assert d.embedding == pytest.approx(f.embedding, abs=1e-6)
        data = base64.b64decode(r["embedding"])
        assert list(struct.unpack(f"<{len(data) // 4}f", data)) == pytest.approx(
            f.embedding, abs=1e-6)


def test_embeddings_of_token_ids(client, server):
    ids = server.runtime.tokenize("tiny", "hello")
    r = client.embeddings.create(model="tiny", input=[ids], encoding_format="float")
    assert len(r.data) == 1 and len(r.data[0].embedding) == 64


def test_embeddings_of_out_of_range_token_ids_are_bad_requests(client):
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="tiny", input=[[5, 10**6]])
    still_answers(client)


def test_embedding_dimensions(client):
    r = client.embeddings.create(model="tiny", input="hi", dimensions=64, encoding_format="float")
    assert len(r.data[0].embedding) == 64
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="tiny", input="hi", dimensions=8)
    assert info.value.param == "dimensions"


# -- models -----------------------------------------------------------------------------


def test_models_list_and_retrieve(client):
    models = client.models.list()
    [model] = [m for m in models.data if m.id == "tiny:latest"]
    assert model.object == "model" and model.owned_by == "library" and model.created > 0
    assert client.models.retrieve("tiny").id == "tiny:latest"
    assert client.models.retrieve("tiny:latest").id == "tiny:latest"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda c: chat(c, model="no-such-model"),
    lambda c: chat(c, model="no-such-model", stream=True),
    lambda c: complete(c, model="no-such-model"),
    lambda c: c.embeddings.create(model="no-such-model", input="x"),
], ids=["chat", "chat-stream", "completions", "embeddings"])
def test_unknown_model_is_not_found(client, call):
    with pytest.raises(openai.NotFoundError) as info:
        call(client)
    assert info.value.code == "model_not_found" and info.value.type == "invalid_request_error"
    still_answers(client)


@pytest.mark.parametrize("kwargs, param", [
    ({"temperature": -1}, "temperature"),
    ({"n": 0}, "n"),
    ({"top_p": 2}, "top_p"),
    ({"messages": []}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"content": "no role"}]}, "messages[0].role"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
     "messages[0].content[0].type"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "other"}}},
     "tool_choice"),
    ({"extra_body": {"options": {"num_ctx": "big"}}}, None),
], ids=["temperature", "n", "top_p", "no-messages", "messages-string", "no-role",
        "unknown-role", "content-number", "part-type", "tool-choice", "bad-option"])
def test_bad_parameters_are_bad_requests(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, **kwargs)
    assert info.value.type == "invalid_request_error" and info.value.message
    if param:
        assert info.value.param == param
    still_answers(client)


@pytest.mark.parametrize("kwargs", [
    {"prompt": []}, {"prompt": [[]]}, {"logprobs": 99}, {"max_tokens": -1}, {"n": 0},
], ids=["empty-list", "empty-ids", "logprobs", "max-tokens", "n"])
def test_bad_completion_parameters_are_bad_requests(client, kwargs):
    with pytest.raises(openai.BadRequestError):
        complete(client, **kwargs)
    still_answers(client)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b'{"model": "tiny"'])
def test_malformed_json_is_a_400_in_openai_shape(client, server, body):
    r = httpx.post(server.url + "/v1/chat/completions", content=body,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    still_answers(client)


@pytest.mark.parametrize("path, body, option", [
    ("/v1/chat/completions", b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]'
                             b', "options": {"temperature": NaN}}', "temperature"),
    ("/v1/completions", b'{"model": "tiny", "prompt": "Hi", "options": {"mirostat_eta": '
                        b'Infinity}}', "mirostat_eta"),
    ("/v1/completions", b'{"model": "tiny", "prompt": "Hi", "options": {"num_thread": 100000}}',
     "num_thread"),
    ("/v1/embeddings", b'{"model": "tiny", "input": "Hi", "options": {"num_thread": 100000}}',
     "num_thread"),
], ids=["chat-nan", "completions-infinity", "completions-threads", "embeddings-threads"])
def test_options_that_cannot_run_are_400s_naming_the_option(client, server, path, body, option):
    """A non-finite float (Python's JSON reads NaN and Infinity) or more threads than ggml
    can run (100000 once took the whole server down)."""
    r = httpx.post(server.url + path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and option in error["message"]
    still_answers(client)


LONE = "\ud800"  # valid JSON (an escape of half a UTF-16 pair), not valid Unicode


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"model": "tiny", "prompt": LONE}, "prompt"),
    ("/v1/embeddings", {"model": "tiny", "input": ["ok", LONE]}, "input"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": LONE}]},
     "messages[0].content"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [*HELLO, {
        "role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
            "name": "f", "arguments": json.dumps({"city": LONE}, ensure_ascii=False)}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [*HELLO, {
        "role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
            "name": "f", "arguments": json.dumps({"city": LONE})}}]}]},  # "\\ud800" inside
     "messages[1].tool_calls[0].function.arguments"),
], ids=["completions", "embeddings", "chat", "tool-arguments", "escaped-tool-arguments"])
def test_text_that_is_not_unicode_is_a_400_naming_the_field(client, server, path, body, param):
    """Python's JSON reads a lone surrogate, UTF-8 cannot hold it: once a 500."""
    r = httpx.post(server.url + path, content=json.dumps(body),
                   headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert "not valid Unicode: a lone surrogate U+D800" in error["message"]
    still_answers(client)


# -- a scripted Runtime: tool calls, errors mid-stream, disconnects ---------------------------


@pytest.fixture
def fake():
    runtime = FakeRuntime(script=[])
    with serve(runtime) as url:
        runtime.client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                timeout=30)
        runtime.url = url
        yield runtime


CALL = ToolCall("get_weather", {"city": "Paris"})


def test_tool_calls_come_back_in_openai_shape(fake):
    fake.script = [Chunk(done=True, done_reason="stop", tool_calls=[CALL], prompt_tokens=5,
                         eval_count=7)]
    r = fake.client.chat.completions.create(model="fake", messages=HELLO, tools=TOOLS)
    [call] = r.choices[0].message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert [t.function_json() for t in fake.requests[-1].tools] == TOOLS

    chunks = list(fake.client.chat.completions.create(
        model="fake", messages=HELLO, tools=TOOLS, stream=True))
    [delta] = chunks[-1].choices[0].delta.tool_calls
    assert delta.index == 0 and delta.function.name == "get_weather"
    assert json.loads(delta.function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_what_reaches_the_runtime(fake):
    fake.script = [Chunk(text="ok"), Chunk(done=True)]
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "one"},
                                     {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    r = fake.client.chat.completions.create(
        model="fake", messages=messages, n=3, seed=5, temperature=0.5, max_tokens=9,
        stop="END", tools=TOOLS, tool_choice={"type": "function",
                                              "function": {"name": "get_weather"}},
        extra_body={"options": {"num_ctx": 128, "temperature": 1.5}})
    assert [c.message.content for c in r.choices] == ["ok", "ok", "ok"]
    first, *rest = fake.requests
    assert [m.role for m in first.messages] == ["system", "user", "assistant", "tool"]
    assert first.messages[1].content == "one\ntwo"
    assert first.messages[2].tool_calls == [dataclasses.replace(CALL, id="call_1")]
    assert first.messages[3].tool_name == "get_weather"
    assert first.tool_choice == "get_weather"
    assert first.options == {"num_ctx": 128, "temperature": 0.5, "num_predict": 9,
                             "stop": ["END"], "seed": 5}
    assert [r.options["seed"] for r in rest] == [6, 7]
    assert [t.function_json() for t in first.tools] == TOOLS

    fake.requests.clear()
    fake.client.completions.create(model="fake", prompt=["a", "b"], echo=True, logprobs=2)
    assert [(q.prompt, q.raw, q.echo, q.logprobs, q.top_logprobs, q.options["num_predict"])
            for q in fake.requests] == [("a", True, True, True, 2, 16),
                                        ("b", True, True, True, 2, 16)]


def test_an_error_in_the_middle_of_a_stream_is_an_error_event(fake):
    fake.script = [Chunk(text="a"), Chunk(text="b"), Chunk(done=True)]
    fake.fail_after = 1
    stream = fake.client.chat.completions.create(model="fake", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="the model broke down"):
        list(stream)
    raw = httpx.post(fake.url + "/v1/completions", json={
        "model": "fake", "prompt": "x", "stream": True}).text
    events = [line for line in raw.split("\n\n") if line]
    assert json.loads(events[-1].removeprefix("data: "))["error"]["type"] == (
        "invalid_request_error")
    assert "[DONE]" not in raw


def test_a_client_that_leaves_stops_the_generation(fake):
    fake.endless = True
    with httpx.stream("POST", fake.url + "/v1/chat/completions", json={
            "model": "fake", "messages": HELLO, "stream": True}) as response:
        for line in response.iter_lines():
            if "x" in line:
                break
    assert fake.closed.wait(10)


def test_api_key_is_checked_when_set(tmp_path):
    with serve(FakeRuntime(script=[]), api_key="sekret", tmp=tmp_path) as url:
        wrong = OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            wrong.models.list()
        assert info.value.code == "invalid_api_key"
        assert httpx.get(url + "/v1/models").status_code == 401
        right = OpenAI(base_url=url + "/v1", api_key="sekret", max_retries=0)
        assert [m.id for m in right.models.list().data] == ["fake:latest"]
