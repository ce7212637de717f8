"""A llama.cpp sampler chain per request, built from Options.

The order follows llama.cpp's own: penalties, then top-k, typical, top-p, min-p,
temperature and the seeded draw (or greedy at temperature 0, or mirostat in
place of the truncation samplers).  Each request owns its chain, so its seed
and settings never leak into another request.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import llama_cpp

from locallama.errors import InvalidRequest
from locallama.options import Options


class Sampler:
    """Owns one ``llama_sampler`` chain; free it with :meth:`close`."""

    def __init__(self, options: Options, n_vocab: int, n_ctx: int,
                 history: Sequence[int] = (), grammar: str | None = None, vocab=None) -> None:
        self.seed = options.seed if options.seed >= 0 else random.randint(0, 2**31 - 1)
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
        last_n = n_ctx if options.repeat_last_n == -1 else options.repeat_last_n
        if last_n and (options.repeat_penalty != 1.0 or options.frequency_penalty
                       or options.presence_penalty):
            penalties = llama_cpp.llama_sampler_init_penalties(
                n_vocab, last_n, options.repeat_penalty,
                options.frequency_penalty, options.presence_penalty,
            )
            # The window of recent tokens includes the prompt, as in Ollama.
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

    def _add(self, sampler) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def sample(self, ctx, index: int = -1) -> int:
        """Draw the next token from the logits at ``index`` (and accept it)."""
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:
        self.close()
