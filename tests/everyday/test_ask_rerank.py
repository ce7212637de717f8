"""``ask --docs`` with a reranker (``LOCALLAMA_RERANK_MODEL``): more candidates are
retrieved, the reranker's order decides which passages the model is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from askdocs import BIRDS, CATS, DOGS
from docshelpers import WordsRuntime
from locallama.everyday.ask import RERANK_POOL, ask_documents
from locallama.runtime.types import Reranking, RerankResult
from locallama.settings import Settings


class RerankingRuntime(WordsRuntime):
    """WordsRuntime plus a reranker that scores each document by ``preference``."""

    def __init__(self, preference: list[str]) -> None:
        super().__init__(answer="Birds fly [sub/birds.txt#1].")
        self.preference = preference  # the first word found in a document ranks it
        self.rerank_calls: list[tuple[str, str, list[str], int | None]] = []

    def rerank(self, model: str, query: str, documents: list[str], top_n: int | None = None,
               options: dict[str, Any] | None = None, keep_alive: Any = None) -> Reranking:
        self.rerank_calls.append((model, query, list(documents), top_n))
        scores = [next((10.0 - i for i, word in enumerate(self.preference) if word in d), 0.0)
                  for d in documents]
        ranked = sorted(range(len(documents)), key=lambda i: -scores[i])[:top_n]
        return Reranking([RerankResult(i, scores[i], documents[i]) for i in ranked], 1)


def settings_for(tmp_path: Path, **env: str) -> Settings:
    home = tmp_path / "home"
    return Settings.from_env({"LOCALLAMA_HOME": str(home), **env})


def test_the_setting_is_read_from_the_environment(tmp_path):
    assert settings_for(tmp_path).rerank_model == ""
    assert settings_for(tmp_path, LOCALLAMA_RERANK_MODEL=" bge ").rerank_model == "bge"


def test_without_a_reranker_the_closest_passage_is_kept(tmp_path, docs):
    rt = RerankingRuntime(["Birds"])
    result = ask_documents(rt, settings_for(tmp_path), docs, "Where do cats sleep?",
                           model="chat", embed="words", k=1)
    assert [h.source for h in result.sources] == ["cats.md"]
    assert rt.rerank_calls == []


def test_the_reranker_reorders_the_candidates_and_keeps_its_best(tmp_path, docs):
    rt = RerankingRuntime(["Birds", "Dogs"])
    settings = settings_for(tmp_path, LOCALLAMA_RERANK_MODEL="judge")
    result = ask_documents(rt, settings, docs, "Where do cats sleep?", model="chat",
                           embed="words", k=2)
    # 2 * RERANK_POOL candidates asked for: all three passages reach the reranker,
    # which prefers birds, then dogs: the passage closest by embedding drops out
    [(model, query, candidates, top_n)] = rt.rerank_calls
    assert (model, query, top_n) == ("judge", "Where do cats sleep?", 2)
    assert sorted(candidates) == sorted([CATS, DOGS, BIRDS]) and RERANK_POOL * 2 >= 3
    assert [h.source for h in result.sources] == ["sub/birds.txt", "dogs.md"]
    assert [h.score for h in result.sources] == [10.0, 9.0]  # the reranker's scores
    prompt = rt.requests[0].messages[-1].content
    assert BIRDS in prompt and DOGS in prompt and CATS not in prompt


def test_an_explicit_empty_reranker_turns_the_setting_off(tmp_path, docs):
    rt = RerankingRuntime(["Birds"])
    settings = settings_for(tmp_path, LOCALLAMA_RERANK_MODEL="judge")
    result = ask_documents(rt, settings, docs, "Where do cats sleep?", model="chat",
                           embed="words", k=1, rerank="")
    assert [h.source for h in result.sources] == ["cats.md"] and rt.rerank_calls == []
