"""engine/sampling.py: the sampler chain a request gets, on the tiny model's real logits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from locallama.engine.grammar import grammar_for
from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.engine.sampling import Sampler
from locallama.errors import InvalidRequest
from locallama.gguf_info import read_gguf_info
from locallama.options import resolve_options

N_CTX = 256
PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def model(tiny_gguf: Path) -> Iterator[LoadedModel]:
    params = ContextParams(num_ctx=N_CTX, num_batch=64, num_gpu=0, use_mmap=True, threads=2,
                           num_parallel=1, flash_attention=False)
    loaded = LoadedModel(tiny_gguf, read_gguf_info(tiny_gguf), params)
    yield loaded
    loaded.close()


class Context:
    """A llama.cpp context that has read PROMPT: its logits are the next token's."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.ctx = model.new_context(N_CTX, 1, 64, 2)
        self.feed(model.tokenize(PROMPT))

    def feed(self, tokens: list[int]) -> None:
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        assert llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(array,
                                                                               len(tokens))) == 0

    def logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1),
                                     shape=(self.model.n_vocab,)).copy()

    def generate(self, sampler: Sampler, limit: int) -> tuple[str, bool]:
        """Sample, feed back, repeat: (the text, whether it ended by itself)."""
        tokens = []
        for _ in range(limit):
            token = sampler.sample(self.ctx)
            if self.model.is_end(token):
                return self.model.detokenize(tokens), True
            tokens.append(token)
            self.feed([token])
        return self.model.detokenize(tokens), False

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)


@pytest.fixture
def context(model: LoadedModel) -> Iterator[Context]:
    ctx = Context(model)
    yield ctx
    ctx.close()


def sampler(model: LoadedModel, history: list[int] = (), grammar: str | None = None,
            **options) -> Sampler:
    return Sampler(resolve_options(options), model.n_vocab, N_CTX, history=history,
                   grammar=grammar, vocab=model.vocab)


def draws(model: LoadedModel, context: Context, n: int = 20, **options) -> list[int]:
    """``n`` draws from one chain over the same logits (each draw moves its RNG)."""
    chain = sampler(model, **options)
    try:
        return [chain.sample(context.ctx) for _ in range(n)]
    finally:
        chain.close()


# -- which token ---------------------------------------------------------------------


def test_temperature_zero_is_greedy(model, context):
    best = int(context.logits().argmax())
    assert draws(model, context, 5, temperature=0) == [best] * 5
    assert draws(model, context, 5, temperature=0, seed=9, top_k=100) == [best] * 5


def test_the_same_seed_draws_the_same_tokens_and_another_seed_others(model, context):
    one = draws(model, context, temperature=1.0, seed=1)
    assert draws(model, context, temperature=1.0, seed=1) == one
    assert draws(model, context, temperature=1.0, seed=2) != one
    assert len(set(one)) > 1  # a real draw, not the argmax every time


def test_without_a_seed_each_request_gets_its_own(model):
    seeds = {sampler(model, temperature=1.0).seed for _ in range(4)}
    assert len(seeds) > 1 and all(0 <= s < 2**31 for s in seeds)
    assert sampler(model, seed=123).seed == 123


@pytest.mark.parametrize("truncation", [{"top_k": 1}, {"top_p": 0.0001}, {"min_p": 0.9999}],
                         ids=["top_k", "top_p", "min_p"])
def test_truncation_to_the_best_token_leaves_no_choice(model, context, truncation):
    best = int(context.logits().argmax())
    assert draws(model, context, 10, temperature=1.5, seed=4, **truncation) == [best] * 10


def test_the_repeat_penalty_counts_the_prompt(model, context):
    logits = context.logits()
    best = int(logits.argmax())
    assert draws(model, context, 1, temperature=0, repeat_penalty=1.0) == [best]
    penalised = sampler(model, history=[best], temperature=0, repeat_penalty=100.0)
    second = int(np.argsort(logits)[-2])
    assert penalised.sample(context.ctx) == second
    window_of_none = sampler(model, history=[best], temperature=0, repeat_penalty=100.0,
                             repeat_last_n=0)  # no window: no penalty
    assert window_of_none.sample(context.ctx) == best


@pytest.mark.parametrize("mirostat", [1, 2])
def test_mirostat_draws_are_seeded_too(model, context, mirostat):
    one = draws(model, context, temperature=1.0, seed=3, mirostat=mirostat)
    assert draws(model, context, temperature=1.0, seed=3, mirostat=mirostat) == one


