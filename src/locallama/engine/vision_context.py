"""A vision projector loaded beside a llama.cpp model: llama.cpp's mtmd context.

The projector (an "mmproj" GGUF, ``general.architecture`` "clip") is loaded once per
model in its runner (``VisionContext``).  ``tokenize`` runs mtmd's tokenizer over a
prompt whose images are marked by ``vision_types.MARKER`` (mtmd adds what the model
puts around an image, Gemma 3's ``<start_of_image>`` ...), encodes each image with the
projector and keeps its embeddings in a small cache keyed by the image's sha256, so
the job that follows finds them ready; the scheduler's side is ``engine/vision.py``.
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
