"""Perplexity: llama.cpp's chunks and statistics, checked against a direct computation."""

import math
import random
from pathlib import Path

import numpy as np
import pytest

from locallama.errors import InvalidRequest
from locallama.evals.perplexity import (
    first_scored,
    measure_perplexity,
    statistics,
    windows_for,
)
from runtimes import local_runtime

CTX = 64


@pytest.fixture
def tiny_runtime(tmp_path: Path, tiny_gguf: Path):
    rt = local_runtime(tmp_path, ("tiny", tiny_gguf), num_parallel=2)
    yield rt
    rt.close()


def prose(words: int, seed: int = 0) -> str:
    """Plain text in the tiny model's vocabulary (so it tokenizes into real pieces)."""
    rng = random.Random(seed)
    vocab = ["the", "cat", "sat", "on", "mat", "and", "dog", "ran", "to", "house", ".", "a",
             "quick", "brown", "fox", "jump", "over", "lazy", "people", "live", "in", "small",
             "world", "near", "water", "once", "upon", "time", "there", "was", "little", "boy",
             "who", "read", "every", "story"]
    return " ".join(rng.choice(vocab) for _ in range(words))


def direct_logprobs(model_path: Path, windows: list[list[int]], score_from: int) -> list:
    """The same chunks through a plain llama-cpp-python evaluation (logits_all)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(model_path), n_ctx=CTX, n_batch=CTX, logits_all=True,
                          verbose=False, n_threads=1)
    out = []
    for window in windows:
        llm.reset()
        llm.eval(window)
        logits = np.asarray(llm.scores[:len(window)], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        logsoftmax = logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
        out.append([float(logsoftmax[j - 1, window[j]]) for j in range(score_from, len(window))])
    llm.close()
    return out


def test_perplexity_matches_a_direct_computation(tiny_runtime, tiny_gguf):
    text = prose(400)
    seen = []
    result = measure_perplexity(tiny_runtime, "tiny", text, ctx=CTX, threads=1,
                                progress=lambda done, total: seen.append((done, total)))
    tokens = tiny_runtime.tokenize("tiny", text)
    bos = tiny_runtime.tokenize("tiny", "")[0]
    windows = windows_for(tokens, CTX, bos)
    expected = statistics(direct_logprobs(tiny_gguf, windows, first_scored(CTX)))

    assert result.chunks == len(tokens) // CTX == len(windows) >= 3
    assert result.scored_tokens == result.chunks * (CTX - CTX // 2 - 1) == expected.count
    assert result.perplexity == pytest.approx(expected.perplexity, rel=1e-4)
    assert result.perplexity_stderr == pytest.approx(expected.stderr, rel=1e-3)
    assert result.chunk_perplexity[-1] == pytest.approx(result.perplexity)
    assert seen[0] == (0, result.chunks) and seen[-1] == (result.chunks, result.chunks)
    assert [d for d, _ in seen] == list(range(result.chunks + 1))
    data = result.to_json()
    assert data["kind"] == "perplexity" and data["ctx"] == CTX
    assert data["digest"].startswith("sha256:") and data["quantization"] == "F32"
    assert data["memory"] > data["size"] > 0


def test_chunks_limit_and_bos(tiny_runtime):
    result = measure_perplexity(tiny_runtime, "tiny", prose(400), ctx=CTX, chunks=2)
    assert result.chunks == 2 and len(result.chunk_perplexity) == 2


def test_windows_follow_llama_cpp():
    tokens = list(range(10, 10 + 5 * 8 + 3))  # five chunks of 8 and a tail of 3
    windows = windows_for(tokens, 8, bos=1)
    assert len(windows) == 5 and all(len(w) == 8 and w[0] == 1 for w in windows)
    assert windows[1][1:] == tokens[9:16]  # the rest of each chunk is the text's
    assert tokens[8] == 18  # the caller's tokens are left as they were
    assert windows_for(tokens, 8, bos=None)[2] == tokens[16:24]
    assert len(windows_for(tokens, 8, bos=1, chunks=3)) == 3
    assert first_scored(512) == 257  # logits from position 256 on, as llama.cpp's first


@pytest.mark.parametrize("n", [0, 5, 15])
def test_a_text_shorter_than_two_chunks_is_refused(n):
    with pytest.raises(InvalidRequest, match="needs at least 16"):
        windows_for(list(range(n)), 8, bos=1)


def test_short_and_empty_files_are_clear_errors(tiny_runtime):
    with pytest.raises(InvalidRequest, match=r"only \d+ tokens.*at least 128"):
        measure_perplexity(tiny_runtime, "tiny", "the cat sat on the mat", ctx=CTX)
    with pytest.raises(InvalidRequest, match="empty"):
        measure_perplexity(tiny_runtime, "tiny", "  \n", ctx=CTX, file="blank.txt")
    with pytest.raises(InvalidRequest, match="below the model's context of 2048"):
        measure_perplexity(tiny_runtime, "tiny", prose(10), ctx=2048)
    with pytest.raises(InvalidRequest, match="at least 4"):
        windows_for(list(range(100)), 2, bos=None)


def test_statistics_are_llama_cpps():
    chunks = [[-1.0, -2.0], [-3.0, -0.5]]
    stats = statistics(chunks)
    nll = [1.0, 2.0, 3.0, 0.5]
    mean = sum(nll) / 4
    var = sum(x * x for x in nll) / 4 - mean * mean
    assert stats.perplexity == pytest.approx(math.exp(mean))
    assert stats.stderr == pytest.approx(math.exp(mean) * math.sqrt(var / 3))
    assert stats.running == pytest.approx([math.exp(1.5), math.exp(mean)])


def test_score_tokens_checks_its_windows(tiny_runtime):
    with pytest.raises(InvalidRequest, match="after position"):
        tiny_runtime.score_tokens("tiny", [[1, 5, 6]], 3)
    assert tiny_runtime.score_tokens("tiny", [], 1) == []
