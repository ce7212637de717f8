"""Summaries of any length: whole when the text fits, else map (parts) and reduce (combine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from locallama.errors import InvalidRequest
from locallama.everyday.budget import Budget, answer_size
from locallama.everyday.recipes import load_recipe
from locallama.everyday.run import answer
from locallama.runtime.base import Runtime
from locallama.settings import Settings

LENGTHS = {"short": 160, "medium": 400, "long": 1000}  # answer tokens per length
MAX_ROUNDS = 12  # combine rounds; each at least halves the number of summaries


def summarize(runtime: Runtime, model: str, settings: Settings, text: str, *, length: str,
              num_ctx: int, max_tokens: int | None = None,
              on_text: Callable[[str], None] | None = None,
              on_progress: Callable[[str], None] | None = None,
              options: dict[str, Any] | None = None) -> str:
    """The summary of ``text``; only the final answer streams through ``on_text``.

    Text that fits goes to the summarize recipe whole.  Longer text is cut at
    paragraph boundaries into parts that fit; each part is summarized (map), then
    the part summaries are combined (reduce) as many at a time as fit, again and
    again until one summary is left.
    """
    if length not in LENGTHS:
        raise InvalidRequest(f"--length must be short, medium or long, not {length!r}")
    recipe = load_recipe("summarize", settings)
    combine = load_recipe("summarize_combine", settings)
    tokens = max_tokens or answer_size(min(recipe.answer_tokens, LENGTHS[length]), num_ctx)
    call = {**(options or {}), "num_predict": tokens}
    progress = on_progress or (lambda _message: None)
    budget = Budget(runtime, model, num_ctx, tokens)
    whole = {"text": "", "length": length, "part": 0, "parts": 0}
    room = budget.require(recipe.render(**whole), recipe.render_system(**whole))
    if budget.count(text) <= room:
        return answer(runtime, model, recipe, {**whole, "text": text}, on_text=on_text,
                      options=call).strip()

    parts = budget.split(text, budget.room(recipe.render(**{**whole, "part": 999, "parts": 999})))
    summaries: list[str] = []
    for number, part in enumerate(parts, 1):
        progress(f"summarizing part {number} of {len(parts)}")
        variables = {**whole, "text": part, "part": number, "parts": len(parts)}
        summaries.append(answer(runtime, model, recipe, variables, options=call).strip())

    fixed = combine.render(summaries=[], length=length)
    room = budget.require(fixed, combine.render_system(summaries=[], length=length))
    for _round in range(MAX_ROUNDS):
        groups = _groups(budget, summaries, room)
        if len(groups) == 1:
            progress(f"combining {len(summaries)} summaries")
            return answer(runtime, model, combine, {"summaries": groups[0], "length": length},
                          on_text=on_text, options=call).strip()
        progress(f"combining {len(summaries)} summaries in {len(groups)} groups")
        summaries = [answer(runtime, model, combine, {"summaries": g, "length": length},
                            options=call).strip() for g in groups]
    raise InvalidRequest("the summaries do not shrink enough to combine; "
                         "try a larger num_ctx or a shorter --length")


def _groups(budget: Budget, summaries: list[str], room: int) -> list[list[str]]:
    """Consecutive summaries, as many per group as fit, and always at least two.

    A summary is cut to half the room when it is longer, so that every group
    holds two or more (the last may hold one) and the count shrinks every round.
    """
    per_item = 16  # "Part N:" and blank lines around each summary
    half = max(1, room // 2 - per_item)
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for summary in summaries:
        if budget.count(summary) > half:
            summary = budget.split(summary, half)[0]
        size = budget.count(summary) + per_item
        if current and used + size > room:
            groups.append(current)
            current, used = [], 0
        current.append(summary)
        used += size
    if current:
        groups.append(current)
    return groups
