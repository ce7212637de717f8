"""Scoring: log-likelihoods of given text under a model, the primitive under eval and
perplexity (``Runtime.score`` and ``Runtime.score_tokens``).

Every request becomes a scheduler job with ``num_predict`` 0 that keeps the
log-probabilities of its tokens from ``score_from`` on. Work fans out over up to
``num_parallel`` threads (one per slot) while the model is held loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, closing
from typing import TYPE_CHECKING, Any, TypeVar

from locallama.engine.job import Job
from locallama.errors import InvalidRequest
from locallama.options import Options
from locallama.runtime.types import Score, TokenLogprob

if TYPE_CHECKING:
    from locallama.engine.model import LoadedModel

#: ``hold(options)``: the model loaded with its Modelfile options under ``options``,
#: held for the ``with`` block, as (model, resolved options). Raises what loading
#: raises (ModelNotFound, InvalidRequest for a bad option, ModelTooLarge, ...).
Hold = Callable[[dict[str, Any]], AbstractContextManager[tuple["LoadedModel", Options]]]
Progress = Callable[[int], None]  # called with the count of units done so far
T = TypeVar("T")


def score(hold: Hold, pairs: list[tuple[str, str]], options: dict[str, Any] | None = None,
          progress: Progress | None = None) -> list[Score]:
    """Score each (context, continuation) pair, in order (``Runtime.score``).

    The context (trailing spaces moved to the continuation) is tokenized with the
    model's BOS, and the continuation is the tokens that tokenizing the whole text
    adds to it: lm-evaluation-harness's split. Consecutive pairs with one context run
    on one thread, so they share a slot and its cached context. A Score's logprob is
    the sum over the continuation's tokens (natural log); greedy says each token was
    the model's top choice. ``progress`` gets the count of pairs done. InvalidRequest
    for an empty context on a model that adds no BOS, or an empty continuation."""

    groups: list[list[int]] = []  # runs of pairs with one context: one slot, one prefix
    for i, (context, _) in enumerate(pairs):
        if groups and pairs[groups[-1][0]][0] == context:
            groups[-1].append(i)
        else:
            groups.append([i])
    results: list[Score | None] = [None] * len(pairs)

    def run(loaded: LoadedModel, opts: Options, indices: list[int],
            tick: Callable[[], None]) -> None:
        head, tail = split_trailing_space(pairs[indices[0]][0])
        context_tokens = loaded.tokenize(head)
        if not context_tokens:
            raise InvalidRequest("an empty context needs a model that adds a BOS token")
        for i in indices:
            whole = loaded.tokenize(head + tail + pairs[i][1])
            continuation = whole[len(context_tokens):]
            if not continuation:
                raise InvalidRequest(f"pair {i}: the continuation is empty")
            scores = _scored(loaded, Job([*context_tokens, *continuation], opts,
                                         score_top=1, score_from=len(context_tokens),
                                         truncate=False))
            results[i] = Score(
                logprob=float(sum(r.logprob for r in scores)),
                greedy=all(r.top and r.logprob >= r.top[0].logprob - 1e-6
                           for r in scores),
                token_logprobs=[r.logprob for r in scores])
            tick()

    _fan_out(hold, {**(options or {}), "num_predict": 0}, groups, run, progress)
    return [r for r in results if r is not None]


def score_tokens(hold: Hold, windows: list[list[int]], score_from: int,
                 options: dict[str, Any] | None = None,
                 progress: Progress | None = None) -> list[list[float]]:
    """Log-probabilities of each window's tokens from ``score_from`` on
    (``Runtime.score_tokens``), one list per window, in order.

    Windows are token ids taken as they are (no BOS added) and evaluated apart, on
    a context of the longest window: what perplexity needs, exactly as llama.cpp
    lays its chunks out. No windows: [] without loading anything. InvalidRequest
    when ``score_from`` < 1 or a window has no token after it. ``progress`` gets
    the count of windows done."""

    if not windows:
        return []
    if score_from < 1 or any(len(w) <= score_from for w in windows):
        raise InvalidRequest(f"every window needs tokens after position {score_from}")
    results: list[list[float]] = [[] for _ in windows]

    def run(loaded: LoadedModel, opts: Options, i: int, tick: Callable[[], None]) -> None:
        job = Job(list(windows[i]), opts, score_top=0, score_from=score_from,
                  truncate=False)
        results[i] = [r.logprob for r in _scored(loaded, job)]
        tick()

    # The scheduler keeps one cell free for an answer: n tokens need num_ctx n + 1.
    wanted = {**(options or {}), "num_predict": 0,
              "num_ctx": max(len(w) for w in windows) + 1}
    _fan_out(hold, wanted, list(range(len(windows))), run, progress)
    return results


def split_trailing_space(context: str) -> tuple[str, str]:
    """(context without its trailing spaces, those spaces): spaces at the context's end
    belong to the continuation (" Paris", not " " "Paris"). Only spaces move; the
    harness moves any trailing whitespace (docs/evals.md)."""
    head = context.rstrip(" ")
    return head, context[len(head):]


def _fan_out(hold: Hold, wanted: dict[str, Any], items: list[T],
             work: Callable[[LoadedModel, Options, T, Callable[[], None]], None],
             progress: Progress | None) -> None:
    """Run ``work(loaded, options, item, tick)`` for every item on up to num_parallel
    threads, the model held throughout; ``tick`` counts one unit done for
    ``progress``. A worker's error is raised here (the first in item order)."""
    done, lock = 0, threading.Lock()

    def tick() -> None:
        nonlocal done
        with lock:
            done += 1
            if progress:
                progress(done)

    with hold(wanted) as (loaded, opts):
        workers = max(1, len(loaded.scheduler.slots))
        with ThreadPoolExecutor(workers, thread_name_prefix="score") as pool:
            list(pool.map(lambda item: work(loaded, opts, item, tick), items))


def _scored(loaded: LoadedModel, job: Job) -> list[TokenLogprob]:
    """Run a scoring job (num_predict 0) to its end; the logprobs it kept."""
    with closing(loaded.scheduler.submit(job)) as pieces:
        for _ in pieces:
            pass
    return job.prompt_scores or []
