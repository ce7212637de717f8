"""engine/fim.py: llama-server's fill-in-the-middle layout, token by token."""

from __future__ import annotations

import pytest

from locallama.engine.fim import Budget, FimTokens, layout

PRE, SUF, MID, REP, SEP, BOS = 100, 101, 102, 103, 104, 1
FIM = FimTokens(pre=PRE, suf=SUF, mid=MID)


def chars(text: str) -> list[int]:
    """A stand-in tokenizer: one token per character (its code point)."""
    return [ord(c) for c in text]


def test_prefix_suffix_middle_order_with_bos_first():
    assert layout(FIM, chars, "ab", "cd", bos=BOS) == [BOS, PRE, 97, 98, SUF, 99, 100, MID]


def test_the_prompt_follows_the_prefix_tokenized_apart():
    upper = lambda text: [ord(c) + 1000 for c in text]  # noqa: E731
    assert layout(FIM, chars, "a", "b", prompt="x", tokenize_prompt=upper) == [
        PRE, 97, ord("x") + 1000, SUF, 98, MID]


def test_repo_level_extra_context_comes_before_the_bos():
    fim = FimTokens(pre=PRE, suf=SUF, mid=MID, rep=REP, sep=SEP)
    tokens = layout(fim, chars, "p", "s", extra=[("a.py", "x=1")], bos=BOS)
    assert tokens == [REP, *chars("myproject\n"), SEP, *chars("a.py\n"), *chars("x=1"),
                      SEP, *chars("filename\n"), BOS, PRE, ord("p"), SUF, ord("s"), MID]


def test_without_a_file_separator_extra_files_get_the_snippet_line():
    tokens = layout(FIM, chars, "p", "s", extra=[("a.py", "x")])
    assert tokens == [*chars("\n\n--- snippet ---\n\n"), ord("x"), PRE, ord("p"), SUF,
                      ord("s"), MID]


def test_the_budget_keeps_the_prefix_end_and_the_suffix_start():
    # n_batch 16: the prefix keeps 12 tokens, the suffix 4 - 2 = 2; the extra text the
    # context's room beyond a batch and twice n_predict: 40 - 16 - 2*10 = 4 (its end)
    tokens = layout(FIM, chars, "a" * 20 + "XYZ", "12345", extra=[("f", "0123456789")],
                    budget=Budget(n_batch=16, n_ctx=40, n_predict=10))
    assert tokens == [*chars("6789"), PRE, *chars("a" * 9 + "XYZ"), SUF, *chars("12"), MID]


def test_a_vocabulary_without_fim_tokens_is_refused_naming_what_is_missing():
    assert FimTokens.from_ids(5, -1, 7, -1, -1, -1) == FimTokens(pre=5, mid=7)
    with pytest.raises(ValueError, match="no FIM suffix token"):
        layout(FimTokens(pre=5, mid=7), chars, "a", "b")
