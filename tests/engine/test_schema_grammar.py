"""JSON schema -> GBNF: every string from the schema reaches the grammar escaped.

Property-based: any string as a ``const`` value, an ``enum`` value and a property
name gives a grammar that llama.cpp compiles, and the tiny model's output under it
parses with json.loads to exactly that string (issue 15: backslashes, quotes and
newlines were pasted into the grammar unescaped)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locallama.engine.grammar import JSON_GRAMMAR, grammar_for
from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.engine.sampling import Sampler
from locallama.engine.schema_grammar import gbnf_literal, json_text
from locallama.errors import InvalidRequest
from locallama.gguf_info import read_gguf_info
from locallama.options import resolve_options

N_CTX = 512
EXAMPLES = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
#: any Unicode string a JSON body can carry (hypothesis leaves out lone surrogates)
TEXT = st.text(max_size=12)
AWKWARD = ["", "\\", '"', "\n", "a\\b", '\\"', "\\u0041", "\x00", "\x7f", "é", "😀",
           "root", "space", "-", "a b", "}", '"}', "\t\r\x1f"]


@pytest.fixture(scope="module")
def model(tiny_gguf: Path) -> Iterator[LoadedModel]:
    params = ContextParams(num_ctx=N_CTX, num_batch=64, num_gpu=0, use_mmap=True, threads=2,
                           num_parallel=1, flash_attention=False)
    loaded = LoadedModel(tiny_gguf, read_gguf_info(tiny_gguf), params)
    yield loaded
    loaded.close()


def generate(model: LoadedModel, grammar: str, limit: int = 400) -> tuple[str, bool]:
    """Greedy text under ``grammar`` after a short prompt: (text, ended by itself)."""
    ctx = model.new_context(N_CTX, 1, 64, 2)
    try:
        chain = Sampler(resolve_options({"temperature": 0}), model.n_vocab, N_CTX,
                        grammar=grammar, vocab=model.vocab)

        def feed(tokens: list[int]) -> None:
            array = (llama_cpp.llama_token * len(tokens))(*tokens)
            batch = llama_cpp.llama_batch_get_one(array, len(tokens))
            assert llama_cpp.llama_decode(ctx, batch) == 0

        feed(model.tokenize("Answer:"))
        tokens: list[int] = []
        for _ in range(limit):
            token = chain.sample(ctx)
            if model.is_end(token):
                return model.detokenize(tokens), True
            tokens.append(token)
            feed([token])
        return model.detokenize(tokens), False
    finally:
        llama_cpp.llama_free(ctx)


def answer(model: LoadedModel, schema: dict) -> object:
    text, ended = generate(model, grammar_for(schema))
    assert ended, text
    return json.loads(text)


# -- the escaping itself ------------------------------------------------------------------


@pytest.mark.parametrize("s", AWKWARD)
def test_a_literal_escapes_what_gbnf_reads_as_syntax(s):
    literal = gbnf_literal(s)
    assert literal.startswith('"') and literal.endswith('"')
    assert "\x00" not in literal and "\n" not in literal
    body = literal[1:-1]
    assert '"' not in body.replace('\\"', "").replace("\\\\", "")


def test_json_text_keeps_unicode_and_escapes_lone_surrogates():
    assert json_text("é😀") == '"é😀"'
    assert json_text("\ud800") == '"\\ud800"'
    assert json.loads(json_text("\ud800")) == "\ud800"


# -- the round trip through llama.cpp -------------------------------------------------------


@pytest.mark.parametrize("s", AWKWARD)
def test_awkward_strings_round_trip_as_const_enum_and_name(model, s):
    assert answer(model, {"const": s}) == s
    assert answer(model, {"enum": [s]}) == s
    assert answer(model, {"type": "object", "properties": {s: {"const": 1}},
                          "required": [s]}) == {s: 1}


@EXAMPLES
@given(s=TEXT)
def test_any_string_as_const_round_trips(model, s):
    assert answer(model, {"type": "object", "properties": {"v": {"const": s}},
                          "required": ["v"]}) == {"v": s}


@EXAMPLES
@given(s=TEXT)
def test_any_string_as_a_property_name_round_trips(model, s):
    schema = {"type": "object", "properties": {s: {"type": "boolean"}}, "required": [s],
              "additionalProperties": False}
    value = answer(model, schema)
    assert list(value) == [s] and isinstance(value[s], bool)


@EXAMPLES
@given(values=st.lists(TEXT, min_size=1, max_size=4, unique=True))
def test_any_strings_as_enum_values_give_one_of_them(model, values):
    assert answer(model, {"enum": values}) in values


# -- order, ends, refusals ------------------------------------------------------------------


def test_properties_come_out_in_declared_order(model):
    schema = {"type": "object", "properties": {"z": {"type": "boolean"},
                                               "a": {"type": "boolean"},
                                               "m": {"type": "boolean"}},
              "required": ["z", "a", "m"]}
    assert list(answer(model, schema)) == ["z", "a", "m"]
    schema["properties"] = dict(reversed(schema["properties"].items()))
    assert list(answer(model, schema)) == ["m", "a", "z"]  # not a cached sorted form


def allowed_after(model: LoadedModel, grammar: str, text: str, candidates: list[int]
                  ) -> list[int]:
    """Which of ``candidates`` llama.cpp's grammar sampler allows after ``text``
    (fed as the tiny vocabulary's byte tokens, id 5 + byte)."""
    smpl = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
    try:
        for byte in text.encode():
            llama_cpp.llama_sampler_accept(smpl, 5 + byte)
        data = (llama_cpp.llama_token_data * len(candidates))(
            *[llama_cpp.llama_token_data(t, 1.0, 0.0) for t in candidates])
        array = llama_cpp.llama_token_data_array(data, len(candidates), -1, False)
        llama_cpp.llama_sampler_apply(smpl, llama_cpp.ctypes.byref(array))
        return [data[i].id for i in range(len(candidates)) if data[i].logit > -1e30]
    finally:
        llama_cpp.llama_sampler_free(smpl)


@pytest.mark.parametrize("grammar", ["json", "schema"])
def test_after_the_closing_brace_only_the_end_is_allowed(model, grammar):
    """Trailing whitespace was allowed until the token limit (issue 15)."""
    eos, space, newline, x = 2, 5 + 0x20, 5 + 0x0A, 5 + ord("x")
    gbnf = grammar_for("json" if grammar == "json" else {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    assert allowed_after(model, gbnf, '{"a": 1', [eos, space, newline, x]) != [eos]
    assert allowed_after(model, gbnf, '{"a": 1}', [eos, space, newline, x]) == [eos]


def test_json_output_under_the_grammar_parses_when_it_ends(model):
    text, ended = generate(model, JSON_GRAMMAR, limit=200)
    assert text.startswith("{")
    if ended:
        assert text.endswith("}"), repr(text)
        json.loads(text)


@pytest.mark.parametrize("pattern", ['^a"b$', "^a\\\\b$", "^[a-z]+$", "^a.c$", "^\\d+$"])
def test_a_pattern_that_could_break_the_json_string_is_refused(pattern):
    with pytest.raises(InvalidRequest, match="pattern"):
        grammar_for({"type": "string", "pattern": pattern})


def test_a_plain_pattern_still_works(model):
    assert answer(model, {"type": "string", "pattern": "^ab(c|d)x?$"}) in (
        "abc", "abd", "abcx", "abdx")
