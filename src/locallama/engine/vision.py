"""Images through llama.cpp's mtmd: a projector loaded beside the model, prompts with
images tokenized into text ids and image spans, and an image evaluated on a slot as a
prompt chunk of embeddings.

The projector (an "mmproj" GGUF, ``general.architecture`` "clip") is loaded once per
model in its runner (``VisionContext``).  ``tokenize`` runs mtmd's tokenizer over a
prompt whose images are marked by ``vision_types.MARKER`` (mtmd adds what the model
puts around an image, Gemma 3's ``<start_of_image>`` ...), encodes each image with the
projector and keeps its embeddings in a small cache keyed by the image's sha256, so
the job that follows finds them ready; the scheduler only reads them.

The scheduler calls three functions here, one place each: ``prepare`` (in
``submit``: the checks, and the embeddings onto the job), ``reuse_limit`` (in
admission: a cached prefix never ends inside an image) and ``decode_image`` (in
``_step``: one ``llama_decode`` of the image's embeddings, a batch of its own, with
non-causal attention where the projector asks for it, as Gemma 3's does).
"""

from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import mtmd_cpp as mtmd

from locallama.engine.vision_types import MARKER, ImageSpan, digest_of, placeholder
from locallama.errors import BadModelFile, InvalidRequest, LocallamaError, NotSupported

# The scheduler and its jobs are passed in (typed Any: the scheduler imports this module).
Scheduler = Any
Job = Any


@llama_cpp.llama_log_callback
def _mtmd_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """mtmd's own log, as llama.cpp's (``engine/model.py``): stderr with LOCALLAMA_DEBUG."""
    if os.environ.get("LOCALLAMA_DEBUG"):
        sys.stderr.write(text.decode("utf-8", errors="replace"))


mtmd.mtmd_log_set(_mtmd_log, ctypes.c_void_p(0))
mtmd.mtmd_helper_log_set(_mtmd_log, ctypes.c_void_p(0))

_CACHE_IMAGES = 16  # encoded images kept per model (a few MB each for real projectors)
_CHUNK_IMAGE = 1  # MTMD_INPUT_CHUNK_TYPE_IMAGE


