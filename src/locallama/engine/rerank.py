"""Reranking with llama.cpp's rank pooling: one relevance score per (query, document).

A reranker (a cross-encoder such as bge-reranker) is a GGUF whose
``{arch}.pooling_type`` is 4 (``LLAMA_POOLING_TYPE_RANK``): its classifier head turns
each sequence into ``n_cls_out`` floats, and the first is the score.  The input is
built as llama-server's ``format_prompt_rerank`` builds it
(https://github.com/ggml-org/llama.cpp/tree/master/tools/server): the model's
``tokenizer.chat_template.rerank`` with ``{query}`` and ``{document}`` filled in
(special tokens parsed), else ``[BOS] query [EOS] [SEP] document [EOS]``, each
marker present only where the vocabulary asks for it (add_bos, add_eos, add_sep).
"""

from __future__ import annotations

from typing import Any

import llama_cpp

from locallama.errors import InvalidRequest, not_unicode
from locallama.gguf_info import GGUFInfo

TEMPLATE_KEY = "tokenizer.chat_template.rerank"


def pair_tokens(llm: llama_cpp.Llama, info: GGUFInfo, query: str, document: str) -> list[int]:
    """The tokens llama-server feeds a reranker for (query, document)."""
    template = info.metadata.get(TEMPLATE_KEY)
    if isinstance(template, str) and template:
        text = template.replace("{query}", query).replace("{document}", document)
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    vocab = llm._model.vocab
    eos = llama_cpp.llama_vocab_eos(vocab)
    if eos < 0:
        eos = llama_cpp.llama_vocab_sep(vocab)
    tokens: list[int] = []
    if llama_cpp.llama_vocab_get_add_bos(vocab):
        tokens.append(llama_cpp.llama_vocab_bos(vocab))
    tokens += llm.tokenize(query.encode("utf-8"), add_bos=False, special=False)
    if llama_cpp.llama_vocab_get_add_eos(vocab):
        tokens.append(eos)
    if llama_cpp.llama_vocab_get_add_sep(vocab):
        tokens.append(llama_cpp.llama_vocab_sep(vocab))
    tokens += llm.tokenize(document.encode("utf-8"), add_bos=False, special=False)
    if llama_cpp.llama_vocab_get_add_eos(vocab):
        tokens.append(eos)
    return tokens


def rank(llm: llama_cpp.Llama, info: GGUFInfo, query: str, documents: list[str],
         n_ctx: int) -> tuple[list[float], int]:
    """Each document's score against ``query``, in order, and the tokens evaluated.

    ``llm`` is a rank-pooling embedding context (the caller holds its lock).  Each pair
    is evaluated alone, so a score never depends on the other documents; a pair longer
    than ``n_ctx`` is cut there.  InvalidRequest for text that is not valid Unicode."""
    for field, text in [("query", query)] + [(f"documents[{i}]", d)
                                             for i, d in enumerate(documents)]:
        if why := not_unicode(text):
            raise InvalidRequest(f"{field} is not valid Unicode: {why}", field)
    scores: list[float] = []
    total = 0
    for document in documents:
        tokens = pair_tokens(llm, info, query, document)[:n_ctx]
        total += len(tokens)
        scores.append(_score(llm, tokens))
    return scores, total


def _score(llm: Any, tokens: list[int]) -> float:
    """The first classifier output for one sequence (sequence 0 of a fresh batch)."""
    llm._batch.reset()
    llm._ctx.kv_cache_clear()
    llm._batch.add_sequence(tokens, 0, True)
    llm._ctx.decode(llm._batch)
    pointer = llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, 0)
    if not pointer:
        raise RuntimeError("llama.cpp gave no rank output for the sequence")
    score = float(pointer[0])
    llm._batch.reset()
    llm._ctx.kv_cache_clear()
    return score
