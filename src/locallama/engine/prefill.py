"""Prefix sharing across slots: a new job copies the KV cells of a prompt prefix that
another slot already holds (or is about to hold) instead of evaluating it again.

The scheduler (``engine/scheduler.py``) gives a new job the free slot whose own cache
holds most of its prompt (conversation affinity, ``slots.choose_slot``).  Then
:class:`PrefixShare` looks at every other slot, busy or free:

- a slot whose cache already holds a longer common prefix is copied at once;
- a slot whose job is still evaluating a prompt that shares a longer prefix is
  waited for: the new job evaluates nothing until that prefix is in the donor's
  cache, then copies it (eight requests with one system prompt that arrive
  together evaluate it once, not eight times).

The copy is llama.cpp's ``llama_memory_seq_cp(mem, src, dst, -1, -1)`` followed by
``llama_memory_seq_rm(mem, dst, n, -1)``.  With a KV stream per sequence
(``kv_unified=False``, which keeps batching out of a sequence's logits) llama.cpp
copies only whole streams (``seq_cp`` asserts a full range across streams): the
metadata moves at once, the tensors are copied at the start of the next
``llama_decode``, and the tail past the shared prefix is dropped.  Measured on
gemma3:270m (``bench/prefill_equality.py``), the copied prefix gives bitwise the
logits of evaluating the whole prompt in that sequence.  A sliding-window model
(Gemma 3) needs the window before the prefix's end still cached in the donor
(``swa_full`` keeps it; ``can_reuse`` checks it).

Copying a stream costs a memcpy of ``num_ctx`` cells in every layer, so a copy is
only made when it saves at least :data:`MIN_SHARED` tokens of evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import llama_cpp

from locallama.engine.job import Job
from locallama.engine.slots import Slot, common_prefix
from locallama.engine.vision import reuse_limit

#: the fewest tokens a copy must save.  A copy moves the whole stream: gemma3:270m at
#: num_ctx 4096 holds 18 layers x 4096 cells x 1 KiB = 72 MiB, a few ms of memcpy,
#: while 32 of its tokens take tens of ms to evaluate on two cores; a larger model
#: costs more per evaluated token than per cached cell, so the bound only gets safer.
MIN_SHARED = 32


def can_reuse(model, memory, slot: Slot, tokens: int) -> bool:
    """Whether ``slot``'s first ``tokens`` cached cells can be reused: a sliding-window
    model (``model.n_swa`` > 0) needs the window before ``tokens`` still cached."""
    if model.n_swa <= 0:
        return True
    lowest = llama_cpp.llama_memory_seq_pos_min(memory, slot.id)
    return 0 <= lowest <= max(0, tokens - model.n_swa)


@dataclass
class Wait:
    """A job waiting for ``donor``'s job to evaluate ``tokens`` prompt tokens it shares."""

    donor: Slot
    donor_job: Job
    tokens: int


class PrefixShare:
    """The scheduler's prefix sharing; every method runs on the scheduler's loop thread
    with its lock held."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler  # engine.scheduler.Scheduler (it imports this module)

    def admitted(self, job: Job) -> None:
        """``job`` just took its slot with ``job.done_prompt`` tokens of its own cache:
        copy a longer prefix from another slot now, or wait for one being evaluated."""
        slot, limit = job.slot, job.logits_from
        best: tuple[int, int, Slot] | None = None  # (tokens, ready now, donor)
        for other in self.scheduler.slots:
            if other is slot:
                continue
            now = min(common_prefix(other.cached, job.prompt), limit)
            later = now
            running = other.job
            if running is not None and not running.cancelled and running.prompt_pending:
                later = max(now, min(common_prefix(running.prompt, job.prompt), limit))
            candidate = (later, int(now >= later), other)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        if best is None or best[0] < job.done_prompt + MIN_SHARED:
            return
        tokens, ready, donor = best
        if ready:
            self._copy(job, donor, tokens)
        else:
            job.wait = Wait(donor, donor.job, tokens)

    def ready(self, job: Job) -> bool:
        """Whether ``job`` may evaluate its prompt now; a job whose donor has evaluated the
        shared prefix (or stopped before it) copies what it can first."""
        wait = job.wait
        if wait is None:
            return True
        donor_job = wait.donor_job
        have = min(common_prefix(wait.donor.cached, job.prompt), job.logits_from)
        still = (wait.donor.job is donor_job and not donor_job.cancelled
                 and donor_job.prompt_pending)
        if have < wait.tokens and still:
            return False
        job.wait = None
        if have >= job.done_prompt + MIN_SHARED:
            self._copy(job, wait.donor, have)
        return True

    def _copy(self, job: Job, donor: Slot, tokens: int) -> None:
        """Make ``job``'s sequence hold ``donor``'s first ``tokens`` cells."""
        scheduler, slot = self.scheduler, job.slot
        memory = scheduler.memory
        if job.images:
            tokens = reuse_limit(job, tokens)  # never into the middle of an image
        if tokens < job.done_prompt + MIN_SHARED or \
                not can_reuse(scheduler.model, memory, donor, tokens):
            return
        llama_cpp.llama_memory_seq_cp(memory, donor.id, slot.id, -1, -1)
        llama_cpp.llama_memory_seq_rm(memory, slot.id, tokens, -1)
        slot.cached = donor.cached[:tokens]
        job.done_prompt = tokens
        job.stats.prompt_eval_count = len(job.prompt) - tokens
        job.stats.prompt_shared_count = tokens
