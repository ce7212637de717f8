"""Runtime.score: log-likelihoods of continuations, the primitive under eval and perplexity."""

import math

import pytest

from locallama.errors import InvalidRequest
from locallama.runtime.types import GenerateRequest


def test_a_score_is_the_sum_of_the_echoed_token_logprobs(runtime):
    chunks = list(runtime.generate(GenerateRequest(
        "tiny", "The cat sat on the mat", raw=True, echo=True,
        options={"num_predict": 1, "temperature": 0})))
    echoed = [t.logprob for c in chunks for t in (c.prompt_logprobs or [])]
    context_len = len(runtime.tokenize("tiny", "The cat sat"))  # BOS included
    (score,) = runtime.score("tiny", [("The cat sat", " on the mat")])
    assert score.token_logprobs == pytest.approx(echoed[context_len:], abs=1e-4)
    assert score.logprob == pytest.approx(sum(echoed[context_len:]), abs=1e-3)


def test_what_greedy_decoding_writes_is_greedy_and_other_text_is_less_likely(runtime):
    final = list(runtime.generate(GenerateRequest(
        "tiny", "Once upon a", raw=True, options={"num_predict": 1, "temperature": 0})))[-1]
    written = runtime.detokenize("tiny", final.context[len(runtime.tokenize("tiny",
                                                                          "Once upon a")):])
    # the text must tokenize back to the same tokens for the comparison to mean anything
    assert runtime.tokenize("tiny", "Once upon a" + written) == final.context
    best, other = runtime.score("tiny", [("Once upon a", written), ("Once upon a", " zebra")])
    assert best.greedy and best.logprob > other.logprob


def test_many_pairs_come_back_in_order_and_match_one_at_a_time(runtime):
    pairs = [(f"Question {q}: what is it?", f" answer {a}") for q in range(4) for a in range(3)]
    together = runtime.score("tiny", pairs, {"num_ctx": 256})
    alone = [runtime.score("tiny", [p], {"num_ctx": 256})[0] for p in pairs]
    assert [s.logprob for s in together] == pytest.approx([s.logprob for s in alone], abs=1e-3)
    assert all(s.tokens >= 2 and math.isfinite(s.logprob) and s.logprob < 0 for s in together)


def test_an_empty_continuation_is_refused(runtime):
    with pytest.raises(InvalidRequest, match="continuation is empty"):
        runtime.score("tiny", [("context", "")])
