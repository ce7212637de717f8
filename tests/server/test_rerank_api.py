"""``POST /v1/rerank`` and ``POST /api/rerank`` on a live server over a tiny reranker:
the llama-server / Jina / Cohere shape, top_n, return_documents, errors in each face's
shape, and RemoteRuntime.rerank through the server."""

from __future__ import annotations

import httpx
import pytest

from liveserver import free_port, serve
from locallama.client import RemoteRuntime
from locallama.errors import InvalidRequest, ModelNotFound
from runtimes import local_runtime
from tinymodel import write_tiny_gguf, write_tiny_reranker_gguf

QUERY = "what do cats like"
DOCUMENTS = ["the cat sat on the mat", "blue sky", "a dog and a cat play", "hello world"]
ROUTES = ["/v1/rerank", "/api/rerank"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("rerankserver")
    runtime = local_runtime(home, ("judge", write_tiny_reranker_gguf(home / "judge.gguf")),
                            ("tiny", write_tiny_gguf(home / "tiny.gguf")),
                            host="127.0.0.1", port=free_port())
    with serve(runtime, runtime.settings) as base:
        yield base, runtime
    runtime.close()


@pytest.fixture(scope="module")
def url(served):
    return served[0]


def post(url: str, route: str, **body) -> httpx.Response:
    return httpx.post(url + route, json={"model": "judge", "query": QUERY, **body},
                      timeout=120)


@pytest.mark.parametrize("route", ROUTES)
def test_the_answer_has_the_shared_shape_best_first(url, served, route):
    answer = post(url, route, documents=DOCUMENTS)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["model"] == "judge" and data["object"] == "list"
    results = data["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    assert all(set(r) == {"index", "relevance_score"} for r in results)  # no documents
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    direct = served[1].rerank("judge", QUERY, DOCUMENTS)  # the Runtime under the face
    assert [(r.index, r.relevance_score) for r in direct.results] == [
        (r["index"], pytest.approx(r["relevance_score"], abs=1e-6)) for r in results]
    assert data["usage"] == {"prompt_tokens": direct.total_tokens,
                             "total_tokens": direct.total_tokens}


@pytest.mark.parametrize("route", ROUTES)
def test_top_n_and_return_documents(url, route):
    full = post(url, route, documents=DOCUMENTS).json()["results"]
    cohere_docs = [{"text": d} for d in DOCUMENTS]  # Cohere's document objects
    data = post(url, route, documents=cohere_docs, top_n=2, return_documents=True).json()
    assert [r["index"] for r in data["results"]] == [r["index"] for r in full[:2]]
    for r in data["results"]:
        assert r["document"] == {"text": DOCUMENTS[r["index"]]}


def openai_error(answer: httpx.Response) -> dict:
    error = answer.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("body, status, words, param", [
    ({"documents": []}, 400, "at least one document", "documents"),
    ({"documents": DOCUMENTS, "model": "tiny"}, 400, "tiny:latest is not a reranker", "model"),
    ({"documents": DOCUMENTS, "model": "nobody"}, 404, "nobody", None),
    ({"documents": DOCUMENTS, "top_n": 0}, 400, "top_n", "top_n"),
    ({"documents": [3]}, 400, "", "documents"),
    ({}, 400, "", "documents"),
])
def test_errors_in_each_faces_shape(url, body, status, words, param):
    openai = post(url, "/v1/rerank", **body)
    assert openai.status_code == status, openai.text
    error = openai_error(openai)
    assert words in error["message"]
    if param is not None:
        assert error["param"].startswith(param)
    ollama = post(url, "/api/rerank", **body)
    assert ollama.status_code == status, ollama.text
    assert isinstance(ollama.json()["error"], str) and words in ollama.json()["error"]


def test_the_remote_runtime_reranks_through_the_server(url, served):
    remote = RemoteRuntime(served[1].settings)
    try:
        ranked = remote.rerank("judge", QUERY, DOCUMENTS, top_n=3)
        direct = served[1].rerank("judge", QUERY, DOCUMENTS, top_n=3)
        assert [(r.index, r.document) for r in ranked.results] == [
            (r.index, r.document) for r in direct.results]
        assert [r.relevance_score for r in ranked.results] == pytest.approx(
            [r.relevance_score for r in direct.results], abs=1e-6)
        assert ranked.total_tokens == direct.total_tokens
        with pytest.raises(InvalidRequest, match="not a reranker"):
            remote.rerank("tiny", QUERY, DOCUMENTS)
        with pytest.raises(ModelNotFound):
            remote.rerank("nobody", QUERY, DOCUMENTS)
    finally:
        remote.close()
