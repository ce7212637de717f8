"""Scoring (runtime/scoring.py): Runtime.score's log-likelihoods of continuations and
Runtime.score_tokens' per-token log-probabilities, the primitives under eval and
perplexity."""

import math

import pytest

from locallama.errors import InvalidRequest, ModelNotFound
from locallama.runtime.scoring import split_trailing_space
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


def test_trailing_spaces_of_a_context_are_scored_with_the_continuation(runtime):
    """lm-evaluation-harness's split: "The cat sat on the " + "mat" is scored as
    "The cat sat on the" + " mat", not as a lone space token followed by "mat"."""
    (spaced,) = runtime.score("tiny", [("The cat sat on the ", "mat")])
    (joined,) = runtime.score("tiny", [("The cat sat on the", " mat")])
    assert spaced.token_logprobs == pytest.approx(joined.token_logprobs, abs=1e-5)
    assert spaced.logprob == pytest.approx(joined.logprob, abs=1e-5)


@pytest.mark.parametrize(("context", "split"), [
    ("Answer:  ", ("Answer:", "  ")),
    ("Answer:", ("Answer:", "")),
    ("Answer:\n", ("Answer:\n", "")),  # only spaces move (docs/evals.md)
    ("   ", ("", "   ")),
])
def test_split_trailing_space(context, split):
    assert split_trailing_space(context) == split


def test_progress_counts_every_pair_once_in_order(runtime):
    pairs = [("Question one:", f" answer {a}") for a in range(3)] + [
        ("Question two:", f" answer {a}") for a in range(2)]
    seen: list[int] = []
    scores = runtime.score("tiny", pairs, {"num_ctx": 256}, progress=seen.append)
    assert len(scores) == 5
    assert seen == [1, 2, 3, 4, 5]


def test_score_tokens_agrees_with_score_and_counts_windows(runtime):
    context = runtime.tokenize("tiny", "The cat sat")  # BOS included
    window = runtime.tokenize("tiny", "The cat sat on the mat")
    assert window[:len(context)] == context  # the comparison needs a shared prefix
    (score,) = runtime.score("tiny", [("The cat sat", " on the mat")])
    seen: list[int] = []
    results = runtime.score_tokens("tiny", [window, window[:-1], window], len(context),
                                   progress=seen.append)
    assert results[0] == pytest.approx(score.token_logprobs, abs=1e-4)
    assert results[1] == pytest.approx(score.token_logprobs[:-1], abs=1e-4)
    assert results[2] == pytest.approx(results[0], abs=1e-5)  # windows do not interfere
    assert seen == [1, 2, 3]


def test_score_tokens_refuses_windows_with_nothing_to_score_before_loading(runtime):
    assert runtime.score_tokens("nope", [], 1) == []  # nothing asked: nothing looked up
    with pytest.raises(InvalidRequest, match="every window needs tokens after position 3"):
        runtime.score_tokens("nope", [[1, 2, 3, 4], [1, 2, 3]], 3)
    with pytest.raises(InvalidRequest, match="after position 0"):
        runtime.score_tokens("tiny", [[1, 2, 3]], 0)
    with pytest.raises(ModelNotFound, match="nope"):
        runtime.score_tokens("nope", [[1, 2, 3]], 1)
    assert runtime.ps() == []