# -- grammars --------------------------------------------------------------------------


def test_a_grammar_allows_only_its_strings(model):
    for seed in range(4):
        ctx = Context(model)
        try:
            chain = sampler(model, grammar='root ::= "yes" | "no"', temperature=1.5, seed=seed)
            assert ctx.generate(chain, 20) in (("yes", True), ("no", True))
        finally:
            ctx.close()


def test_a_json_schema_grammar_yields_json_of_that_schema(model):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                               "n": {"type": "integer"}},
              "required": ["ok", "n"], "additionalProperties": False}
    for seed in range(3):
        ctx = Context(model)
        try:
            chain = sampler(model, grammar=grammar_for(schema), temperature=1.0, seed=seed)
            text, ended = ctx.generate(chain, 120)
        finally:
            ctx.close()
        assert ended, text
        value = json.loads(text)
        assert set(value) == {"ok", "n"} and isinstance(value["ok"], bool)
        assert isinstance(value["n"], int)


def test_the_json_grammar_starts_an_object_or_an_array(model):
    """Free JSON may not end within a few tokens; what it writes is JSON so far."""
    for seed in range(3):
        ctx = Context(model)
        try:
            chain = sampler(model, grammar=grammar_for("json"), temperature=1.0, seed=seed)
            text, ended = ctx.generate(chain, 40)
        finally:
            ctx.close()
        assert text.lstrip()[:1] in ("{", "[")
        if ended:
            json.loads(text)


def test_a_grammar_that_does_not_compile_is_an_invalid_request(model):
    with pytest.raises(InvalidRequest, match="could not be compiled to a grammar"):
        sampler(model, grammar="root ::= (")


def test_closing_twice_is_harmless(model):
    chain = sampler(model, temperature=0)
    chain.close()
    chain.close()


# -- the shortcuts draw what llama.cpp's chain draws ------------------------------------


def reference_chain(model: LoadedModel, history: list[int], seed: int, temperature: float,
                    repeat_penalty: float, top_k: int = 40, grammar: str | None = None):
    """llama.cpp's own chain for these options, every step in C (penalties included)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if grammar:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar.encode(), b"root"))
    penalties = llama_cpp.llama_sampler_init_penalties(model.n_vocab, 64, repeat_penalty,
                                                       0.0, 0.0)
    for token in history[-64:]:
        llama_cpp.llama_sampler_accept(penalties, token)
    llama_cpp.llama_sampler_chain_add(chain, penalties)
    if temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(top_k))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(0.9, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


@pytest.mark.parametrize("wishes", [
    {"temperature": 0, "repeat_penalty": 1.1},
    {"temperature": 0, "repeat_penalty": 5.0},
    {"temperature": 0, "repeat_penalty": 0.5},  # below 1: repeats favoured
    {"temperature": 1.0, "repeat_penalty": 3.0, "seed": 7},
    {"temperature": 0, "repeat_penalty": 2.0, "grammar": 'root ::= [a-z ]+ "."'},
], ids=["greedy", "greedy-strong", "greedy-favour", "seeded", "grammar"])
def test_the_penalty_and_greedy_shortcuts_draw_llama_cpp_s_tokens(model, context, wishes):
    """60 steps of the same text: each step's token is the one llama.cpp's chain draws,
    and the logits are the model's own afterwards (logprobs read them)."""
    wishes = dict(wishes)
    grammar = wishes.pop("grammar", None)
    history = model.tokenize(PROMPT)
    options = resolve_options({"top_k": 40, "top_p": 0.9, "repeat_last_n": 64, **wishes})
    ours = Sampler(options, model.n_vocab, N_CTX, history=history, grammar=grammar,
                   vocab=model.vocab)
    theirs = reference_chain(model, history, wishes.get("seed", 0), wishes["temperature"],
                             wishes["repeat_penalty"], grammar=grammar)
    penalised = 0
    try:
        for _ in range(60):
            before = context.logits()
            token = ours.sample(context.ctx)
            assert np.array_equal(context.logits(), before)  # restored
            assert token == llama_cpp.llama_sampler_sample(theirs, context.ctx, -1)
            penalised += token != int(before.argmax())
            context.feed([token])
    finally:
        ours.close()
        llama_cpp.llama_sampler_free(theirs)
    if wishes["temperature"] == 0 and not grammar and wishes["repeat_penalty"] > 1:
        assert penalised  # the penalty changed some pick: the shortcut was tested on it
