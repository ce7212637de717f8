"""``Runtime.rerank`` on a tiny random-weight BERT reranker (llama.cpp's rank pooling),
in its runner process: order, scores, top_n, the input format, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from locallama.errors import InvalidRequest, ModelNotFound
from runtimes import add_model, local_runtime
from tinymodel import write_tiny_gguf, write_tiny_reranker_gguf

QUERY = "what do cats like"
DOCUMENTS = ["the cat sat on the mat", "blue sky", "a dog and a cat play",
             "hello world", "the sun is hot", "quick brown fox"]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("rerank")
    rt = local_runtime(home, ("judge", write_tiny_reranker_gguf(home / "judge.gguf")),
                       ("tiny", write_tiny_gguf(home / "tiny.gguf")))
    yield rt
    rt.close()


def test_results_are_best_first_and_each_score_is_the_documents_own(runtime):
    ranked = runtime.rerank("judge", QUERY, DOCUMENTS)
    scores = [r.relevance_score for r in ranked.results]
    assert sorted(r.index for r in ranked.results) == list(range(len(DOCUMENTS)))
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores)  # the model tells the documents apart
    assert all(r.document == DOCUMENTS[r.index] for r in ranked.results)
    alone_tokens = 0
    for r in ranked.results:  # one document alone scores what it scored among the rest
        [single] = (alone := runtime.rerank("judge", QUERY, [DOCUMENTS[r.index]])).results
        assert single.index == 0
        assert single.relevance_score == pytest.approx(r.relevance_score, abs=1e-5)
        alone_tokens += alone.total_tokens
    assert ranked.total_tokens == alone_tokens > 0


def test_top_n_keeps_the_best(runtime):
    everything = runtime.rerank("judge", QUERY, DOCUMENTS).results
    best_two = runtime.rerank("judge", QUERY, DOCUMENTS, top_n=2).results
    assert [r.index for r in best_two] == [r.index for r in everything[:2]]
    assert len(runtime.rerank("judge", QUERY, DOCUMENTS, top_n=50).results) == len(DOCUMENTS)


def test_the_query_matters(runtime):
    a = runtime.rerank("judge", QUERY, DOCUMENTS[:1]).results[0].relevance_score
    b = runtime.rerank("judge", "hello", DOCUMENTS[:1]).results[0].relevance_score
    assert a != pytest.approx(b, abs=1e-4)


def test_the_model_runs_in_its_runner(runtime):
    runtime.rerank("judge", QUERY, DOCUMENTS[:1])
    [row] = [m for m in runtime.ps() if m.name.startswith("judge")]
    assert row.pid is not None
    assert runtime.show("judge").capabilities == ["rerank"]


@pytest.mark.parametrize("call, error, words", [
    (lambda rt: rt.rerank("judge", QUERY, []), InvalidRequest, "documents"),
    (lambda rt: rt.rerank("judge", QUERY, DOCUMENTS, top_n=0), InvalidRequest, "top_n"),
    (lambda rt: rt.rerank("tiny", QUERY, DOCUMENTS), InvalidRequest,
     "tiny:latest is not a reranker"),
    (lambda rt: rt.rerank("nobody", QUERY, DOCUMENTS), ModelNotFound, "nobody"),
    (lambda rt: rt.embed("judge", ["hello"]), InvalidRequest, "judge:latest is a reranker"),
])
def test_errors_name_what_is_wrong(runtime, call, error, words):
    with pytest.raises(error, match=words):
        call(runtime)


def test_the_default_input_is_llama_servers_and_a_rerank_template_replaces_it(tmp_path: Path):
    """The BERT vocabulary adds BOS ([CLS]), EOS and SEP ([SEP]): llama-server's default
    pair is [CLS] query [SEP] [SEP] document [SEP].  A template spelling out the same
    tokens scores the same; a template that swaps query and document does not."""
    same = "[CLS]{query}[SEP][SEP]{document}[SEP]"
    swapped = "[CLS]{document}[SEP][SEP]{query}[SEP]"
    rt = local_runtime(tmp_path, ("plain", write_tiny_reranker_gguf(tmp_path / "p.gguf")),
                       runner="inprocess")
    try:
        add_model(rt, "same", write_tiny_reranker_gguf(tmp_path / "s.gguf",
                                                       rerank_template=same))
        add_model(rt, "swapped", write_tiny_reranker_gguf(tmp_path / "w.gguf",
                                                          rerank_template=swapped))

        def scores(model: str) -> list[float]:
            results = rt.rerank(model, QUERY, DOCUMENTS).results
            return [r.relevance_score for r in sorted(results, key=lambda r: r.index)]

        plain = scores("plain")
        assert scores("same") == pytest.approx(plain, abs=1e-5)
        assert scores("swapped") != pytest.approx(plain, abs=1e-3)
    finally:
        rt.close()
