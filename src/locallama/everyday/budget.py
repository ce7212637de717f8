"""Context budgeting, once for every task: count with the model's tokenizer, keep answer room.

Counts come from ``Runtime.tokenize``, so they are the model's own (not a
characters-per-token guess) in-process and against a server alike.  A count
includes the BOS token, so adding up counts of parts overestimates a little:
budgets err on the side of fitting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from locallama.errors import InvalidRequest, NotSupported
from locallama.options import Options
from locallama.runtime.base import Runtime

#: tokens kept free for what a chat template wraps around the messages
TEMPLATE_TOKENS = 48

# Where text may be cut, coarsest first; each pattern matches the separator that
# ends a segment, and the separator stays with the segment before it.
_PARAGRAPHS = re.compile(r"\n[ \t]*\n\s*")
_LINES = re.compile(r"\n")
_SENTENCES = re.compile(r"(?<=[.!?;:。！？])[\"')\]]*\s+")
_LEVELS = (_PARAGRAPHS, _LINES, _SENTENCES)


def context_size(runtime: Runtime, model: str, options: Mapping[str, Any] | None = None) -> int:
    """The context a request will get: the call's num_ctx, the Modelfile's, or the default,
    capped at the model's training context as the engine caps it."""
    num_ctx = (options or {}).get("num_ctx")
    details = runtime.show(model)
    if not num_ctx:
        num_ctx = details.parameters.get("num_ctx") or Options().num_ctx
    num_ctx = int(num_ctx)
    if details.context_length:
        num_ctx = min(num_ctx, details.context_length)
    return num_ctx


def answer_size(wanted: int, num_ctx: int) -> int:
    """A recipe's answer size, but never more than half the context: a small context
    must still leave room for the input."""
    return max(1, min(wanted, num_ctx // 2))


class Budget:
    """How many tokens a task may spend on its material, and cutting material to size."""

    def __init__(self, runtime: Runtime, model: str, num_ctx: int, answer_tokens: int) -> None:
        self.runtime = runtime
        self.model = model
        self.num_ctx = num_ctx
        self.answer_tokens = answer_tokens
        self._counts: dict[str, int] = {}
        self.estimated = False  # True once the runtime turned out unable to tokenize

    @classmethod
    def for_model(cls, runtime: Runtime, model: str, answer_tokens: int,
                  options: Mapping[str, Any] | None = None) -> Budget:
        """A budget over the context this model will actually be given."""
        return cls(runtime, model, context_size(runtime, model, options), answer_tokens)

    def count(self, text: str) -> int:
        """Tokens in ``text`` by the model's tokenizer (BOS included); cached per text.

        A server without a tokenize route (Ollama has none) gets a cautious estimate
        instead: one token per three bytes, more than real text needs.
        """
        if text not in self._counts:
            if len(self._counts) > 4096:
                self._counts.clear()
            self._counts[text] = self._tokens(text)
        return self._counts[text]

    def _tokens(self, text: str) -> int:
        if not self.estimated:
            try:
                return len(self.runtime.tokenize(self.model, text))
            except NotSupported:
                self.estimated = True
        return len(text.encode("utf-8")) // 3 + 1

    def room(self, *fixed_texts: str) -> int:
        """Tokens left for material once the fixed texts, the template and the answer fit.

        Never negative; a caller that finds no room should say so (see :meth:`require`).
        """
        used = sum(self.count(t) for t in fixed_texts if t)
        return max(0, self.num_ctx - self.answer_tokens - TEMPLATE_TOKENS - used)

    def require(self, *fixed_texts: str, minimum: int = 32) -> int:
        """:meth:`room`, or a one-line error when less than ``minimum`` is left."""
        room = self.room(*fixed_texts)
        if room < minimum:
            raise InvalidRequest(
                f"the context of {self.model} ({self.num_ctx} tokens) leaves no room for the "
                f"input after the prompt and {self.answer_tokens} answer tokens; use a larger "
                "num_ctx or fewer answer tokens")
        return room

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` into pieces of at most ``max_tokens``, in order.

        Cuts fall at blank lines where they can, else at line ends, else after
        sentences, else wherever the token count says.  The pieces joined give the
        text back exactly (each keeps the whitespace that followed it), so a task
        can work piece by piece and reassemble.
        """
        if max_tokens < 1:
            raise InvalidRequest("no room in the context for any input")
        if not text:
            return []
        return [p for p in self._split(text, max_tokens, 0) if p]

    def fit(self, items: list[str], max_tokens: int) -> list[str]:
        """The leading items, in order, while their counts together stay within max_tokens."""
        taken: list[str] = []
        total = 0
        for item in items:
            size = self.count(item)
            if total + size > max_tokens:
                break
            taken.append(item)
            total += size
        return taken

    # -- splitting ---------------------------------------------------------------

    def _split(self, text: str, max_tokens: int, level: int) -> list[str]:
        if self.count(text) <= max_tokens:
            return [text]
        if level >= len(_LEVELS):
            return self._cut(text, max_tokens)
        parts = _segments(text, _LEVELS[level])
        if len(parts) < 2:
            return self._split(text, max_tokens, level + 1)
        return self._pack(parts, max_tokens, level)

    def _pack(self, parts: list[str], max_tokens: int, level: int) -> list[str]:
        """Greedy: as many whole parts per piece as fit; a part too big alone goes a level down."""
        counts = [self.count(p) for p in parts]
        pieces: list[str] = []
        start = 0
        while start < len(parts):
            end, total = start, 0
            while end < len(parts) and (end == start or total + counts[end] <= max_tokens):
                total += counts[end]
                end += 1
            # Summed counts are an estimate (tokens can merge across a cut): check.
            while end - start > 1 and self.count("".join(parts[start:end])) > max_tokens:
                end -= 1
            piece = "".join(parts[start:end])
            if end - start == 1 and counts[start] > max_tokens:
                pieces.extend(self._split(piece, max_tokens, level + 1))
            else:
                pieces.append(piece)
            start = end
        return pieces

    def _prefix_fits(self, text: str, max_tokens: int, length: int) -> bool:
        return self.count(text[:length]) <= max_tokens

    def _cut(self, text: str, max_tokens: int) -> list[str]:
        """Last resort: the longest prefixes that fit, preferring to end at a space."""
        pieces: list[str] = []
        while text:
            if self.count(text) <= max_tokens:
                pieces.append(text)
                break
            size = _longest(partial(self._prefix_fits, text, max_tokens), len(text))
            if size == 0:
                raise InvalidRequest(
                    f"a budget of {max_tokens} tokens cannot hold even one character")
            space = text.rfind(" ", 0, size)
            if space > size // 2:
                size = space + 1
            pieces.append(text[:size])
            text = text[size:]
        return pieces


def _segments(text: str, separator: re.Pattern[str]) -> list[str]:
    """``text`` cut after each separator match; joined, the segments are the text."""
    parts: list[str] = []
    start = 0
    for match in separator.finditer(text):
        if match.end() > start and match.start() > start:
            parts.append(text[start:match.end()])
            start = match.end()
    if start < len(text):
        parts.append(text[start:])
    return parts


def _longest(fits: Callable[[int], bool], limit: int) -> int:
    """The largest n in [0, limit] with fits(n), for a fits that turns false once."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
