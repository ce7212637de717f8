"""Speculative decoding: draft a few tokens cheaply, let the target model check them
in one batch, keep the ones it would have produced itself.

Two kinds of drafts, as llama.cpp has them:

- **Prompt lookup** (llama.cpp's ``ngram-simple``; :class:`PromptLookup`): the last
  ``spec_ngram_size_n`` tokens of the sequence (prompt + output so far) are looked up
  in the sequence itself; the tokens that followed their latest earlier occurrence
  are the draft.  No second model: it pays where the answer repeats its input
  (editing code, quoting a document, a JSON echo).
- **A draft model** (``PARAMETER draft_model NAME``; ``engine/draft.py``): a small
  model with the same vocabulary proposes the next tokens greedily.

Verification is llama.cpp's (``common_sampler_sample_and_accept_n``): the sequence's
next token and the draft ``[last, d1 .. dk]`` are evaluated in one batch, the
target's own sampler chain samples at each position in order, and drafted tokens
are accepted while what it samples equals the draft; the first sample that differs
(or the one after the last draft) is the step's new token.  Each sampled token is
drawn exactly as it would be without speculation (same chain, same order, one draw
per output token), so a seeded answer keeps its distribution and a grammar in the
chain sees the accepted tokens in order.  A greedy answer is the target's own only
as far as llama.cpp computes a batch's rows as it computes single steps, which it
does not always do (see :class:`Speculator`): automatic mode leaves greedy requests
alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import llama_cpp
import numpy as np

from locallama.options import Options


class PromptLookup:
    """An index of one sequence's n-grams: which token followed each one, last seen.

    ``extend(tokens)`` appends to the sequence (O(size_n) per token); ``draft(n)``
    gives up to ``n`` tokens that followed the latest earlier occurrence of the
    sequence's last ``size_n`` tokens (trying shorter tails down to ``min_n`` when
    the longest has never been seen), or ``[]``.  Token ids in, token ids out.
    """

    def __init__(self, tokens: Sequence[int] = (), size_n: int = 3, min_n: int = 1) -> None:
        if size_n < 1:
            raise ValueError("size_n must be at least 1")
        self.size_n = size_n
        self.min_n = max(1, min(min_n, size_n))
        self.tokens: list[int] = []
        # n-gram (tuple) -> the index of the token that followed its latest occurrence
        self._next: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        seq, index = self.tokens, self._next
        for token in tokens:
            end = len(seq)  # ``token`` lands here: the n-grams before it point at it
            for n in range(self.min_n, self.size_n + 1):
                if end >= n:
                    index[tuple(seq[end - n:end])] = end
            seq.append(token)

    def draft(self, n_max: int) -> list[int]:
        seq, end = self.tokens, len(self.tokens)
        if n_max <= 0:
            return []
        for n in range(min(self.size_n, end), self.min_n - 1, -1):
            start = self._next.get(tuple(seq[end - n:]))
            if start is not None:
                return seq[start:start + n_max]
        return []


#: tokens drafted per step when ``draft_max`` is -1 (automatic).  On a CPU a batch of
#: k + 1 tokens costs about 1 + k/3 single steps (gemma3:270m, 2 threads), so long
#: drafts pay only when nearly all of them are accepted: the length adapts (below).
AUTO_DRAFT_MAX = 8
#: a job's first draft length; +2 after a step that accepted its whole draft, -1 (to 1)
#: after one that did not (the "heuristic" schedule of Hugging Face's assisted decoding)
FIRST_DRAFT = 3


def draft_room(options: Options, generated: int, cached: int, num_ctx: int,
               num_batch: int) -> int:
    """How many tokens a step may draft: ``draft_max`` (AUTO_DRAFT_MAX for -1), less
    where the answer's ``num_predict``, the sequence's context or the batch would end
    inside the draft (a step evaluates draft + 1 tokens and yields at most as many;
    one cell stays free, as the scheduler keeps)."""
    limit = AUTO_DRAFT_MAX if options.draft_max < 0 else options.draft_max
    room = min(limit, num_ctx - cached - 3, num_batch - 1)
    if options.num_predict >= 0:
        room = min(room, options.num_predict - generated - 1)
    return max(room, 0)


def verify(sampler, ctx, draft: Sequence[int]) -> list[int]:
    """Sample the target's rows 0 .. len(draft) in order with the job's own chain and
    return the tokens drawn: the accepted drafts followed by the first token that
    differs from the draft (or the one after the whole draft).  Row ``i`` holds the
    logits after the batch's token ``i``, so row 0 follows the sequence's last token
    and row ``i`` follows draft token ``i``.  len(result) - 1 drafts were accepted."""
    drawn = []
    for i in range(len(draft) + 1):
        token = sampler.sample(ctx, i)
        drawn.append(token)
        if i == len(draft) or token != draft[i]:
            break
    return drawn


class _JobDrafts:
    """A job's drafting state: its n-gram index and the adaptive draft length."""

    def __init__(self, job) -> None:
        self.lookup = PromptLookup(job.prompt, job.options.spec_ngram_size_n,
                                   min_n=min(2, job.options.spec_ngram_size_n))
        self.length = FIRST_DRAFT

    def accepted(self, drafted: int, accepted: int) -> None:
        self.length = self.length + 2 if accepted == drafted else max(1, self.length - 1)


