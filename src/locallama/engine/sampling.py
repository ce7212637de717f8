"""A llama.cpp sampler chain per request, built from Options.

The order follows llama.cpp's own: penalties, then top-k, typical, top-p, min-p,
temperature and the seeded draw (or greedy at temperature 0, or mirostat in
place of the truncation samplers).  Each request owns its chain, so its seed
and settings never leak into another request.

Two shortcuts give the same tokens for less work per step (llama.cpp's chain
copies the whole vocabulary, 262,144 entries for Gemma 3, into a candidate array
and its repeat penalty looks every one of them up in a hash map):

- the repeat penalty is applied here, to the few logits of the tokens in its
  window, with llama.cpp's float32 arithmetic (``llama_sampler_penalties_apply``),
  in place for the draw and restored after it; the chain runs without it.  Only
  when the frequency and presence penalties are 0 (their sum would be contracted
  differently by a C compiler);
- greedy decoding without a grammar is the first largest logit (what
  ``llama_sampler_greedy`` picks), read straight from the logits, no chain at all.
"""

from __future__ import annotations

import collections
import ctypes
import random
from collections.abc import Sequence

import llama_cpp
import numpy as np

from locallama.errors import InvalidRequest, LocallamaError
from locallama.options import Options


class Sampler:
    """Owns one ``llama_sampler`` chain (none for plain greedy decoding); free it with
    :meth:`close`.

    ``options`` say what to draw, ``n_vocab`` is the logits' row length, ``n_ctx``
    the window of ``repeat_last_n: -1``, ``history`` the prompt's tokens (the repeat
    penalty's first window), ``grammar`` GBNF text compiled on ``vocab``.
    InvalidRequest when the grammar does not compile.
    """

    def __init__(self, options: Options, n_vocab: int, n_ctx: int,
                 history: Sequence[int] = (), grammar: str | None = None, vocab=None) -> None:
        self.seed = options.seed if options.seed >= 0 else random.randint(0, 2**31 - 1)
        self.n_vocab = n_vocab
        self._row = ctypes.c_float * n_vocab
        self._chain = None
        last_n = n_ctx if options.repeat_last_n == -1 else options.repeat_last_n
        penalize = bool(last_n) and (options.repeat_penalty != 1.0 or bool(
            options.frequency_penalty) or bool(options.presence_penalty))
        #: the repeat penalty's window and counts when applied here (None: in the chain)
        self._window: collections.deque[int] | None = None
        self._counts: dict[int, int] = {}
        self._repeat = np.float32(options.repeat_penalty)
        if penalize and _exact_here(options):
            self._window = collections.deque(maxlen=last_n)
            for token in history[-last_n:]:  # the window includes the prompt, as in Ollama
                self._accept(token)
        #: plain greedy: the first largest (penalized) logit, no llama.cpp chain at all
        self.greedy = options.temperature <= 0.0 and not grammar and (
            self._window is not None or not penalize)
        if self.greedy:
            return
        params = llama_cpp.llama_sampler_chain_default_params()
        self._chain = llama_cpp.llama_sampler_chain_init(params)
        add = self._add
        if grammar:
            # First in the chain: later samplers only ever see tokens the grammar allows.
            constraint = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not constraint:
                self.close()
                raise InvalidRequest("the output format could not be compiled to a grammar")
            add(constraint)
        if penalize and self._window is None:
            penalties = llama_cpp.llama_sampler_init_penalties(
                n_vocab, last_n, options.repeat_penalty,
                options.frequency_penalty, options.presence_penalty,
            )
            for token in history[-last_n:]:
                llama_cpp.llama_sampler_accept(penalties, token)
            add(penalties)
        if options.temperature <= 0.0:
            add(llama_cpp.llama_sampler_init_greedy())
        elif options.mirostat == 1:
            add(llama_cpp.llama_sampler_init_temp(options.temperature))
            add(llama_cpp.llama_sampler_init_mirostat(
                n_vocab, self.seed, options.mirostat_tau, options.mirostat_eta, 100))
        elif options.mirostat == 2:
            add(llama_cpp.llama_sampler_init_temp(options.temperature))
            add(llama_cpp.llama_sampler_init_mirostat_v2(
                self.seed, options.mirostat_tau, options.mirostat_eta))
        else:
            if options.top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(options.top_k))
            if options.typical_p < 1.0:
                add(llama_cpp.llama_sampler_init_typical(options.typical_p, 1))
            if options.top_p < 1.0:
                add(llama_cpp.llama_sampler_init_top_p(options.top_p, 1))
            if options.min_p > 0.0:
                add(llama_cpp.llama_sampler_init_min_p(options.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(options.temperature))
            add(llama_cpp.llama_sampler_init_dist(self.seed))

    def _accept(self, token: int) -> None:
        """``llama_sampler_penalties_accept``: the window's newest token and counts."""
        window, counts = self._window, self._counts
        if window is None:
            return
        if len(window) == window.maxlen:
            old = window[0]
            if counts[old] == 1:
                del counts[old]
            else:
                counts[old] -= 1
        window.append(token)
        counts[token] = counts.get(token, 0) + 1

    def _add(self, sampler) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def _logits(self, ctx, index: int) -> np.ndarray:
        """The context's logits row ``index`` as a writable float32 array (no copy)."""
        pointer = llama_cpp.llama_get_logits_ith(ctx, index)
        if not pointer:
            raise LocallamaError(f"llama.cpp has no logits for output row {index}")
        address = ctypes.addressof(pointer.contents)
        return np.frombuffer(self._row.from_address(address), dtype=np.float32)

    def sample(self, ctx, index: int = -1) -> int:
        """Draw the next token from the logits at ``index`` (and accept it).

        The logits are as they were afterwards (the penalty is undone), so a
        token's logprob reads the model's own values."""
        window = self._window
        if window is None and not self.greedy:
            return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        logits = self._logits(ctx, index)
        if window is not None:  # llama_sampler_penalties_apply, on the window's tokens
            ids = np.fromiter(self._counts, dtype=np.intp, count=len(self._counts))
            if len(ids) and (ids.min() < 0 or ids.max() >= len(logits)):
                # an image's placeholder positions (negative ids, engine/vision_types.py)
                # hold a window slot but are no token: no logit to penalize
                ids = ids[(ids >= 0) & (ids < len(logits))]
            kept = logits[ids]
            logits[ids] = np.where(kept <= 0, kept * self._repeat, kept / self._repeat)
        try:
            if self.greedy:
                token = int(logits.argmax())
                if logits[token] != logits[token]:  # a NaN: as llama.cpp's greedy sampler
                    token = _greedy_with_nan(logits)
            else:
                token = int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        finally:
            if window is not None:
                logits[ids] = kept
        self._accept(token)
        return token

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:
        self.close()


def sample_rows(pool, ctx, due: list[tuple[Sampler, int]]) -> dict[int, int]:
    """Sample every due (sampler, logits row) of ``ctx``; the token of each row.  Chains
    of llama.cpp samplers run side by side on ``pool`` (a ThreadPoolExecutor: a chain
    over a large vocabulary costs a few hundred microseconds, and the cores would
    otherwise idle between decodes).  Greedy rows (an argmax, tens of microseconds)
    are drawn on this thread meanwhile: a hand-off costs more."""
    chained = [d for d in due if not d[0].greedy]
    pooled = pool.map(lambda d: d[0].sample(ctx, d[1]), chained) if len(chained) > 1 else None
    try:
        tokens = {row: sampler.sample(ctx, row) for sampler, row in due
                  if pooled is None or sampler.greedy}
    finally:  # the pool's draws end before anything else touches the context
        drawn = list(pooled) if pooled is not None else []
    tokens.update((row, token) for (_, row), token in zip(chained, drawn, strict=False))
    return tokens


def _exact_here(options: Options) -> bool:
    """Whether :class:`Sampler` applies this repeat penalty itself with llama.cpp's
    results: only the repeat penalty (llama.cpp computes ``count * frequency +
    presence`` in an order a compiler may fuse), by a positive finite factor."""
    factor = options.repeat_penalty
    return (not options.frequency_penalty and not options.presence_penalty
            and 0.0 < factor < float("inf"))


def _greedy_with_nan(logits: np.ndarray) -> int:
    """``llama_sampler_greedy``'s pick where NaNs are (numpy's argmax would take the
    first NaN): the first entry no later entry compares greater than."""
    best = 0
    for i, value in enumerate(logits.tolist()):
        if value > logits[best]:
            best = i
    return best
