"""Rewriting text piece by piece (translate, fix): code blocks kept, long input split, order kept.

The model sees only prose.  Fenced code blocks are taken out before anything is
sent and put back byte for byte, so a model cannot "translate" code.  Prose longer
than the context allows is split at paragraph boundaries (``Budget.split``), each
piece is rewritten on its own, and the whitespace around each piece is the
original's, so the document's layout survives.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from locallama.everyday.budget import Budget, answer_size
from locallama.everyday.recipes import Recipe
from locallama.everyday.run import answer
from locallama.runtime.base import Runtime

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Segment:
    text: str
    code: bool  # a fenced code block (with its fences): never sent to the model


def split_code_blocks(text: str) -> list[Segment]:
    """Prose and fenced code blocks in order; joined, the segments are the text.

    Fences follow CommonMark: three or more backticks or tildes, indented at most
    three spaces, closed by a fence of the same character at least as long; an
    unclosed fence runs to the end of the text.
    """
    segments: list[Segment] = []
    prose: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.match(lines[i])
        if not opened or (opened.group(1)[0] == "`" and "`" in lines[i][opened.end():]):
            prose.append(lines[i])
            i += 1
            continue
        fence = opened.group(1)
        end = i + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        if prose:
            segments.append(Segment("".join(prose), code=False))
            prose = []
        segments.append(Segment("".join(lines[i:end + 1]), code=True))
        i = end + 1
    if prose:
        segments.append(Segment("".join(prose), code=False))
    return segments


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (len(line) - len(line.lstrip(" ")) <= 3 and len(stripped) >= len(fence)
            and set(stripped) == {fence[0]})


def rewrite(runtime: Runtime, model: str, recipe: Recipe, text: str, variables: dict[str, Any],
            *, num_ctx: int, max_tokens: int | None = None,
            on_text: Callable[[str], None] | None = None,
            options: dict[str, Any] | None = None) -> str:
    """``text`` rewritten by ``recipe`` (variable ``text`` = one piece of prose), in order.

    Streams through ``on_text`` exactly what it returns.  ``max_tokens`` caps each
    piece's answer; by default a piece may answer with twice its own length (plus
    a little), so a base model that does not stop cannot run on for long.
    """
    emit = on_text or (lambda _text: None)
    answer_tokens = max_tokens or answer_size(recipe.answer_tokens, num_ctx)
    budget = Budget(runtime, model, num_ctx, answer_tokens)
    fixed = recipe.render(**{**variables, "text": ""})
    room = budget.require(fixed, recipe.render_system(**{**variables, "text": ""}))
    piece_tokens = min(room, max(64, answer_tokens // 2))
    out: list[str] = []
    for segment in split_code_blocks(text):
        if segment.code or not segment.text.strip():
            out.append(segment.text)
            emit(segment.text)
            continue
        for piece in budget.split(segment.text, piece_tokens):
            core = piece.strip()
            lead = piece[: len(piece) - len(piece.lstrip())]
            trail = piece[len(piece.rstrip()):]
            if not core:
                out.append(piece)
                emit(piece)
                continue
            predict = max_tokens or min(answer_tokens, 2 * budget.count(core) + 64)
            out.append(lead)
            emit(lead)
            trimmed = Trimmed(emit)
            result = answer(runtime, model, recipe, {**variables, "text": core},
                            on_text=trimmed.feed,
                            options={**(options or {}), "num_predict": predict})
            trimmed.finish()
            out.append(result.strip() or core)
            if not result.strip():
                emit(core)  # nothing came back: keep the original rather than lose it
            out.append(trail)
            emit(trail)
    return "".join(out)


class Trimmed:
    """Streams text with leading and trailing whitespace dropped (as ``str.strip`` would).

    Trailing whitespace is held back until more text follows it, so what was
    streamed equals the stripped whole.
    """

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.started = False
        self.held = ""

    def feed(self, text: str) -> None:
        if not self.started:
            text = text.lstrip()
            if not text:
                return
            self.started = True
        body = text.rstrip()
        if body:
            self.emit(self.held + body)
            self.held = text[len(body):]
        else:
            self.held += text

    def finish(self) -> None:
        self.held = ""


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """(kind, text) runs from ``old`` to ``new`` word by word: kind is "=", "-" or "+".

    Words and the whitespace between them are separate tokens, so a change of one
    word shows as that word, not as its whole line.
    """
    a, b = _words(old), _words(new)
    runs: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            runs.append(("=", "".join(a[i1:i2])))
            continue
        if tag in ("delete", "replace"):
            runs.append(("-", "".join(a[i1:i2])))
        if tag in ("insert", "replace"):
            runs.append(("+", "".join(b[j1:j2])))
    return runs


def format_word_diff(runs: list[tuple[str, str]]) -> str:
    """git's plain word-diff: [-removed-] and {+added+}."""
    marks = {"=": ("", ""), "-": ("[-", "-]"), "+": ("{+", "+}")}
    return "".join(f"{marks[k][0]}{t}{marks[k][1]}" for k, t in runs)


def _words(text: str) -> list[str]:
    return re.findall(r"\s+|\w+|[^\w\s]", text)
