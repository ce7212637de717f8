"""What a sequence does when its tokens do not fit its ``num_ctx``: Ollama's two rules,
as plain functions the scheduler calls (``engine/scheduler.py``).

- :func:`fit_prompt`, at submission: a prompt longer than the context keeps its
  first ``num_keep`` tokens and the newest rest (Ollama's truncation), or is refused
  where the request asked for no truncation or scores its prompt.
- :func:`shift_context`, while generating: a full sequence keeps ``num_keep`` tokens,
  drops half of the rest from its KV cache and moves the remainder down (Ollama's
  context shift, llama.cpp's ``llama_memory_seq_rm`` + ``llama_memory_seq_add``).
"""

from __future__ import annotations

import llama_cpp

from locallama.engine.job import Job
from locallama.engine.slots import Slot
from locallama.errors import InvalidRequest


def fit_prompt(job: Job, num_ctx: int) -> list[int]:
    """``job.prompt`` cut to fit ``num_ctx`` tokens with room for the answer (one token
    when ``num_predict`` is unbounded, else ``num_predict`` up to half the context).
    Sets ``job.stats.truncated`` when it cuts; InvalidRequest where it may not."""
    prompt, options = job.prompt, job.options
    reserve = 1 if options.num_predict < 0 else min(max(options.num_predict, 1), num_ctx // 2)
    room = num_ctx - reserve
    if len(prompt) <= room:
        return prompt
    if not job.truncate or job.score_top is not None:
        raise InvalidRequest(
            f"the prompt is {len(prompt)} tokens, longer than the context allows "
            f"({room} of num_ctx={num_ctx} with room for the answer)")
    keep = min(max(options.num_keep, 0), room // 2)
    job.stats.truncated = True
    return prompt[:keep] + prompt[len(prompt) - (room - keep):]


def shift_context(memory, slot: Slot, num_keep: int) -> bool:
    """Free half of ``slot``'s cells past its first ``num_keep`` (in ``memory``, the
    context's llama_memory) and keep ``slot.cached`` in step.  False when the cache
    cannot shift (llama.cpp says so) or nothing can be dropped."""
    if not llama_cpp.llama_memory_can_shift(memory):
        return False
    n_past = len(slot.cached)
    keep = min(max(num_keep, 0), n_past // 2)
    discard = (n_past - keep) // 2
    if discard <= 0:
        return False
    llama_cpp.llama_memory_seq_rm(memory, slot.id, keep, keep + discard)
    llama_cpp.llama_memory_seq_add(memory, slot.id, keep + discard, -1, -discard)
    del slot.cached[keep:keep + discard]
    return True
