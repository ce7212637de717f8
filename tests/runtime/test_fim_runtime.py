"""Fill-in-the-middle through LocalRuntime over tiny models that declare FIM tokens:
the exact prompt the model evaluates (the final chunk's ``context``), both key styles
llama.cpp reads, /infill's extra files and budget, and the refusal without FIM tokens."""

from __future__ import annotations

import pytest

from locallama.errors import InvalidRequest
from locallama.runtime.types import GenerateRequest, Infill
from runtimes import local_runtime
from tinymodel import BOS_ID, fim_ids, write_fim_gguf, write_tiny_gguf

IDS = fim_ids()
PRE, SUF, MID = IDS["<|fim_prefix|>"], IDS["<|fim_suffix|>"], IDS["<|fim_middle|>"]
REP, SEP = IDS["<|repo_name|>"], IDS["<|file_sep|>"]
ONE = {"num_predict": 1, "temperature": 0}


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("fim")
    models = home / "files"
    models.mkdir()
    runtime = local_runtime(
        home, ("fim", write_fim_gguf(models / "fim.gguf")),
        ("legacy", write_fim_gguf(models / "legacy.gguf", legacy_keys=True)),
        ("repo", write_fim_gguf(models / "repo.gguf", repo_level=True)),
        ("plain", write_tiny_gguf(models / "plain.gguf")))
    yield runtime
    runtime.close()


def final(rt, request: GenerateRequest):
    return list(rt.generate(request))[-1]


def words(rt, text: str) -> list[int]:
    return rt.tokenize("fim", text, add_special=False)


@pytest.mark.parametrize("model", ["fim", "legacy"])
def test_a_suffix_lays_the_prompt_out_prefix_suffix_middle(rt, model):
    last = final(rt, GenerateRequest(model, "def hello", suffix=" return the", options=ONE))
    expected = [BOS_ID, PRE, *words(rt, "def hello"), SUF, *words(rt, " return the"), MID]
    assert last.context[:len(expected)] == expected
    assert last.prompt_tokens == len(expected)


def test_context_ids_come_first_and_then_no_bos(rt):
    last = final(rt, GenerateRequest("fim", "a", suffix="b", context=[300, 301], options=ONE))
    assert last.context[:7] == [300, 301, PRE, *words(rt, "a"), SUF, *words(rt, "b"), MID][:7]
    assert BOS_ID not in last.context[:last.prompt_tokens]


def test_infill_puts_other_files_before_the_bos_with_repo_tokens(rt):
    request = GenerateRequest("repo", "x = ", suffix="\n", options=ONE, infill=Infill(
        extra=[("util.py", "def helper(): pass")], prompt="y"))
    last = final(rt, request)
    expected = [REP, *words(rt, "myproject\n"), SEP, *words(rt, "util.py\n"),
                *words(rt, "def helper(): pass"), SEP, *words(rt, "filename\n"), BOS_ID,
                PRE, *words(rt, "x = "), *words(rt, "y"), SUF, *words(rt, "\n"), MID]
    assert last.context[:last.prompt_tokens] == expected


def test_infill_budget_keeps_the_end_of_a_long_prefix(rt):
    prefix = "the cat " * 200
    last = final(rt, GenerateRequest("fim", prefix, suffix="dog", infill=Infill(),
                                     options={**ONE, "num_batch": 64}))
    prompt = last.context[:last.prompt_tokens]
    kept = prompt[prompt.index(PRE) + 1:prompt.index(SUF)]
    assert len(kept) == 48 and kept == words(rt, prefix)[-48:]


def test_a_model_without_fim_tokens_is_refused_naming_it(rt):
    with pytest.raises(InvalidRequest, match="'plain:latest' does not support insert"):
        final(rt, GenerateRequest("plain", "def f(", suffix="return 1", options=ONE))
    assert final(rt, GenerateRequest("plain", "def f(", options=ONE)).done  # no suffix: fine
