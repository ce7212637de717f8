"""The rerank routes' wire shapes (``POST /v1/rerank``, ``POST /api/rerank``): pure
translations, shared by the server and the client.

The shape is the one llama-server, Jina and Cohere share
(https://github.com/ggml-org/llama.cpp/tree/master/tools/server, "POST /reranking";
https://docs.cohere.com/reference/rerank): a body ``{model, query, documents, top_n?,
return_documents?}`` where a document is a string or (Cohere) ``{"text": ...}``, and an
answer ``{model, object: "list", results: [{index, relevance_score, document?:
{text}}], usage: {prompt_tokens, total_tokens}}`` with the results best first.
``return_documents`` defaults to false (llama-server's and Cohere v2's default).
``options`` and ``keep_alive`` are locallama's (Ollama's meaning).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt

from locallama.api.common import UnicodeBody
from locallama.runtime.types import KeepAlive, Reranking, RerankResult

JSON = dict[str, Any]


class TextDocument(BaseModel):
    """Cohere's document object: its text (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore")
    text: str


class RerankBody(UnicodeBody):
    """``POST /v1/rerank`` and ``/api/rerank``; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    query: str
    documents: list[str | TextDocument]
    top_n: StrictInt | None = None
    return_documents: bool = False
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None

    def texts(self) -> list[str]:
        """The documents' texts, in order."""
        return [d if isinstance(d, str) else d.text for d in self.documents]


def rerank_body(model: str, query: str, documents: list[str], top_n: int | None = None,
                options: dict[str, Any] | None = None, keep_alive: KeepAlive = None) -> JSON:
    """The body the client sends for ``Runtime.rerank``, unset fields left out."""
    body: JSON = {"model": model, "query": query, "documents": documents}
    for key, value in (("top_n", top_n), ("options", options), ("keep_alive", keep_alive)):
        if value is not None:
            body[key] = value
    return body


def rerank_json(model: str, result: Reranking, return_documents: bool = False) -> JSON:
    """The answer for a Reranking; ``document: {text}`` on each result when asked."""
    results = []
    for r in result.results:
        item: JSON = {"index": r.index, "relevance_score": r.relevance_score}
        if return_documents:
            item["document"] = {"text": r.document}
        results.append(item)
    return {"model": model, "object": "list", "results": results,
            "usage": {"prompt_tokens": result.total_tokens,
                      "total_tokens": result.total_tokens}}


def reranking_of(data: JSON, documents: list[str]) -> Reranking:
    """The inverse of ``rerank_json``; each result's text is taken from ``documents``
    (the request's) by its index."""
    results = [RerankResult(int(r["index"]), float(r["relevance_score"]),
                            documents[int(r["index"])]) for r in data.get("results", [])]
    usage = data.get("usage") or {}
    return Reranking(results, int(usage.get("total_tokens", 0)))
