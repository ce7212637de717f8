"""One llama.cpp model: weights, vocabulary and the token <-> text conversions.

The weights are memory-mapped and shared by every sequence; the context that
holds the KV cache belongs to the scheduler (engine/scheduler.py), which is the
one place that evaluates tokens.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
import time
from pathlib import Path

import llama_cpp
import numpy as np

from locallama.engine.fim import FimTokens
from locallama.engine.job import Piece  # noqa: F401  (re-exported)
from locallama.engine.params import ContextParams
from locallama.errors import BadModelFile, InvalidRequest, not_unicode
from locallama.gguf_info import GGUFInfo
from locallama.kvcache import check_kv_cache
from locallama.kvcache import kv_cache_type as kv_cache_type_of
from locallama.runtime.types import TokenLogprob

_DEBUG = bool(os.environ.get("LOCALLAMA_DEBUG"))


@llama_cpp.llama_log_callback
def _llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's own log goes to stderr only with LOCALLAMA_DEBUG set: a user sees
    our one-line messages, not the engine's chatter."""
    if _DEBUG:
        sys.stderr.write(text.decode("utf-8", errors="replace"))


llama_cpp.llama_log_set(_llama_log, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()


class LoadedModel:
    """Weights and vocabulary; thread-safe for tokenizing while the scheduler decodes."""

    def __init__(self, path: Path, info: GGUFInfo, params: ContextParams) -> None:
        self.path = path
        self.info = info
        self.params = params
        started = time.perf_counter_ns()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = params.num_gpu
        model_params.use_mmap = params.use_mmap
        # Repacked weight layouts (LOCALLAMA_REPACK, off by default): their
        # matrix-matrix kernel rounds differently from the matrix-vector one, so a
        # sequence's logits would depend on how many others share its batch.
        # bench/determinism.py prices it.
        model_params.use_extra_bufts = params.repack
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not self.model:
            raise BadModelFile(f"llama.cpp could not load {path.name}")
        self.load_duration = time.perf_counter_ns() - started
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_swa = llama_cpp.llama_model_n_swa(self.model)
        self.scheduler = None  # set by the loader: engine.scheduler.Scheduler
        self.vision = None  # engine.vision.VisionContext when a projector is loaded with it
        if params.projector:
            from locallama.engine.vision_context import VisionContext

            try:
                self.vision = VisionContext(self.model, params.projector, params.threads)
            except BaseException:
                self.close()
                raise

    def new_context(self, n_ctx: int, n_seq: int, n_batch: int, threads: int,
                    flash_attention: bool = False, kv_cache_type: str = "f16"):
        """A llama.cpp context with one KV stream of ``n_ctx / n_seq`` cells per sequence.

        Separate streams (not one unified cache) keep each sequence's attention
        independent of the others in the batch, so batching does not change what a
        seeded request returns.  ``kv_cache_type`` (f16, q8_0, q4_0) is the element
        type of both keys and values; InvalidRequest where llama.cpp cannot build it
        (kvcache.check_kv_cache), BadModelFile where llama.cpp still refuses.
        """
        kind = kv_cache_type_of(kv_cache_type)
        check_kv_cache(self.info, kind, flash_attention)
        params = llama_cpp.llama_context_default_params()
        params.type_k = params.type_v = kind.ggml_type
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False
        params.flash_attn_type = 1 if flash_attention else 0  # enabled / disabled
        params.swa_full = True  # a reused prefix needs its sliding-window cells too
        ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not ctx:
            cache = f" with a {kind.name} KV cache" if kind.quantized else ""
            raise BadModelFile(
                f"llama.cpp could not create a context{cache} for {self.path.name}")
        return ctx

    # -- tokens -----------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids of ``text``; InvalidRequest for text that is not valid Unicode."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON carries one, UTF-8 cannot
            raise InvalidRequest(f"the text is not valid Unicode: {not_unicode(text)}") from None
        if add_bos and llama_cpp.llama_vocab_get_add_bos(self.vocab):
            bos = self.piece(llama_cpp.llama_vocab_bos(self.vocab), special=True)
            # A template that already wrote the BOS text must not get a second one.
            add_bos = not (special and bos and data.startswith(bos))
        size = len(data) + 2
        while True:
            tokens = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), tokens, size,
                                         add_bos, special)
            if n >= 0:
                return list(tokens[:n])
            size = -n

    def tokenize_images(self, text: str, images: list[bytes], add_bos: bool = True
                        ) -> tuple[list[int], list[tuple[int, int, str]]]:
        """A prompt with images: see ``engine/vision_context.VisionContext.tokenize``;
        InvalidRequest when the model was loaded without a projector."""
        if self.vision is None:
            raise InvalidRequest(f"model {self.path.name} was loaded without a vision projector")
        if add_bos and llama_cpp.llama_vocab_get_add_bos(self.vocab):
            add_bos = not (self.bos_text and text.startswith(self.bos_text))  # written
        return self.vision.tokenize(text, images, add_bos)

    def piece(self, token: int, special: bool = False) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, special)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -n, 0, special)
        return buffer.raw[:n]

    def detokenize(self, tokens: list[int]) -> str:
        """Text of a token sequence as llama.cpp spells it (special tokens left out)."""
        return self.detokenize_bytes(tokens).decode("utf-8", errors="replace")

    def detokenize_bytes(self, tokens: list[int]) -> bytes:
        self.check_tokens(tokens)
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        size = max(64, 8 * len(tokens))
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(self.vocab, array, len(tokens), buffer, size,
                                           True, False)
            if n >= 0:
                return buffer.raw[:n]
            size = -n

    def pieces(self, tokens: list[int]) -> list[bytes]:
        """Each token's bytes, special tokens spelled out (``<s>``): llama-server's
        ``with_pieces``.  InvalidRequest for an id outside the vocabulary."""
        self.check_tokens(tokens)
        return [self.piece(t, special=True) for t in tokens]

    def check_tokens(self, tokens: list[int]) -> None:
        """Token ids come from strangers too; llama.cpp aborts on one out of range."""
        bad = next((t for t in tokens if not 0 <= t < self.n_vocab), None)
        if bad is not None:
            raise InvalidRequest(
                f"token id {bad} is outside the vocabulary (0 to {self.n_vocab - 1})")

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    @property
    def bos_text(self) -> str:
        bos = llama_cpp.llama_vocab_bos(self.vocab)
        return self.token_text(bos) if bos >= 0 else ""

    @property
    def eos_text(self) -> str:
        eos = llama_cpp.llama_vocab_eos(self.vocab)
        return self.token_text(eos) if eos >= 0 else ""

    @functools.cached_property
    def bos_id(self) -> int | None:
        """The BOS id when the vocabulary adds one to a prompt, else None."""
        bos = llama_cpp.llama_vocab_bos(self.vocab)
        return bos if bos >= 0 and llama_cpp.llama_vocab_get_add_bos(self.vocab) else None

    @functools.cached_property
    def fim(self) -> FimTokens:
        """The fill-in-the-middle tokens llama.cpp found (metadata keys or token text)."""
        v = self.vocab
        return FimTokens.from_ids(
            llama_cpp.llama_vocab_fim_pre(v), llama_cpp.llama_vocab_fim_suf(v),
            llama_cpp.llama_vocab_fim_mid(v), llama_cpp.llama_vocab_fim_pad(v),
            llama_cpp.llama_vocab_fim_rep(v), llama_cpp.llama_vocab_fim_sep(v))

    def spelling(self, tokens: list[int]) -> list[bytes]:
        """Each token's share of the prompt's text: joined, they spell it exactly.

        Special tokens (BOS) spell nothing, and the space a SentencePiece
        tokenizer puts before the first word (it tokenizes "a" as "▁a") is
        dropped, as decoding it in Hugging Face's tokenizers does.
        """
        pieces = [self.piece(t) for t in tokens]
        if self._adds_space_prefix:
            for i, piece in enumerate(pieces):
                if piece:
                    pieces[i] = piece[1:] if piece.startswith(b" ") else piece
                    break
        return pieces

    @functools.cached_property
    def _adds_space_prefix(self) -> bool:
        first = self.tokenize("a", add_bos=False, special=False)
        return bool(first) and self.piece(first[0]).startswith(b" ")

    # -- logits -----------------------------------------------------------------

    def logprob(self, ctx, index: int, token: int, top: int) -> TokenLogprob:
        """The log-probability of ``token`` in output row ``index`` of ``ctx``'s logits."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index),
                                       shape=(self.n_vocab,))
        peak = float(logits.max())
        log_norm = peak + math.log(float(np.exp(logits - peak).sum()))
        alternatives = []
        if top > 0:
            best = np.argpartition(-logits, min(top, self.n_vocab - 1))[:top]
            best = best[np.argsort(-logits[best])]
            alternatives = [self._record(int(t), float(logits[t]) - log_norm) for t in best]
        return TokenLogprob(self.token_text(token), float(logits[token]) - log_norm,
                            list(self.piece(token, special=True)), alternatives)

    def _record(self, token: int, logprob: float) -> TokenLogprob:
        return TokenLogprob(self.token_text(token), logprob, list(self.piece(token, True)))

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
            self.scheduler = None
        if getattr(self, "vision", None) is not None:
            self.vision.close()
            self.vision = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None