class Speculator:
    """A scheduler's drafting: prompt lookup, or ``draft`` (an ``engine.draft.DraftModel``)
    where the model has one.  One per scheduler; used by its loop thread only.

    ``draft_max`` -1 (automatic) speculates for sampled requests only.  A batch of a
    sequence's tokens can round otherwise than single-token steps in llama.cpp's
    kernels (``batch_step_difference`` measures it: on gemma3 with flash attention off
    every weight type differs, and where 12 probe tokens agree bit for bit other tokens
    at other positions still can), so a drafted greedy answer could part from the
    model's own; a sampled one keeps its distribution either way.  A request or
    Modelfile that sets ``draft_max`` above 0 speculates greedy requests too, taking
    that risk for the speed.
    """

    def __init__(self, draft=None) -> None:
        self.draft = draft

    @staticmethod
    def wanted(options: Options) -> bool:
        """Whether a job with ``options`` speculates at all."""
        if options.draft_max < 0:
            return options.temperature > 0
        return options.draft_max > 0

    def plan(self, job, next_token: int, cached: list[int], num_ctx: int,
             num_batch: int) -> list[int]:
        """The tokens to evaluate after ``next_token`` for ``job`` (whose slot holds
        ``cached``): its draft, or [] where there is none worth checking (speculation
        off for it, no match, shorter than ``draft_min``, no room)."""
        options = job.options
        state = job.drafter
        if state is None:
            # a prompt with images holds placeholder ids (engine/vision_types.py), no
            # tokens to look up or hand a draft model: such a job does not speculate
            if not self.wanted(options) or job.images:
                job.drafter = False
                return []
            state = job.drafter = _JobDrafts(job)
        elif state is False:
            return []
        room = min(state.length, draft_room(options, len(job.generated), len(cached),
                                            num_ctx, num_batch))
        if room < max(1, options.draft_min):
            return []
        if self.draft is not None:
            draft = self.draft.draft(job.slot.id, [*cached, next_token], room)
        else:
            lookup = state.lookup
            lookup.extend(job.generated[len(lookup.tokens) - len(job.prompt):])
            draft = lookup.draft(room)
        return draft if len(draft) >= options.draft_min else []

    @staticmethod
    def checked(job, drafted: int, accepted: int) -> None:
        """Count a verified draft in the job's stats and adapt its next draft length."""
        job.stats.draft_n += drafted
        job.stats.draft_n_accepted += accepted
        if job.drafter:
            job.drafter.accepted(drafted, accepted)

    def close(self) -> None:
        if self.draft is not None:
            self.draft.close()
            self.draft = None


#: the probe's text: ordinary tokens (rare ones, such as ids spread over a large
#: vocabulary, can agree where ordinary text does not: gemma3:270m's Q4_K_M did)
PROBE_TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs home. "
              "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # prints 5\n")


def fresh_step_difference(model, threads: int, flash_attention: bool = False) -> float:
    """``batch_step_difference`` on a fresh one-sequence context of ``model`` (a
    LoadedModel), freed afterwards (bench/batch_exactness.py's figure)."""
    ctx = model.new_context(256, 1, 32, threads, flash_attention=flash_attention)
    batch = llama_cpp.llama_batch_init(32, 0, 1)
    try:
        return batch_step_difference(ctx, batch, model.n_vocab, model.tokenize(PROBE_TEXT))
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def batch_step_difference(ctx, batch, n_vocab: int, tokens: Sequence[int], seq_id: int = 0,
                          n: int = 12) -> float:
    """The largest difference (in logits) between ``n`` tokens of a sequence evaluated
    in one batch and one at a time, after the first three of ``tokens`` (which holds at
    least n + 3 ordinary tokens, say PROBE_TEXT's); 0.0 when bit-identical, inf when a
    decode fails or there are too few tokens.  Uses sequence ``seq_id`` of the context
    (``batch`` holds at least ``n + 3`` tokens) and leaves it empty; for a fresh
    context, before any job.  Costs n + 1 evaluations.  A zero is evidence, not proof:
    agreement can depend on the tokens (see PROBE_TEXT)."""
    memory = llama_cpp.llama_get_memory(ctx)
    tokens = list(tokens[:n + 3])
    n = len(tokens) - 3
    if n < 1:
        return math.inf

    def decode(part: list[int], first: int) -> bool:
        for k, token in enumerate(part):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, first + k, 1
            batch.seq_id[k][0], batch.logits[k] = seq_id, True
        batch.n_tokens = len(part)
        # the probe is no request's work: a decode trace (LOCALLAMA_DECODE_TRACE) skips it
        untraced = getattr(llama_cpp.llama_decode, "untraced", llama_cpp.llama_decode)
        return untraced(ctx, batch) == 0

    def rows(count: int) -> list[np.ndarray]:
        return [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i),
                                      shape=(n_vocab,)).copy() for i in range(count)]

    try:
        if not decode(tokens[:3], 0) or not decode(tokens[3:], 3):
            return math.inf
        together = rows(n)
        llama_cpp.llama_memory_seq_rm(memory, seq_id, 3, -1)
        alone = []
        for k, token in enumerate(tokens[3:]):
            if not decode([token], 3 + k):
                return math.inf
            alone += rows(1)
        return max(float(np.abs(a - b).max()) for a, b in zip(together, alone, strict=True))
    finally:
        llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)
