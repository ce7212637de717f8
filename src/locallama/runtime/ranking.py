"""Reranking for LocalRuntime: checks, the reranker's scores, the order and the cut."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from locallama.errors import InvalidRequest
from locallama.options import Options
from locallama.runtime.types import Reranking, RerankResult

if TYPE_CHECKING:
    from locallama.engine.loader import ModelLoader
    from locallama.store import ModelRecord


def check_request(query: str, documents: list[str], top_n: int | None) -> None:
    """InvalidRequest (with the field to blame) for a rerank no model could answer."""
    if not isinstance(query, str):
        raise InvalidRequest("query must be a string", "query")
    if not documents:
        raise InvalidRequest("documents must list at least one document", "documents")
    for i, document in enumerate(documents):
        if not isinstance(document, str):
            raise InvalidRequest("each document must be a string", f"documents[{i}]")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int)
                              or top_n < 1):
        raise InvalidRequest(f"top_n must be a positive integer, not {top_n!r}", "top_n")


def ordered(query_scores: list[float], documents: list[str],
            top_n: int | None) -> list[RerankResult]:
    """The documents by score, best first (ties keep the request's order), cut to
    ``top_n`` (None: all)."""
    results = [RerankResult(i, score, documents[i]) for i, score in enumerate(query_scores)]
    results.sort(key=lambda r: -r.relevance_score)  # stable: ties stay in order
    return results if top_n is None else results[:top_n]


def rerank(loader: ModelLoader, record: ModelRecord, opts: Options, keep_alive: float | None,
           query: str, documents: list[str], top_n: int | None) -> Reranking:
    """``documents`` reranked against ``query`` by the reranker ``record``, loaded in
    embedding mode (its runner).  InvalidRequest (400) naming the model when it has no
    rank pooling, before anything loads; the request's own faults as check_request."""
    check_request(query, documents, top_n)
    info = loader.info(record.model_path)
    if not info.is_reranker:
        raise InvalidRequest(
            f"{record.name.display} is not a reranker: reranking needs a model with rank "
            f"pooling ({info.architecture}.pooling_type 4, e.g. bge-reranker)", "model")
    started = time.perf_counter_ns()
    use = loader.use(record.model_path, opts, embedding=True, name=record.name.display,
                     digest=record.digest, keep_alive=keep_alive)
    loaded: Any
    with use as (loaded, load_ns):
        scores, tokens = loaded.rerank(query, documents)
    return Reranking(ordered(scores, documents, top_n), tokens,
                     time.perf_counter_ns() - started, load_ns)
