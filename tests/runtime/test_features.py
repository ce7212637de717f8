"""Features below both faces: structured output, logprobs, echo scores, tools, keep_alive."""

import json
import math
import time

import numpy as np
import pytest

from locallama.engine.tools import parse_tool_calls
from locallama.errors import InvalidRequest
from locallama.options import parse_keep_alive
from locallama.runtime.types import ChatRequest, GenerateRequest, Message, Tool
from runtimes import add_model, local_runtime


def run(runtime, request):
    chunks = list(runtime.generate(request))
    return "".join(c.text for c in chunks), chunks


def test_format_json_output_is_json(runtime):
    """A random model may run out of tokens inside a string; an answer that ends parses."""
    for seed in range(3):
        text, chunks = run(runtime, GenerateRequest("tiny", "Data:", format="json", options={
            "seed": seed, "temperature": 1.0, "num_predict": 200}))
        assert text.lstrip()[:1] in ("{", "[")
        if chunks[-1].done_reason == "stop":
            json.loads(text)


def test_format_schema_output_matches_the_schema(runtime):
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 3},
        "age": {"type": "integer"},
        "ok": {"type": "boolean"}},
        "required": ["name", "age", "ok"], "additionalProperties": False}
    text, _ = run(runtime, GenerateRequest("tiny", "Person:", format=schema, options={
        "seed": 3, "temperature": 0.7, "num_predict": 400}))
    value = json.loads(text)
    assert set(value) == {"name", "age", "ok"}
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    assert isinstance(value["ok"], bool)


def test_bad_format_is_an_invalid_request(runtime):
    with pytest.raises(InvalidRequest):
        run(runtime, GenerateRequest("tiny", "x", format="xml"))
    with pytest.raises(InvalidRequest):
        run(runtime, GenerateRequest("tiny", "x", format={"type": "object", "properties": 5}))


def test_logprobs_are_real_and_greedy_picks_the_best(runtime):
    text, chunks = run(runtime, GenerateRequest("tiny", "The cat", logprobs=True, top_logprobs=3,
                                                options={"temperature": 0, "num_predict": 6,
                                                         "repeat_penalty": 1.0}))
    records = [lp for c in chunks for lp in (c.logprobs or [])]
    assert len(records) == 6
    for record in records:
        assert record.logprob <= 0
        assert len(record.top) == 3
        assert [t.logprob for t in record.top] == sorted((t.logprob for t in record.top),
                                                          reverse=True)
        assert record.top[0].token == record.token  # greedy: the argmax was chosen
        assert math.isclose(record.top[0].logprob, record.logprob, abs_tol=1e-5)
    assert "".join(r.token for r in records) == text


def test_echo_scores_equal_generation_logprobs_and_a_plain_llama_evaluation(runtime):
    prompt = "the cat sat on the mat and the dog"
    _, chunks = run(runtime, GenerateRequest("tiny", prompt, raw=True, echo=True, logprobs=True,
                                             options={"num_predict": 0}))
    scores = chunks[0].prompt_logprobs
    tokens = runtime.tokenize("tiny", prompt)
    assert len(scores) == len(tokens) and math.isnan(scores[0].logprob)
    assert all(s.logprob < 0 for s in scores[1:])

    # the same numbers from llama-cpp-python's own evaluation with all logits kept
    import llama_cpp

    path = runtime.store.get("tiny").model_path
    llm = llama_cpp.Llama(str(path), n_ctx=256, logits_all=True, verbose=False)
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                           keepdims=True)) - logits.max(1, keepdims=True)
    expected = [logp[i - 1, tokens[i]] for i in range(1, len(tokens))]
    assert np.allclose([s.logprob for s in scores[1:]], expected, atol=1e-3)
    llm.close()

    # and a generated token's logprob equals the echo score of that token as prompt
    _, gen = run(runtime, GenerateRequest("tiny", prompt, raw=True, logprobs=True,
                                          options={"num_predict": 1, "temperature": 0}))
    token_lp = gen[0].logprobs[0]
    extended = runtime.tokenize("tiny", prompt) + [runtime.tokenize("tiny", token_lp.token)[-1]]
    rescored = run(runtime, GenerateRequest("tiny", runtime.detokenize("tiny", extended[1:]),
                                            raw=True, echo=True, options={"num_predict": 0}))
    assert rescored[1][0].prompt_logprobs  # plumbing: scores come back for any prompt


def test_tools_need_a_template_that_reads_them(runtime):
    tools = [Tool("get_time", parameters={})]
    with pytest.raises(InvalidRequest, match="does not support tools"):
        list(runtime.chat(ChatRequest("tiny", [Message("user", "hi")], tools=tools)))


