"""Fill-in-the-middle: a model's FIM tokens and the prompt laid out around them.

Code models trained for infilling declare special tokens in their GGUF
(``tokenizer.ggml.fim_pre_token_id``, ``fim_suf``, ``fim_mid``, ``fim_pad``,
``fim_rep``, ``fim_sep``; older files ``prefix_token_id``, ``suffix_token_id``,
``middle_token_id``), and llama.cpp also recognises them by their text
(``<|fim_prefix|>``, ``<fim-prefix>``, ``<PRE>``, ...).  The ids here are what
llama.cpp's vocabulary reports (``llama_vocab_fim_*``), so both ways count.

The layout is llama-server's ``/infill`` (tools/server, ``format_prompt_infill``;
https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md), in its
prefix-suffix-middle order with the repository-level extra context of Qwen2.5-Coder
(https://arxiv.org/abs/2409.12186)::

    [FIM_REP]myproject\\n [FIM_SEP]file0\\n text0 ... [FIM_SEP]filename\\n
    [BOS] [FIM_PRE] prefix prompt [FIM_SUF] suffix [FIM_MID]

Without a FIM_SEP token each extra file is preceded by "\\n\\n--- snippet ---\\n\\n".
Plain data and token arithmetic only: no llama.cpp here, so the runtime, the runner and
tests share it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: the text llama-server puts before an extra file when the model has no FIM_SEP token
SNIPPET_SEPARATOR = "\n\n--- snippet ---\n\n"
#: llama-server's fixed repository name and current-file name in the repo-level layout
REPO_NAME = "myproject\n"
CURRENT_FILE = "filename\n"


@dataclass(frozen=True)
class FimTokens:
    """A vocabulary's fill-in-the-middle token ids; None where it has none."""

    pre: int | None = None
    suf: int | None = None
    mid: int | None = None
    pad: int | None = None
    rep: int | None = None
    sep: int | None = None

    @property
    def usable(self) -> bool:
        """Whether the three tokens infilling needs (prefix, suffix, middle) exist."""
        return None not in (self.pre, self.suf, self.mid)

    def missing(self) -> list[str]:
        """The names of the needed tokens the vocabulary lacks, in llama-server's words."""
        return [name for name, token in (("prefix", self.pre), ("suffix", self.suf),
                                         ("middle", self.mid)) if token is None]

    @classmethod
    def from_ids(cls, pre: int, suf: int, mid: int, pad: int, rep: int, sep: int) -> FimTokens:
        """From llama.cpp's ids, where -1 (LLAMA_TOKEN_NULL) means none."""
        ids = [None if t is None or t < 0 else int(t) for t in (pre, suf, mid, pad, rep, sep)]
        return cls(*ids)


@dataclass(frozen=True)
class Budget:
    """llama-server's take limits for /infill: the prefix keeps at most 3/4 of a batch
    (its end), the suffix what is left of a quarter batch after the prompt (its start),
    and the extra context what the context holds beyond a batch and twice the answer
    (its end).  ``n_predict`` -1 (no limit) counts as llama-server counts it."""

    n_batch: int
    n_ctx: int
    n_predict: int


def layout(fim: FimTokens, tokenize: Callable[[str], list[int]], prefix: str, suffix: str,
           *, prompt: str = "", extra: Sequence[tuple[str, str]] = (),
           bos: int | None = None, budget: Budget | None = None,
           tokenize_prompt: Callable[[str], list[int]] | None = None) -> list[int]:
    """The token ids of a fill-in-the-middle prompt, as llama-server lays it out.

    ``tokenize`` turns text into ids with no BOS and no special-token parsing (the
    prefix, suffix and file texts are the user's code, not control text);
    ``tokenize_prompt`` (default ``tokenize``) does the same for ``prompt``, the text
    after the prefix (llama-server parses special tokens there). ``extra``: (filename,
    text) of other files, put before everything else; ``bos``: the model's BOS id
    when it adds one. ``budget``: cut prefix, suffix and extra as llama-server does
    (None: keep everything; the scheduler's usual truncation applies).
    ValueError when ``fim`` lacks a prefix, suffix or middle token."""
    if not fim.usable:
        raise ValueError(f"no FIM {', '.join(fim.missing())} token")
    assert fim.pre is not None and fim.suf is not None and fim.mid is not None
    extra_tokens: list[int] = []
    if fim.rep is not None:
        extra_tokens += [fim.rep, *tokenize(REPO_NAME)]
    for filename, text in extra:
        if fim.sep is not None:
            extra_tokens += [fim.sep, *tokenize(filename + "\n")]
        else:
            extra_tokens += tokenize(SNIPPET_SEPARATOR)
        extra_tokens += tokenize(text)
    if fim.sep is not None:
        extra_tokens += [fim.sep, *tokenize(CURRENT_FILE)]

    prefix_tokens = tokenize(prefix)
    suffix_tokens = tokenize(suffix)
    prompt_tokens = (tokenize_prompt or tokenize)(prompt) if prompt else []
    if budget is not None:
        quarter = budget.n_batch // 4
        take_prefix = min(len(prefix_tokens), 3 * quarter)
        take_suffix = min(len(suffix_tokens), max(0, quarter - (2 + len(prompt_tokens))))
        take_extra = min(max(0, budget.n_ctx - budget.n_batch - 2 * budget.n_predict),
                         len(extra_tokens))
        prefix_tokens = prefix_tokens[len(prefix_tokens) - take_prefix:]
        suffix_tokens = suffix_tokens[:take_suffix]
        extra_tokens = extra_tokens[len(extra_tokens) - take_extra:]
    head = [bos] if bos is not None else []
    return [*extra_tokens, *head, fim.pre, *prefix_tokens, *prompt_tokens,
            fim.suf, *suffix_tokens, fim.mid]
