"""Perplexity over a text file, by llama.cpp's method, so the number means what
``llama-perplexity`` prints.

The whole file is tokenized once (with the model's BOS, as llama.cpp does) and
cut into consecutive chunks of ``ctx`` tokens; a tail shorter than a chunk is
dropped.  When the model adds a BOS, each chunk's first token is replaced by BOS.
Each chunk is evaluated alone on an empty context, and only the second half is
scored: the logits at positions ``ctx/2`` to ``ctx-2`` predict tokens ``ctx/2+1``
to ``ctx-1``, so every scored token has at least half a window before it.
Perplexity is exp(mean negative log-likelihood) over all scored tokens; its
uncertainty is llama.cpp's: ppl x the standard error of the mean NLL.  As in
llama.cpp, a file needs at least two chunks' worth of tokens.

The chunks go through the scheduler (``Runtime.score_tokens``), never around it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from locallama.errors import InvalidRequest
from locallama.evals.facts import model_facts, versions
from locallama.runtime.base import Runtime

DEFAULT_CTX = 512  # llama-perplexity's default context


@dataclass
class PerplexityResult:
    """One perplexity run; ``to_json`` is the shape ``--output`` writes."""

    model: str
    digest: str
    quantization: str
    size: int
    parameters: int
    memory: int | None
    file: str
    file_tokens: int  # the whole file, BOS included
    ctx: int
    chunks: int
    scored_tokens: int  # ctx - ctx/2 - 1 per chunk
    perplexity: float
    perplexity_stderr: float
    mean_nll: float
    chunk_perplexity: list[float]  # the running value after each chunk, as llama.cpp prints
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "perplexity", **asdict(self)}


@dataclass
class Stats:
    """Perplexity, its uncertainty and the mean NLL over the scored tokens."""

    perplexity: float
    stderr: float
    mean_nll: float
    count: int
    running: list[float]


def windows_for(tokens: list[int], ctx: int, bos: int | None,
                chunks: int | None = None) -> list[list[int]]:
    """llama.cpp's chunks: consecutive ``ctx``-token slices, the first token of each
    set to ``bos`` (None: the model adds no BOS), at most ``chunks`` of them."""
    if ctx < 4:
        raise InvalidRequest("the context must be at least 4 tokens")
    if chunks is not None and chunks < 1:
        raise InvalidRequest("--chunks must be at least 1")
    if len(tokens) < 2 * ctx:
        raise InvalidRequest(
            f"the text tokenizes to only {len(tokens)} tokens; perplexity with a context of "
            f"{ctx} needs at least {2 * ctx} (two chunks, as llama-perplexity asks): use a "
            "longer file or a smaller --ctx")
    count = len(tokens) // ctx
    if chunks is not None:
        count = min(count, chunks)
    windows = []
    for i in range(count):
        window = tokens[i * ctx:(i + 1) * ctx]
        if bos is not None:
            window[0] = bos
        windows.append(window)
    return windows


def first_scored(ctx: int) -> int:
    """The first token whose log-probability counts: the one after position ctx/2."""
    return ctx // 2 + 1


def statistics(logprobs: list[list[float]]) -> Stats:
    """exp(mean NLL) and llama.cpp's ± (ppl x sqrt(var(NLL) / (n - 1)))."""
    nll = nll2 = 0.0
    count = 0
    running = []
    for chunk in logprobs:
        for logprob in chunk:
            nll -= logprob
            nll2 += logprob * logprob
            count += 1
        running.append(math.exp(nll / count) if count else math.nan)
    if count == 0:
        raise InvalidRequest("no tokens were scored")
    mean = nll / count
    variance = nll2 / count - mean * mean
    ppl = math.exp(mean)
    stderr = ppl * math.sqrt(variance / (count - 1)) if variance > 0 and count > 1 else 0.0
    return Stats(ppl, stderr, mean, count, running)


def measure_perplexity(runtime: Runtime, model: str, text: str, *, ctx: int = DEFAULT_CTX,
                       chunks: int | None = None, threads: int = 0, file: str = "",
                       progress: Callable[[int, int], None] | None = None
                       ) -> PerplexityResult:
    """Perplexity of ``model`` over ``text``; ``progress(done, total)`` after each chunk."""
    facts = model_facts(runtime, model)
    if not text.strip():
        raise InvalidRequest(f"{file or 'the text'} is empty")
    trained = facts["context_length"]
    if trained and ctx >= trained:
        # the scheduler keeps a cell free for an answer: a chunk needs ctx + 1 cells
        raise InvalidRequest(f"--ctx must be below the model's context of {trained} tokens")
    tokens = runtime.tokenize(model, text)
    empty = runtime.tokenize(model, "")  # [BOS] when the model adds one
    bos = empty[0] if empty else None
    windows = windows_for(tokens, ctx, bos, chunks)
    options: dict[str, Any] = {"num_thread": threads} if threads > 0 else {}
    if progress:
        progress(0, len(windows))
    started = time.perf_counter()
    logprobs = runtime.score_tokens(
        model, windows, first_scored(ctx), options,
        (lambda done: progress(done, len(windows))) if progress else None)
    seconds = time.perf_counter() - started
    stats = statistics(logprobs)
    return PerplexityResult(
        model=facts["model"], digest=facts["digest"], quantization=facts["quantization"],
        size=facts["size"], parameters=facts["parameters"], memory=facts["memory"],
        file=file, file_tokens=len(tokens), ctx=ctx, chunks=len(windows),
        scored_tokens=stats.count, perplexity=stats.perplexity,
        perplexity_stderr=stats.stderr, mean_nll=stats.mean_nll,
        chunk_perplexity=stats.running, seconds=round(seconds, 3),
        options={"num_ctx": ctx, **options}, versions=versions())