def test_tools_reach_the_template_and_calls_are_parsed(runtime, tiny_gguf):
    template = ('{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}'
                '{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}')
    add_model(runtime, "toolish", tiny_gguf, f'TEMPLATE """{template}"""\n')
    tools = [Tool("get_time", parameters={})]
    chunks = list(runtime.chat(ChatRequest("toolish", [Message("user", "hi")],
                                           {"num_predict": 3}, tools=tools)))
    prompt = runtime.tokenize("toolish", "TOOLS:get_time;hi")
    assert chunks[-1].context[: len(prompt)] == prompt


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        ('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>', "",
         [("f", {"x": 1})]),
        ('Sure. <tool_call>{"name": "f", "arguments": {}}</tool_call>'
         '<tool_call>{"name": "g", "arguments": {"a": "b"}}</tool_call>', "Sure.",
         [("f", {}), ("g", {"a": "b"})]),
        ('[TOOL_CALLS] [{"name": "f", "arguments": {"q": "z"}}]', "", [("f", {"q": "z"})]),
        ('{"name": "f", "parameters": {"n": 2}}', "", [("f", {"n": 2})]),
        ('{"name": "f", "arguments": "{\\"n\\": 3}"}', "", [("f", {"n": 3})]),
        ('{"name": "unknown_tool", "arguments": {}}', '{"name": "unknown_tool", "arguments": {}}',
         []),
        ("just words", "just words", []),
    ],
)
def test_tool_call_parsing(text, content, calls):
    got_content, got_calls = parse_tool_calls(text, {"f", "g"})
    assert got_content == content
    assert [(c.name, c.arguments) for c in got_calls] == calls


def test_images_are_refused_for_models_without_vision(runtime):
    with pytest.raises(InvalidRequest, match="does not support images"):
        list(runtime.generate(GenerateRequest("tiny", "x", images=["aGk="])))


@pytest.mark.parametrize(("value", "seconds"), [
    ("5m", 300), ("1h30m", 5400), ("300ms", 0.3), ("0", 0), (0, 0), (10, 10), ("2.5s", 2.5),
    (-1, None), ("-1m", None), (None, 300)])
def test_keep_alive_values(value, seconds):
    assert parse_keep_alive(value, "5m") == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "1x", True])
def test_bad_keep_alive_is_refused(value):
    with pytest.raises(InvalidRequest, match="keep_alive"):
        parse_keep_alive(value)


def test_keep_alive_unloads_after_the_last_request(runtime):
    runtime.load("tiny", keep_alive="300ms")
    [info] = runtime.ps()
    assert info.name == "tiny:latest" and info.expires_at is not None and info.size > 0
    deadline = time.monotonic() + 5
    while runtime.ps() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.ps() == []


def test_keep_alive_zero_and_forever_and_unload(runtime):
    list(runtime.generate(GenerateRequest("tiny", "x", keep_alive=0, options={"num_predict": 1})))
    assert runtime.ps() == []
    runtime.load("tiny", keep_alive=-1)
    [info] = runtime.ps()
    assert info.expires_at is None
    runtime.unload("tiny")
    assert runtime.ps() == []


def test_truncation_is_reported(runtime):
    _, chunks = run(runtime, GenerateRequest("tiny", "word " * 400,
                                             options={"num_ctx": 128, "num_predict": 2}))
    assert chunks[-1].warnings and "truncated" in chunks[-1].warnings[0]


def test_load_honours_options(runtime):
    runtime.load("tiny", keep_alive=-1, options={"num_ctx": 512})
    [info] = runtime.ps()
    assert info.context_length == 512
    runtime.unload("tiny")


def test_a_model_too_large_for_memory_is_refused_with_both_numbers(runtime, monkeypatch):
    from locallama.errors import ModelTooLarge

    monkeypatch.setattr(runtime.loader, "_memory", lambda: 1_000_000)  # 1 MB free
    with pytest.raises(ModelTooLarge, match=r"requires [\d.]+ MB .* only 1 MB is available"):
        list(runtime.generate(GenerateRequest("tiny", "hi", options={"num_predict": 1})))
    assert runtime.ps() == []
    monkeypatch.setattr(runtime.loader, "_memory", lambda: 64_000_000_000)
    assert list(runtime.generate(GenerateRequest("tiny", "hi", options={"num_predict": 1})))


def test_the_memory_freed_by_the_model_being_replaced_counts(runtime, monkeypatch):
    runtime.load("tiny", options={"num_ctx": 256})
    [loaded] = runtime.ps()
    # just enough for the new context once the old one is gone, not beside it
    from locallama.gguf_info import estimate_memory

    need = estimate_memory(runtime.loader.entries()[0].model.info, 512).total
    monkeypatch.setattr(runtime.loader, "_memory", lambda: need - loaded.size + 1)
    runtime.load("tiny", options={"num_ctx": 512})
    assert [i.context_length for i in runtime.ps()] == [512]


def test_several_models_stay_loaded_up_to_the_configured_cap(tmp_path, make_gguf):
    models = [(name, make_gguf(seed=seed)) for seed, name in enumerate(("one", "two", "three"))]
    runtime = local_runtime(tmp_path, *models, max_loaded_models=2, num_parallel=2)
    try:
        for name in ("one", "two"):
            list(runtime.generate(GenerateRequest(name, "hi", options={"num_predict": 1})))
        assert sorted(i.name for i in runtime.ps()) == ["one:latest", "two:latest"]
        list(runtime.generate(GenerateRequest("three", "hi", options={"num_predict": 1})))
        assert sorted(i.name for i in runtime.ps()) == ["three:latest", "two:latest"]
    finally:
        runtime.close()
