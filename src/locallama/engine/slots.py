"""Slots: a scheduler's sequences, each a KV stream that keeps its tokens after its job,
and the choice of which free slot a new job takes (the one whose cache holds most
of its prompt).  Plain data and pure functions; ``engine/scheduler.py`` owns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Slot:
    """One sequence of the context (its own KV stream): the tokens it holds, and the job
    running in it (None: free, its cache kept for the next job that shares it)."""

    id: int
    cached: list[int] = field(default_factory=list)  # the tokens whose KV this sequence holds
    job: Any = None  # engine.job.Job
    last_used: float = 0.0


def choose_slot(free: list[Slot], prompt: list[int], spare: int | None = None) -> Slot:
    """The free slot whose cache holds most of ``prompt``; a slot is only worth taking
    for its cache if the prompt keeps at least half of it (so a new conversation
    that shares a few opening tokens does not evict another one's history).
    Otherwise an empty slot, or the least recently used.

    With ``spare`` (prefix sharing on: the fewest tokens worth copying), a slot that
    holds another conversation's tail of ``spare`` tokens or more past the common
    prefix is spared while an empty slot is free: the new job takes the empty one and
    copies the prefix (``engine/prefill.py``), and both conversations stay cached.
    A conversation's next turn loses at most a few tokens (what the template spells
    differently), so it still goes back to its own slot."""
    worth = [(n, s) for s in free
             if (n := common_prefix(s.cached, prompt)) * 2 >= len(s.cached) > 0]
    empty = [s for s in free if not s.cached]
    if worth:
        n, best = max(worth, key=lambda pair: pair[0])
        if spare is None or len(best.cached) - n < spare or not empty:
            return best
    return min(free, key=lambda s: (len(s.cached) > 0, s.last_used))


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
