"""Embeddings take the whole input up to num_ctx, whatever num_batch is, and count
what they embedded (issue 15: inputs were cut at num_batch while the full count was
reported)."""

from __future__ import annotations

import pytest

from locallama.errors import InvalidRequest

WORDS = ["the", "cat", "sat", "on", "the", "mat", "and", "the", "dog", "ran", "to", "the", "sun"]
SMALL_BATCH = {"num_batch": 32, "num_ctx": 512}


def words(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


def head(runtime, text: str, n: int) -> str:
    """The text of ``text``'s first ``n`` tokens (the tokenizer adds the BOS token)."""
    tokens = runtime.tokenize("tiny", text)[:n]
    head_text = runtime.detokenize("tiny", tokens[1:]).strip()
    assert len(runtime.tokenize("tiny", head_text)) == n
    return head_text


def test_an_input_longer_than_num_batch_is_embedded_whole(runtime):
    long_text = words(120)
    n_tokens = len(runtime.tokenize("tiny", long_text))
    assert SMALL_BATCH["num_batch"] < n_tokens < SMALL_BATCH["num_ctx"]
    head_text = head(runtime, long_text, SMALL_BATCH["num_batch"])

    whole = runtime.embed("tiny", [long_text], options=SMALL_BATCH)
    first = runtime.embed("tiny", [head_text], options=SMALL_BATCH)
    assert whole.prompt_eval_count == n_tokens
    assert first.prompt_eval_count == SMALL_BATCH["num_batch"]
    assert whole.embeddings[0] != pytest.approx(first.embeddings[0], abs=1e-6)


def test_several_inputs_count_every_token(runtime):
    texts = [words(100), words(70), words(3)]
    counts = [len(runtime.tokenize("tiny", t)) for t in texts]
    result = runtime.embed("tiny", texts, options=SMALL_BATCH)
    assert result.prompt_eval_count == sum(counts)
    alone = [runtime.embed("tiny", [t], options=SMALL_BATCH).embeddings[0] for t in texts]
    for together, single in zip(result.embeddings, alone, strict=True):
        assert together == pytest.approx(single, abs=1e-4)


def test_over_num_ctx_is_cut_there_and_counted_as_cut(runtime):
    options = {"num_ctx": 64, "num_batch": 16}
    text = words(200)
    assert len(runtime.tokenize("tiny", text)) > 64
    result = runtime.embed("tiny", [text], options=options)
    assert result.prompt_eval_count == 64
    cut = runtime.embed("tiny", [head(runtime, text, 64)], options=options)
    assert result.embeddings[0] == pytest.approx(cut.embeddings[0], abs=1e-4)


def test_over_num_ctx_with_truncate_false_is_refused(runtime):
    with pytest.raises(InvalidRequest, match="exceeds the context length") as caught:
        runtime.embed("tiny", [words(200)], truncate=False, options={"num_ctx": 64})
    assert caught.value.param == "input"
    # up to the context is fine with truncate false
    assert runtime.embed("tiny", [words(20)], truncate=False,
                         options={"num_ctx": 64, "num_batch": 8}).prompt_eval_count > 8
