"""``ask --docs``: a question answered from a folder's documents, citing its passages.

The steps, each its own piece: bring the folder's index up to date (everyday/index),
retrieve the passages closest to the question (with a reranker configured,
``LOCALLAMA_RERANK_MODEL``, three times as many, reordered by the reranker and cut
back to ``k``), keep as many of them as the
model's context holds after the prompt and the answer (everyday/budget), and run the
``ask`` recipe over them (everyday/run).  The passages given to the model are the
sources reported, so every ``source#index`` a user sees exists in the index.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locallama.errors import InvalidRequest, LocallamaError
from locallama.everyday.budget import Budget, context_size
from locallama.everyday.docs import find_documents
from locallama.everyday.index import (
    DocIndex,
    Hit,
    Progress,
    UpdateReport,
    Warn,
    embed_model,
    index_path,
)
from locallama.everyday.recipes import load_recipe
from locallama.everyday.run import answer
from locallama.runtime.base import Runtime
from locallama.settings import Settings

DEFAULT_K = 4
RERANK_POOL = 3  # candidates retrieved per passage kept, when a reranker reorders them
_CITATION = re.compile(r"\[([^\[\]#\n]+)#(\d+)\]")


@dataclass
class AskResult:
    """The answer, the passages it was given (best first) and what the index update did."""

    answer: str
    sources: list[Hit]
    report: UpdateReport


def index_home(settings: Settings) -> Path:
    """LOCALLAMA_HOME, where indexes live (Settings keeps it as the parent of its files;
    not the models folder's parent, which may be an Ollama store's)."""
    return settings.recipes_dir.parent


def check_folder(folder: Path) -> list[Path]:
    """The documents in ``folder``, or a one-line error for a missing path, a file, or a
    folder with none (checked before any model loads: a typo should fail at once)."""
    if not folder.exists():
        raise InvalidRequest(f"no such folder: {folder}")
    if not folder.is_dir():
        raise InvalidRequest(f"not a folder: {folder} (--docs takes a folder of documents)")
    documents = find_documents(folder)
    if not documents:
        raise InvalidRequest(f"no documents in {folder} (Markdown, text, PDF or HTML files)")
    return documents


def ask_documents(runtime: Runtime, settings: Settings, folder: Path, question: str, *,
                  model: str, embed: str, k: int = DEFAULT_K, reindex: bool = False,
                  num_ctx: int | None = None, max_tokens: int | None = None,
                  on_text: Callable[[str], None] | None = None,
                  progress: Progress | None = None, warn: Warn | None = None,
                  on_indexed: Callable[[UpdateReport], None] | None = None,
                  options: dict[str, Any] | None = None,
                  rerank: str | None = None) -> AskResult:
    """Update the index, retrieve ``k`` passages, answer from those that fit the context.

    ``rerank`` names a reranker (None: ``settings.rerank_model``; "": none): then
    ``k * RERANK_POOL`` passages are retrieved and the reranker's best ``k`` kept
    (``rerank_hits``).
    ``num_ctx`` defaults to the context the model will get; ``max_tokens`` (the
    answer's cap) to the recipe's answer_tokens.  ``progress`` and ``warn`` follow
    the index update; ``on_indexed`` gets its report before the answer starts."""
    if not question.strip():
        raise InvalidRequest("no question: ask --docs DIR \"your question\"")
    if k < 1:
        raise InvalidRequest("--k must be at least 1")
    check_folder(folder)
    reranker = settings.rerank_model if rerank is None else rerank
    identity = embed_model(runtime, embed)
    path = index_path(index_home(settings), folder)
    with DocIndex(path, folder) as index:
        try:
            report = index.update(runtime, identity, reindex=reindex, progress=progress,
                                  warn=warn)
            if index.passage_count() == 0:
                raise InvalidRequest(f"no text found in the documents in {folder}")
            hits = index.search(runtime, identity, question,
                                k * RERANK_POOL if reranker else k)
        except sqlite3.Error as exc:  # a full disk, a lock held too long
            raise LocallamaError(f"the index {path} could not be updated: {exc}") from None
    if reranker:
        hits = rerank_hits(runtime, reranker, question, hits, k)
    if on_indexed:
        on_indexed(report)
    recipe = load_recipe("ask", settings)
    tokens = max_tokens or recipe.answer_tokens
    budget = Budget(runtime, model, num_ctx or context_size(runtime, model, options), tokens)
    room = budget.require(recipe.render_system(question=question, passages=[]),
                          recipe.render(question=question, passages=[]))
    used, passages = fit_passages(budget, hits, room)
    text = answer(runtime, model, recipe, {"question": question, "passages": passages},
                  on_text=on_text, options={**(options or {}), "num_predict": tokens})
    return AskResult(text, used, report)


def rerank_hits(runtime: Runtime, reranker: str, question: str, hits: list[Hit],
                k: int) -> list[Hit]:
    """The ``k`` hits ``reranker`` finds most relevant to ``question``, best first; each
    hit's ``score`` becomes the reranker's relevance score (the order's key)."""
    if not hits:
        return hits
    ranked = runtime.rerank(reranker, question, [h.text for h in hits], k)
    return [dataclasses.replace(hits[r.index], score=r.relevance_score)
            for r in ranked.results]


def fit_passages(budget: Budget, hits: list[Hit], room: int
                 ) -> tuple[list[Hit], list[dict[str, Any]]]:
    """The best hits whose blocks fit in ``room`` tokens, and the recipe's passage dicts.

    When not even the best passage fits whole, its beginning is given (cut by the
    budget), so a small context still gets an answer with a real citation."""
    blocks = [f"[{h.source}#{h.index}]\n{h.text}\n\n" for h in hits]
    taken = len(budget.fit(blocks, room))
    used = hits[:taken]
    passages = [{"source": h.source, "index": h.index, "text": h.text} for h in used]
    if not used and hits:
        header = budget.count(f"[{hits[0].source}#{hits[0].index}]\n\n\n")
        if room - header >= 8:
            first = budget.split(hits[0].text, room - header)[0]
            used = hits[:1]
            passages = [{"source": hits[0].source, "index": hits[0].index, "text": first}]
    return used, passages


def citations(text: str) -> list[tuple[str, int]]:
    """The ``[source#index]`` citations in an answer, in order, each once."""
    found: list[tuple[str, int]] = []
    for match in _CITATION.finditer(text):
        cite = (match.group(1).strip(), int(match.group(2)))
        if cite not in found:
            found.append(cite)
    return found


def unknown_citations(text: str, sources: list[Hit]) -> list[str]:
    """Citations that name no passage the model was given (a small model invents some)."""
    given = {(h.source, h.index) for h in sources}
    return [f"{s}#{i}" for s, i in citations(text) if (s, i) not in given]
