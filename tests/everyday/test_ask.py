"""``ask --docs``: retrieval into the ``ask`` recipe, fitting, citations, errors.

The command itself, with the bundled model, is tested in tests/cli/test_ask_cmd.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docshelpers import WordsRuntime
from locallama.errors import InvalidRequest
from locallama.everyday.ask import ask_documents, citations, index_home, unknown_citations
from locallama.everyday.budget import TEMPLATE_TOKENS, Budget
from locallama.everyday.docs import read_document
from locallama.everyday.index import DocIndex, index_path
from locallama.everyday.recipes import load_recipe
from locallama.runtime.types import ChatRequest, GenerateRequest
from locallama.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    return Settings(models_dir=home / "models", history_file=home / "history",
                    recipes_dir=home / "recipes")


def ask(rt, settings, docs, question="Where do cats sleep?", **kwargs):
    kwargs.setdefault("model", "chat")
    kwargs.setdefault("embed", "words")
    return ask_documents(rt, settings, docs, question, **kwargs)


def test_the_best_passages_go_into_the_recipe_and_come_back_as_sources(settings, docs):
    rt, streamed = WordsRuntime(answer="They sleep all day [cats.md#1]."), []
    result = ask(rt, settings, docs, k=2, on_text=streamed.append)
    assert result.answer == "They sleep all day [cats.md#1]." == "".join(streamed)
    assert [h.source for h in result.sources][0] == "cats.md" and len(result.sources) == 2
    [request] = rt.requests
    assert isinstance(request, ChatRequest)
    prompt = request.messages[-1].content
    assert "Where do cats sleep?" in prompt
    for hit in result.sources:  # every source given is in the prompt, under its citation
        assert f"[{hit.source}#{hit.index}]\n{hit.text}" in prompt
    assert "Birds" not in prompt  # k=2: the third passage stays out
    assert sorted(result.report.added) == ["cats.md", "dogs.md", "sub/birds.txt"]


def test_citations_point_at_real_passages(settings, docs):
    rt = WordsRuntime(answer="Cats sleep [cats.md#1]; dogs bark [dogs.md#1] [nowhere.md#3].")
    result = ask(rt, settings, docs, question="cats sleep, dogs bark", k=2)
    assert citations(result.answer) == [("cats.md", 1), ("dogs.md", 1), ("nowhere.md", 3)]
    assert unknown_citations(result.answer, result.sources) == ["nowhere.md#3"]
    with DocIndex(index_path(index_home(settings), docs), docs) as index:
        for hit in result.sources:
            stored = index.passage(hit.source, hit.index)
            assert stored is not None and stored.text == hit.text
            section = read_document(docs / hit.source)[0]
            assert section.text[hit.start:hit.end] == hit.text


def test_a_second_question_embeds_only_the_question(settings, docs):
    rt = WordsRuntime()
    ask(rt, settings, docs)
    rt.embed_calls.clear()
    result = ask(rt, settings, docs, question="birds")
    assert rt.embedded == ["birds"]
    assert result.report.unchanged == ["cats.md", "dogs.md", "sub/birds.txt"]
    ask(rt, settings, docs, question="birds", reindex=True)
    assert len(rt.embedded) == 1 + 3 + 1


def test_passages_are_fitted_to_the_context(settings, tmp_path):
    folder = tmp_path / "long"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.md").write_text(" ".join(f"{name}word{i}" for i in range(60)))
    rt = WordsRuntime()  # one token a word (and BOS): a passage's block is 62 tokens
    recipe = load_recipe("ask", settings)

    def context_for(question: str, passage_tokens: int) -> int:
        budget = Budget(rt, "chat", 0, recipe.answer_tokens)
        fixed = (budget.count(recipe.render_system(question=question, passages=[]))
                 + budget.count(recipe.render(question=question, passages=[])))
        return recipe.answer_tokens + TEMPLATE_TOKENS + fixed + passage_tokens

    question = "aword1 bword2 cword3"
    result = ask(rt, settings, folder, question=question, k=3,
                 num_ctx=context_for(question, 2 * 62 + 30))
    assert len(result.sources) == 2
    prompt = rt.requests[-1].messages[-1].content
    assert prompt.count("word59") == 2
    # no room for even one whole passage: the best one's beginning, still cited
    result = ask(rt, settings, folder, question="aword1", k=3,
                 num_ctx=context_for("aword1", 40))
    assert [(h.source, h.index) for h in result.sources] == [("a.md", 1)]
    prompt = rt.requests[-1].messages[-1].content
    assert "[a.md#1]\naword0 aword1" in prompt and "word59" not in prompt


def test_a_base_model_gets_the_prompt_as_raw_text(settings, docs):
    rt = WordsRuntime(chat_model=False)
    ask(rt, settings, docs)
    [request] = rt.requests
    assert isinstance(request, GenerateRequest) and request.raw
    assert "[cats.md#1]" in request.prompt and request.options["num_predict"] == 768
    ask(rt, settings, docs, max_tokens=5)
    assert rt.requests[-1].options["num_predict"] == 5


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: d / "missing", "no such folder"),
    (lambda d: (d / "cats.md"), "not a folder"),
    (lambda d: d / "sub" / "empty", "no documents in"),
])
def test_bad_folders_are_one_line_errors(settings, docs, setup, message):
    (docs / "sub" / "empty").mkdir()
    (docs / "sub" / "empty" / "photo.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(InvalidRequest, match=message):
        ask(WordsRuntime(), settings, setup(docs))


def test_documents_without_text_and_empty_questions_are_errors(settings, tmp_path, docs):
    folder = tmp_path / "blank"
    folder.mkdir()
    (folder / "empty.md").write_text("\n\n  \n")
    with pytest.raises(InvalidRequest, match="no text found"):
        ask(WordsRuntime(), settings, folder)
    with pytest.raises(InvalidRequest, match="no question"):
        ask(WordsRuntime(), settings, docs, question="  ")
    with pytest.raises(InvalidRequest, match="--k"):
        ask(WordsRuntime(), settings, docs, k=0)
