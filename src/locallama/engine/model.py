"""One llama.cpp model and context: load, tokenize, and generate a token stream.

Weights are memory-mapped; the context keeps the KV cache of the last sequence,
so a prompt that starts with what was evaluated before only evaluates the rest
(the second turn of a chat costs only the new message).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from locallama.engine.params import ContextParams, GenerationStats, TokenLogprob
from locallama.engine.sampling import Sampler
from locallama.engine.stops import StopMatcher, Utf8Stream
from locallama.errors import BadModelFile, InvalidRequest
from locallama.gguf_info import GGUFInfo
from locallama.options import Options

_DEBUG = bool(os.environ.get("LOCALLAMA_DEBUG"))


@llama_cpp.llama_log_callback
def _llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's own log goes to stderr only with LOCALLAMA_DEBUG set: a user sees
    our one-line messages, not the engine's chatter."""
    if _DEBUG:
        sys.stderr.write(text.decode("utf-8", errors="replace"))


llama_cpp.llama_log_set(_llama_log, ctypes.c_void_p(0))


@dataclass
class Piece:
    """Text released by the generation loop, with the logprobs of the tokens behind it."""

    text: str
    logprobs: list[TokenLogprob] | None = None


class LoadedModel:
    def __init__(self, path: Path, info: GGUFInfo, params: ContextParams, threads: int) -> None:
        self.path = path
        self.info = info
        self.params = params
        self.lock = threading.Lock()
        started = time.perf_counter_ns()
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=params.num_ctx,
                n_batch=params.num_batch,
                n_ubatch=params.num_batch,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=params.num_gpu,
                use_mmap=params.use_mmap,
                embedding=params.embedding,
                pooling_type=_pooling(info) if params.embedding else -1,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise BadModelFile(f"llama.cpp could not load {path.name}: {exc}") from None
        self.load_duration = time.perf_counter_ns() - started
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = self.llm.n_vocab()
        self._buffer = ctypes.create_string_buffer(256)

    # -- tokens -----------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        if add_bos and llama_cpp.llama_vocab_get_add_bos(self.vocab):
            bos = self.piece(llama_cpp.llama_vocab_bos(self.vocab), special=True)
            # A template that already wrote the BOS text must not get a second one.
            add_bos = not (special and bos and data.startswith(bos))
        return self.llm.tokenize(data, add_bos=add_bos, special=special)

    def piece(self, token: int, special: bool = False) -> bytes:
        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._buffer, 256, 0, special)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, big, -n, 0, special)
            return big.raw[:n]
        return self._buffer.raw[:n]

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

    # -- generation -------------------------------------------------------------

    def generate(
        self,
        prompt: list[int],
        options: Options,
        stops: tuple[str, ...] = (),
        stats: GenerationStats | None = None,
        grammar: str | None = None,
        top_logprobs: int | None = None,
    ) -> Iterator[Piece]:
        """Yield pieces of text; fill ``stats`` as it goes.  Hold ``lock`` while iterating.

        With ``top_logprobs`` set (0 or more), each piece carries the log-probability
        of the tokens behind it and that many alternatives per token.  Closing the
        iterator stops generation at once.
        """
        stats = stats if stats is not None else GenerationStats()
        llm, n_ctx = self.llm, self.params.num_ctx
        if not prompt:
            raise InvalidRequest("the prompt is empty")
        self.check_tokens(prompt)
        prompt = self._fit(prompt, options, stats)
        stats.prompt_tokens = len(prompt)
        sampler = Sampler(options, self.n_vocab, n_ctx, history=prompt, grammar=grammar,
                          vocab=self.vocab)
        generated: list[int] = []
        started = time.perf_counter_ns()
        try:
            llama_cpp.llama_set_n_threads(llm.ctx, options.threads, options.threads)
            reuse = self._cached_prefix(prompt)
            started = time.perf_counter_ns()
            llm.n_tokens = reuse
            llm.eval(prompt[reuse:])
            stats.prompt_eval_count = len(prompt) - reuse
            stats.prompt_eval_duration = time.perf_counter_ns() - started

            matcher, utf8 = StopMatcher(stops), Utf8Stream()
            limit = options.num_predict
            pending: list[TokenLogprob] = []
            started = time.perf_counter_ns()
            while True:
                if 0 <= limit <= len(generated) or llm.n_tokens >= n_ctx:
                    stats.done_reason = "length"
                    break
                token = sampler.sample(llm.ctx)
                if self.is_end(token):
                    stats.done_reason = "stop"
                    break
                if top_logprobs is not None:
                    pending.append(self._logprob(token, top_logprobs))
                generated.append(token)
                stats.eval_count = len(generated)
                stats.eval_duration = time.perf_counter_ns() - started
                result = matcher.feed(utf8.feed(self.piece(token)))
                if result.text or (pending and result.stopped):
                    yield Piece(result.text, pending or None)
                    pending = []
                if result.stopped:
                    stats.done_reason = "stop"
                    return
                llm.eval([token])
            # Ended without a stop sequence: release what was held back.
            tail = matcher.feed(utf8.flush())
            text = tail.text if tail.stopped else tail.text + matcher.flush()
            if text or pending:
                yield Piece(text, pending or None)
        finally:
            stats.eval_duration = time.perf_counter_ns() - started
            stats.tokens = (*prompt, *generated)
            sampler.close()

    def score(self, tokens: list[int], top_logprobs: int = 0) -> list[TokenLogprob]:
        """Log-probability of each token given those before it (the first gets nan).

        Evaluates the whole sequence with logits at every position, in small
        batches (a row of logits is vocabulary-sized); the KV cache then holds the
        sequence, so a generation that continues it evaluates nothing again.
        """
        llm, ctx = self.llm, self.llm.ctx
        if len(tokens) > self.params.num_ctx:
            raise InvalidRequest(
                f"cannot score {len(tokens)} tokens in a context of {self.params.num_ctx}")
        self.check_tokens(tokens)
        step = max(1, min(64, self.params.num_batch))
        batch = llama_cpp.llama_batch_init(step, 0, 1)
        texts = self._spelling(tokens)
        scores = [TokenLogprob(texts[0].decode("utf-8", "replace"), math.nan, list(texts[0]))]
        try:
            llm.n_tokens = 0
            memory = llama_cpp.llama_get_memory(ctx)
            llama_cpp.llama_memory_seq_rm(memory, -1, 0, -1)
            for start in range(0, len(tokens), step):
                part = tokens[start:start + step]
                batch.n_tokens = len(part)
                for i, token in enumerate(part):
                    batch.token[i] = token
                    batch.pos[i] = start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = True
                if llama_cpp.llama_decode(ctx, batch) != 0:
                    raise InvalidRequest("llama.cpp could not evaluate the prompt")
                llm.input_ids[start:start + len(part)] = part
                llm.n_tokens = start + len(part)
                for i in range(len(part)):
                    k = start + i + 1
                    if k < len(tokens):
                        record = self._logprob(tokens[k], top_logprobs, i)
                        record.token = texts[k].decode("utf-8", "replace")
                        record.bytes = list(texts[k])
                        scores.append(record)
        finally:
            llama_cpp.llama_batch_free(batch)
        return scores

    def _spelling(self, tokens: list[int]) -> list[bytes]:
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
        first = self.llm.tokenize(b"a", add_bos=False, special=False)
        return bool(first) and self.piece(first[0]).startswith(b" ")

    def _logprob(self, token: int, top: int, index: int = -1) -> TokenLogprob:
        """The model's log-probability of ``token`` at output row ``index``."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, index),
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

    def _cached_prefix(self, prompt: list[int]) -> int:
        """How many leading prompt tokens the KV cache already holds (at least one is left)."""
        llm = self.llm
        held = llm.input_ids[: llm.n_tokens]
        n = 0
        for a, b in zip(held, prompt, strict=False):
            if a != b:
                break
            n += 1
        return min(n, len(prompt) - 1)

    def _fit(self, prompt: list[int], options: Options, stats: GenerationStats) -> list[int]:
        """Ollama's truncation: keep the first num_keep tokens and the newest rest."""
        n_ctx = self.params.num_ctx
        reserve = 1 if options.num_predict < 0 else min(options.num_predict, n_ctx // 2)
        room = n_ctx - reserve
        if len(prompt) <= room:
            return prompt
        keep = min(max(options.num_keep, 0), room // 2)
        stats.truncated = True
        return prompt[:keep] + prompt[len(prompt) - (room - keep):]

    # -- embeddings ---------------------------------------------------------------

    def embed(self, texts: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        counts = [len(self.tokenize(t)) for t in texts]
        if not truncate and max(counts, default=0) > self.params.num_ctx:
            raise InvalidRequest(
                f"input of {max(counts)} tokens exceeds the context length "
                f"{self.params.num_ctx} and truncate is false"
            )
        vectors = self.llm.embed(texts, normalize=True, truncate=True)
        return [list(map(float, v)) for v in vectors], sum(min(c, self.params.num_ctx)
                                                             for c in counts)

    def close(self) -> None:
        self.llm.close()


def _pooling(info: GGUFInfo) -> int:
    """The GGUF's pooling type, or mean pooling for models that set none."""
    value = info.metadata.get(f"{info.architecture}.pooling_type")
    if isinstance(value, int) and value > 0:
        return value
    return llama_cpp.LLAMA_POOLING_TYPE_MEAN
