"""Images on the scheduler's side: an image is a prompt chunk of embeddings.

The scheduler (``engine/scheduler.py``) calls these, one place each: ``prepare`` (in
``submit``: the checks, and the embeddings from the model's ``VisionContext``,
``engine/vision_context.py``, onto the job), ``reuse_limit`` (in admission: a cached
prefix never ends inside an image), ``image_at`` / ``text_run`` and ``decode_image``
(in ``_step``: one ``llama_decode`` of the image's embeddings, a batch of its own, with
non-causal attention where the projector asks for it, as Gemma 3's does).  No mtmd
here: a scheduler without images never loads it.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

import llama_cpp
import numpy as np

from locallama.engine.vision_types import ImageSpan
from locallama.errors import InvalidRequest, LocallamaError

# The scheduler and its jobs are passed in (typed Any: the scheduler imports this module).
Scheduler = Any
Job = Any


# -- the scheduler's three calls ---------------------------------------------------


def prepare(scheduler: Scheduler, job: Job) -> None:
    """Check a job with images (in ``submit``, before it is queued) and put its images'
    embeddings on it.  InvalidRequest when the model has no projector, the spans do
    not fit the prompt, a placeholder or token id is wrong, the prompt does not fit the
    context (an image is never truncated), an image is larger than one batch, or the
    job scores its prompt (echo: an image has no text to score)."""
    model = scheduler.model
    vision = getattr(model, "vision", None)
    if vision is None:
        raise InvalidRequest(f"model '{scheduler.name}' does not support images")
    if job.score_top is not None:
        raise InvalidRequest("the prompt's logprobs (echo) are not available with images")
    prompt = job.prompt
    text = [t for t in prompt if t >= 0]
    model.check_tokens(text)
    covered = 0
    for span in job.images:
        if span.start < covered or span.end > len(prompt) or any(
                t != span.placeholder for t in prompt[span.start:span.end]):
            raise InvalidRequest("the image spans do not match the prompt")
        covered = span.end
        if span.n_tokens > scheduler.num_batch:
            raise InvalidRequest(f"an image takes {span.n_tokens} positions, more than one "
                                 f"batch holds (num_batch={scheduler.num_batch}); set "
                                 f"num_batch to at least {span.n_tokens}", "num_batch")
    if sum(s.n_tokens for s in job.images) + len(text) != len(prompt):
        raise InvalidRequest("the prompt holds image places without an image")
    options = job.options
    reserve = 1 if options.num_predict < 0 else min(max(options.num_predict, 1),
                                                    scheduler.num_ctx // 2)
    if len(prompt) > scheduler.num_ctx - reserve:
        raise InvalidRequest(
            f"the prompt with its images is {len(prompt)} positions, longer than the "
            f"context allows ({scheduler.num_ctx - reserve} of num_ctx={scheduler.num_ctx} "
            "with room for the answer); images are never truncated")
    job.embeddings = {span.start: vision.embeddings(span) for span in job.images}


def reuse_limit(job: Job, reuse: int) -> int:
    """``reuse`` cached positions moved back to an image's start when they end inside it
    (an image is evaluated whole)."""
    for span in job.images:
        if span.start < reuse < span.end:
            return span.start
    return reuse


def image_at(job: Job, position: int) -> ImageSpan | None:
    """The image whose first position is ``position``, if one starts there."""
    for span in job.images:
        if span.start == position:
            return span
    return None


def text_run(job: Job, position: int) -> int:
    """How many prompt positions from ``position`` are text (up to the next image)."""
    nxt = min((s.start for s in job.images if s.start >= position), default=len(job.prompt))
    return nxt - position


def decode_image(scheduler: Scheduler, job: Job, span: ImageSpan) -> int:
    """Evaluate the image at ``span`` on the job's slot: one llama_decode of its
    embeddings at the slot's next positions; the output row of its last position is
    used when the prompt ends there.  Returns the positions it took (its budget)."""
    embd, non_causal = job.embeddings.pop(span.start)
    slot, n = job.slot, span.n_tokens
    batch = llama_cpp.llama_batch_init(n, embd.shape[1], 1)
    try:
        ctypes.memmove(batch.embd, np.ascontiguousarray(embd, dtype=np.float32).ctypes.data,
                       embd.nbytes)
        first = len(slot.cached)
        last = span.end - 1
        for k in range(n):
            batch.pos[k] = first + k
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = slot.id
            batch.logits[k] = span.start + k == last and last >= job.logits_from
        batch.n_tokens = n
        if not job.prompt_started:
            job.prompt_started = time.perf_counter_ns()
        if non_causal:
            llama_cpp.llama_set_causal_attn(scheduler.ctx, False)
        try:
            code = llama_cpp.llama_decode(scheduler.ctx, batch)
        finally:
            if non_causal:
                llama_cpp.llama_set_causal_attn(scheduler.ctx, True)
        if code != 0:
            raise LocallamaError(f"llama.cpp could not evaluate the image (code {code})")
        slot.cached.extend([span.placeholder] * n)
        job.done_prompt = span.end
        if last == len(job.prompt) - 1:
            _prompt_end(scheduler, job, n - 1, last)
    finally:
        llama_cpp.llama_batch_free(batch)
    return n


def _prompt_end(scheduler: Scheduler, job: Job, row: int, position: int) -> None:
    """The prompt ended with the image: its last row starts the answer, as the
    scheduler's ``_decode`` does for a text row."""
    now = time.perf_counter_ns()
    with scheduler._cond:
        if job.slot is None or job.cancelled or job.finished:
            return
    token = job.sampler.sample(scheduler.ctx, row) if scheduler._samples(job, position) \
        else None
    with scheduler._cond:
        if job.slot is None or job.cancelled or job.finished:
            return
        scheduler._prompt_row(job, row, position, now)
        if token is not None and not job.finished:
            scheduler._sampled(job, token, row, now)
