"""Markers in a text stream: find fixed strings split across pieces, leaking no part.

A model writes ``<think>`` or ``<|channel|>`` as one token or as several, and a
piece boundary may fall anywhere inside one.  :class:`MarkerScanner` turns pieces of
text into events, plain text and whole markers, holding back only the shortest tail
that could still grow into a marker (the way ``stops.StopMatcher`` holds back a
possible stop sequence) and releasing it as text once it cannot.
"""

from __future__ import annotations

from collections.abc import Iterable

from locallama.engine.stops import partial_suffix

Event = tuple[str, str]
"""("text", some text) or ("marker", the marker)."""


class MarkerScanner:
    """Pieces in, events out: ``feed(piece)`` and ``flush()`` return a list of events
    whose texts and markers, joined, are exactly the text fed (nothing lost, nothing
    repeated). Markers are matched leftmost first, the longest on a tie."""

    def __init__(self, markers: Iterable[str]) -> None:
        self.markers = tuple(sorted({m for m in markers if m}, key=len, reverse=True))
        self._pending = ""

    def feed(self, piece: str) -> list[Event]:
        """Events for ``piece``; a possible start of a marker at its end is held."""
        buffer = self._pending + piece
        events: list[Event] = []
        while True:
            found = self._first(buffer)
            if found is None:
                break
            at, marker = found
            if at:
                events.append(("text", buffer[:at]))
            events.append(("marker", marker))
            buffer = buffer[at + len(marker):]
        hold = partial_suffix(buffer, self.markers)
        self._pending = buffer[len(buffer) - hold:] if hold else ""
        if len(buffer) > hold:
            events.append(("text", buffer[:len(buffer) - hold]))
        return events

    def flush(self) -> list[Event]:
        """At the stream's end: what was held, as text."""
        text, self._pending = self._pending, ""
        return [("text", text)] if text else []

    def _first(self, text: str) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for marker in self.markers:  # longest first: a tie keeps the longer one
            at = text.find(marker)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, marker)
        return best
