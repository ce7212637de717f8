"""Stop sequences over a token stream, without leaking a split stop into the output.

Text arrives in pieces that rarely line up with a stop sequence: "</s" may come
in one token and "top>" in the next.  :class:`StopMatcher` holds back the
shortest tail that could still grow into a stop sequence and releases it once
it cannot.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass
class StopResult:
    text: str  # safe to show now
    stopped: bool  # a stop sequence was found; ``text`` ends right before it
    stop: str | None = None  # which one (the first in the text), when stopped


class StopMatcher:
    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._pending = ""

    def feed(self, piece: str) -> StopResult:
        if not self.stops:
            return StopResult(piece, False)
        buffer = self._pending + piece
        first = None  # (where, which): the earliest, then the smallest on a tie
        for stop in self.stops:
            at = buffer.find(stop)
            if at >= 0 and (first is None or (at, stop) < first):
                first = (at, stop)
        if first is not None:
            self._pending = ""
            return StopResult(buffer[: first[0]], True, first[1])
        hold = partial_suffix(buffer, self.stops)
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        return StopResult(buffer[: len(buffer) - hold], False)

    def flush(self) -> str:
        """Release what was held back when generation ends for another reason."""
        text, self._pending = self._pending, ""
        return text



def partial_suffix(text: str, words: tuple[str, ...]) -> int:
    """Length (characters) of the longest tail of ``text`` that is a proper prefix of
    one of ``words``: what a stream must hold back, since the next piece may complete
    it (stop sequences here, markers in ``markers.py``).

    Runs once per token per stream: only the prefixes that end with ``text``'s last
    character are tried, found with ``rfind`` (usually none)."""
    if not text:
        return 0
    last, best = text[-1], 0
    for word in words:
        i = word.rfind(last, 0, min(len(word) - 1, len(text)))
        while i >= best:  # the prefix word[:i + 1] ends with ``last``; longest first
            if text.endswith(word[:i + 1]):
                best = i + 1
                break
            i = word.rfind(last, 0, i)
    return best


class Utf8Stream:
    """Decode token bytes incrementally: a character split across tokens waits."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
