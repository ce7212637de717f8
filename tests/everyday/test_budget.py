"""Context budgeting on the tiny fixture model: counts, room, splitting, fitting."""

from pathlib import Path

import pytest

from locallama.errors import InvalidRequest
from locallama.everyday.budget import TEMPLATE_TOKENS, Budget, context_size
from runtimes import local_runtime
from wordruntime import WordRuntime


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_gguf: Path):
    """The tiny model (training context 2048) with a Modelfile num_ctx of 1024."""
    rt = local_runtime(tmp_path_factory.mktemp("budget"),
                       ("tiny", tiny_gguf, "PARAMETER num_ctx 1024\n"),
                       ("tiny-default", tiny_gguf),
                       ("tiny-huge", tiny_gguf, "PARAMETER num_ctx 65536\n"))
    yield rt
    rt.close()


@pytest.fixture
def budget(tiny) -> Budget:
    return Budget(tiny, "tiny", 1024, 100)


PARAGRAPHS = [f"Paragraph {i}. " + "the quick brown fox jumps over the lazy dog. " * (i % 5 + 1)
              for i in range(40)]
DOCUMENT = "\n\n".join(PARAGRAPHS) + "\n"


def test_context_size_follows_modelfile_default_call_and_training_context(tiny):
    assert context_size(tiny, "tiny") == 1024
    assert context_size(tiny, "tiny-default") == 2048  # the default 4096, capped at 2048
    assert context_size(tiny, "tiny-huge") == 2048
    assert context_size(tiny, "tiny", {"num_ctx": 512}) == 512
    assert Budget.for_model(tiny, "tiny", 64).num_ctx == 1024


def test_count_is_the_models_tokenizer(tiny, budget):
    text = "the quick brown fox"
    assert budget.count(text) == len(tiny.tokenize("tiny", text))
    assert budget.count("the quick brown fox jumps") > budget.count(text)


def test_room_leaves_space_for_fixed_texts_template_and_answer(budget):
    prompt = "Summarize the following text."
    assert budget.room() == 1024 - 100 - TEMPLATE_TOKENS
    assert budget.room(prompt) == 1024 - 100 - TEMPLATE_TOKENS - budget.count(prompt)
    assert Budget(budget.runtime, "tiny", 100, 90).room(prompt) == 0
    with pytest.raises(InvalidRequest, match="no room for the input"):
        Budget(budget.runtime, "tiny", 100, 90).require(prompt)


def test_split_cuts_at_paragraphs_keeps_order_and_gives_the_text_back(budget):
    pieces = budget.split(DOCUMENT, 120)
    assert len(pieces) > 3
    assert "".join(pieces) == DOCUMENT
    assert all(budget.count(p) <= 120 for p in pieces)
    for piece in pieces[:-1]:
        assert piece.endswith("\n\n")  # every cut at a blank line
    # each piece is whole paragraphs, in the original order
    seen = [p.strip() for piece in pieces for p in piece.split("\n\n") if p.strip()]
    assert seen == [p.strip() for p in PARAGRAPHS]


def test_split_of_text_that_fits_is_the_text(budget):
    assert budget.split("short text", 50) == ["short text"]
    assert budget.split("", 50) == []


def test_split_falls_back_to_lines_then_sentences_then_token_cuts(budget):
    lines = "\n".join(f"line {i} the lazy dog" for i in range(60))
    pieces = budget.split(lines, 40)
    assert "".join(pieces) == lines and all(budget.count(p) <= 40 for p in pieces)
    assert all(p.endswith("\n") for p in pieces[:-1])

    sentences = " ".join(f"Sentence {i} is about the brown fox." for i in range(50))
    pieces = budget.split(sentences, 30)
    assert "".join(pieces) == sentences and all(budget.count(p) <= 30 for p in pieces)
    assert all(p.rstrip().endswith(".") for p in pieces[:-1])

    words = "fox " * 300
    pieces = budget.split(words, 25)
    assert "".join(pieces) == words and all(budget.count(p) <= 25 for p in pieces)

    solid = "x" * 400  # no boundary at all: hard cuts by token count
    pieces = budget.split(solid, 10)
    assert "".join(pieces) == solid and all(budget.count(p) <= 10 for p in pieces)


def test_a_big_paragraph_among_small_ones_is_split_alone(budget):
    big = " ".join(f"Sentence {i} about the dog." for i in range(40))
    text = f"Small one.\n\n{big}\n\nSmall two.\n"
    pieces = budget.split(text, 40)
    assert "".join(pieces) == text and all(budget.count(p) <= 40 for p in pieces)
    assert pieces[0].startswith("Small one.") and pieces[-1].endswith("Small two.\n")


def test_split_refuses_an_impossible_budget(budget):
    with pytest.raises(InvalidRequest):
        budget.split("some text", 0)
    with pytest.raises(InvalidRequest, match="cannot hold even one character"):
        budget.split("xxxxxxxx", 1)  # the BOS alone takes the one token


def test_fit_takes_items_in_order_while_they_fit(budget):
    items = ["the cat sat", "on the mat", "and the dog barked loudly", "end"]
    sizes = [budget.count(i) for i in items]
    assert budget.fit(items, sum(sizes)) == items
    assert budget.fit(items, sizes[0] + sizes[1]) == items[:2]
    assert budget.fit(items, sizes[0] + sizes[1] + 1) == items[:2]  # stops at the first misfit
    assert budget.fit(items, 0) == []


def test_split_with_a_fake_tokenizer_counts_words():
    runtime = WordRuntime()
    budget = Budget(runtime, "m", 1000, 10)
    text = "one two three four five six\n\nseven eight nine ten\n\neleven"
    assert budget.count("one two") == 3  # BOS + two words
    pieces = budget.split(text, 8)
    assert pieces == ["one two three four five six\n\n", "seven eight nine ten\n\neleven"]


def test_a_server_without_tokenize_gets_an_estimate():
    from locallama.errors import NotSupported

    class OllamaLike(WordRuntime):
        def tokenize(self, model: str, text: str) -> list[int]:
            raise NotSupported("the server at http://x does not offer /api/tokenize")

    budget = Budget(OllamaLike(), "m", 1000, 10)
    assert budget.count("x" * 30) == 11 and budget.estimated
    pieces = budget.split("word " * 100, 20)
    assert "".join(pieces) == "word " * 100 and all(budget.count(p) <= 20 for p in pieces)