class VisionContext:
    """A projector loaded for one llama.cpp model; thread-safe (one lock around mtmd).

    ``path``: the projector GGUF.  Raises BadModelFile when mtmd cannot load it (not a
    projector, or one whose embedding size differs from the model's n_embd)."""

    def __init__(self, model: Any, path: str | Path, threads: int = 1) -> None:
        assert mtmd.mtmd_default_marker().decode() == MARKER
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = max(1, threads)
        params.print_timings = False
        params.warmup = False
        self.ctx = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
        if not self.ctx:
            raise BadModelFile(f"llama.cpp could not load the vision projector {Path(path).name} "
                               "(not a projector, or not one for this model)")
        if not mtmd.mtmd_support_vision(self.ctx):
            self.close()
            raise BadModelFile(f"the projector {Path(path).name} has no vision encoder")
        self.n_embd = llama_cpp.llama_model_n_embd(model)
        self.mrope = bool(mtmd.mtmd_decode_use_mrope(self.ctx))
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[str, tuple[np.ndarray, bool]] = \
            collections.OrderedDict()

    # -- tokenizing and encoding ----------------------------------------------------

    def tokenize(self, text: str, images: list[bytes], add_bos: bool = True
                 ) -> tuple[list[int], list[tuple[int, int, str]]]:
        """``text`` with one MARKER per image of ``images`` (in order) -> the prompt's ids
        with each image's positions holding its placeholder, and the image spans as
        (start, n_tokens, sha256).  Every image is encoded here and its embeddings
        cached.  InvalidRequest for an image mtmd cannot decode, or a marker count that
        differs from the number of images; NotSupported for a projector whose
        positions are not one per embedding (M-RoPE, Qwen2-VL's)."""
        if text.count(MARKER) != len(images):
            raise InvalidRequest(f"the prompt has {text.count(MARKER)} image places for "
                                 f"{len(images)} images (the template dropped some)")
        if self.mrope:
            raise NotSupported("this model's projector places images with M-RoPE "
                               "positions, which are not supported yet")
        with self._lock:
            bitmaps = []
            try:
                for i, data in enumerate(images):
                    bitmaps.append(self._bitmap(data, i))
                return self._tokenize(text, bitmaps, add_bos)
            finally:
                for bitmap in bitmaps:
                    mtmd.mtmd_bitmap_free(bitmap)

    def _bitmap(self, data: bytes, index: int) -> Any:
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.ctx, buf, len(data), False)
        if not bitmap:
            raise InvalidRequest(f"image {index + 1} could not be read as an image "
                                 "(PNG, JPEG, GIF, BMP ... are)", "images")
        if mtmd.mtmd_bitmap_is_audio(bitmap):
            mtmd.mtmd_bitmap_free(bitmap)
            raise InvalidRequest(f"image {index + 1} is audio, not an image", "images")
        mtmd.mtmd_bitmap_set_id(bitmap, digest_of(data).encode())
        return bitmap

    def _tokenize(self, text: str, bitmaps: list[Any], add_bos: bool
                  ) -> tuple[list[int], list[tuple[int, int, str]]]:
        data = text.encode("utf-8")
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            inp = mtmd.mtmd_input_text()
            inp.text, inp.text_len = data, len(data)
            inp.add_special, inp.parse_special = add_bos, True
            array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            code = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
            if code != 0:
                raise InvalidRequest(f"the images could not be prepared for the model "
                                     f"(mtmd_tokenize returned {code})", "images")
            tokens: list[int] = []
            spans: list[tuple[int, int, str]] = []
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) != _CHUNK_IMAGE:
                    n = ctypes.c_size_t()
                    ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    tokens.extend(ids[k] for k in range(n.value))
                    continue
                n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                if mtmd.mtmd_input_chunk_get_n_pos(chunk) != n_tokens:
                    raise NotSupported("this projector places an image on fewer positions "
                                       "than it has embeddings, which is not supported yet")
                digest = mtmd.mtmd_input_chunk_get_id(chunk).decode()
                self._encode(chunk, digest, n_tokens)
                spans.append((len(tokens), n_tokens, digest))
                tokens.extend([placeholder(digest)] * n_tokens)
            return tokens, spans
        finally:
            mtmd.mtmd_input_chunks_free(chunks)

    def _encode(self, chunk: Any, digest: str, n_tokens: int) -> None:
        """Encode an image chunk into the cache (caller holds the lock)."""
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return
        code = mtmd.mtmd_encode_chunk(self.ctx, chunk)
        if code != 0:
            raise LocallamaError(f"the projector could not encode the image (code {code})")
        out = mtmd.mtmd_get_output_embd(self.ctx)
        embd = np.ctypeslib.as_array(out, shape=(n_tokens * self.n_embd,)).copy()
        non_causal = bool(mtmd.mtmd_decode_use_non_causal(self.ctx, chunk))
        self._cache[digest] = (embd.reshape(n_tokens, self.n_embd), non_causal)
        while len(self._cache) > _CACHE_IMAGES:
            self._cache.popitem(last=False)

    def embeddings(self, span: ImageSpan) -> tuple[np.ndarray, bool]:
        """The image's embeddings (n_tokens x n_embd float32) and whether it is decoded
        with non-causal attention; encoded again from ``span.data`` when the cache has
        let it go."""
        with self._lock:
            found = self._cache.get(span.digest)
        if found is None:
            self.tokenize(MARKER, [span.data], add_bos=False)
            with self._lock:
                found = self._cache.get(span.digest)
        if found is None or found[0].shape[0] != span.n_tokens:
            raise InvalidRequest("the image spans do not match this model's projector")
        return found

    def close(self) -> None:
        if self.ctx:
            mtmd.mtmd_free(self.ctx)
            self.ctx = None


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
    import time

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
    import time

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
