"""A draft model for speculative decoding: a small model with the target's vocabulary,
loaded in the target's runner beside it (``PARAMETER draft_model NAME``).

It has its own context with one sequence per target slot (same ids) of the target's
``num_ctx`` cells; before each draft its sequence is brought in step with the
target's tokens (the common prefix kept, the rest evaluated in ``num_batch`` chunks),
then it proposes tokens greedily, one llama_decode each (no probability cut-off:
llama.cpp's ``--spec-draft-p-min`` default of 0; the scheduler's adaptive draft
length shortens the drafts of a draft model that misses).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import llama_cpp
import numpy as np

from locallama.engine.model import LoadedModel
from locallama.engine.slots import common_prefix
from locallama.errors import InvalidRequest, LocallamaError
from locallama.gguf_info import read_gguf_info


def check_vocab(target: LoadedModel, draft: LoadedModel, name: str = "the draft model") -> None:
    """InvalidRequest unless ``draft`` spells every token as ``target`` does (llama.cpp's
    ``common_speculative_are_compatible``: same vocabulary type, size, BOS/EOS and token
    texts; without that the target would check tokens the draft never meant)."""
    tv, dv = target.vocab, draft.vocab
    problems = []
    if llama_cpp.llama_vocab_type(tv) != llama_cpp.llama_vocab_type(dv):
        problems.append("another tokenizer type")
    elif target.n_vocab != draft.n_vocab:
        problems.append(f"{draft.n_vocab} tokens, not {target.n_vocab}")
    elif (llama_cpp.llama_vocab_bos(tv), llama_cpp.llama_vocab_eos(tv)) != (
            llama_cpp.llama_vocab_bos(dv), llama_cpp.llama_vocab_eos(dv)):
        problems.append("other BOS/EOS tokens")
    else:
        bad = next((t for t in range(target.n_vocab) if llama_cpp.llama_vocab_get_text(tv, t)
                    != llama_cpp.llama_vocab_get_text(dv, t)), None)
        if bad is not None:
            problems.append(f"token {bad} spelled otherwise")
    if problems:
        raise InvalidRequest(f"{name} does not share the model's vocabulary "
                             f"({problems[0]}); a draft model must use the same tokenizer")


class DraftModel:
    """The draft weights and their context; used by the scheduler's loop thread only."""

    def __init__(self, target: LoadedModel, path: Path) -> None:
        params = dataclasses.replace(target.params, draft=None)
        self.model = LoadedModel(path, read_gguf_info(path), params)
        try:
            check_vocab(target, self.model, f"draft model {path.name}")
            self.ctx = self.model.new_context(params.num_ctx * params.num_parallel,
                                              params.num_parallel, params.num_batch,
                                              params.threads)
        except BaseException:
            self.model.close()
            raise
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(params.num_batch, 0, 1)
        self.num_batch = params.num_batch
        self.cached: list[list[int]] = [[] for _ in range(params.num_parallel)]

    def _decode(self, seq: int, tokens: list[int]) -> None:
        batch, cached = self.batch, self.cached[seq]
        for k, token in enumerate(tokens):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, len(cached) + k, 1
            batch.seq_id[k][0], batch.logits[k] = seq, k == len(tokens) - 1
        batch.n_tokens = len(tokens)
        if llama_cpp.llama_decode(self.ctx, batch) != 0:
            raise LocallamaError("llama.cpp could not evaluate the draft model's batch")
        cached.extend(tokens)

    def draft(self, seq: int, history: list[int], n: int) -> list[int]:
        """Up to ``n`` tokens the draft model expects after ``history`` (the target
        sequence's tokens, its newest last), greedily, ending before an end token."""
        cached = self.cached[seq]
        keep = common_prefix(cached, history)
        if keep == len(history):  # nothing new to evaluate: re-evaluate the last token
            keep -= 1
        llama_cpp.llama_memory_seq_rm(self.memory, seq, keep, -1)
        del cached[keep:]
        rest = history[keep:]
        for start in range(0, len(rest), self.num_batch):
            self._decode(seq, rest[start:start + self.num_batch])
        drafted: list[int] = []
        n_vocab = self.model.n_vocab
        while len(drafted) < n:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1),
                                           shape=(n_vocab,))
            best = int(logits.argmax())
            if self.model.is_end(best):
                break
            drafted.append(best)
            if len(drafted) < n:
                self._decode(seq, [best])
        return drafted

    def close(self) -> None:
        if self.ctx is not None:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        self.model.close()


def open_draft(target: LoadedModel) -> DraftModel | None:
    """The draft model ``target.params.draft`` names, loaded beside it, or None."""
    path = getattr(target.params, "draft", None)
    return DraftModel(target, path) if path else None
