"""Tool calls as they form: a model's output stream split into text and call deltas.

The formats are ``tools.py``'s: ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``
(Hermes, Qwen), ``[TOOL_CALLS] [{…}, …]`` (Mistral) and a bare JSON object or list
of them at the start of the answer (Llama 3.1 and others). Text before a call
streams as it comes (a marker split over pieces is held back, never leaked); a call
is announced as soon as its name is whole (a ``ToolCallDelta`` with index, a fresh
``call_…`` id and the name) and its arguments follow as the model writes them: the
fragments, joined, are the arguments' JSON text as generated, which parses to the
call's final ``arguments``. This is the shape of OpenAI's streamed
``delta.tool_calls`` (https://platform.openai.com/docs/api-reference/chat-streaming).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from locallama.engine.markers import MarkerScanner
from locallama.engine.tools import parse_tool_calls
from locallama.runtime.types import ToolCall, ToolCallDelta

OPEN, CLOSE, MISTRAL = "<tool_call>", "</tool_call>", "[TOOL_CALLS]"
_ARGUMENT_KEYS = ("arguments", "parameters")


def new_call_id() -> str:
    """A fresh tool-call id in OpenAI's style: ``call_`` and 24 hex digits."""
    return "call_" + secrets.token_hex(12)


@dataclass
class _Call:
    index: int
    start: int  # where this call's object starts in the region
    id: str = ""
    name: str = ""
    sent: int = -1  # how far the arguments' text was sent (-1: not started)
    arguments: Any = None
    done: bool = False


@dataclass
class StreamStep:
    """What one piece completes: text to show, call deltas, and the calls that were
    completed by it (whole, with their ids)."""

    text: str = ""
    deltas: list[ToolCallDelta] = field(default_factory=list)
    completed: list[ToolCall] = field(default_factory=list)


class ToolCallStream:
    """Text pieces in, :class:`StreamStep` out. ``known``: the offered tools' names (a
    call naming another is not a call: its text is released as text)."""

    def __init__(self, known: set[str] | None = None) -> None:
        self.known = known
        self.calls: list[ToolCall] = []
        self._scanner = MarkerScanner((OPEN, CLOSE, MISTRAL))
        self._region: str | None = None  # the JSON text of the call(s) being read
        self._tagged = False  # inside <tool_call>…</tool_call>
        self._bare = False  # a bare JSON value at the start (may prove to be text)
        self._seen_text = False  # anything but whitespace before: no bare JSON any more
        self._pending_ws = ""
        self._open: list[_Call] = []
        self._raw = ""  # the region's text as written, released as text if no call
        self._consumed = 0  # how much of the region the calls read
        self._after_call = False  # layout after a call is not text

    # -- feeding --------------------------------------------------------------

    def feed(self, piece: str) -> StreamStep:
        step = StreamStep()
        for kind, value in self._scanner.feed(piece):
            self._event(kind, value, step)
        return step

    def flush(self) -> StreamStep:
        """The stream's end: an unfinished call is finished with what was written."""
        step = StreamStep()
        for kind, value in self._scanner.flush():
            self._event(kind, value, step)
        if self._region is not None:
            self._end_region(step)
        step.text += self._pending_ws if not self.calls else ""
        self._pending_ws = ""
        return step

    def _event(self, kind: str, value: str, step: StreamStep) -> None:
        if kind == "marker":
            if value in (OPEN, MISTRAL) and (self._region is None or self._bare):
                if self._region is not None:  # a bare value interrupted: it was text
                    self._release(step)
                self._start_region(value, step, tagged=value == OPEN)
            elif value == CLOSE and self._tagged:
                self._raw += value
                self._end_region(step)
            elif self._region is not None:
                self._grow(value, step)
            else:
                self._text(value, step)
            return
        if self._region is not None:
            self._grow(value, step)
            return
        if not self._seen_text and not self.calls:
            stripped = value.lstrip()
            if stripped[:1] in ("{", "["):
                self._pending_ws += value[:len(value) - len(stripped)]
                self._start_region("", step, tagged=False, bare=True)
                self._grow(stripped, step)
                return
        self._text(value, step)

    def _text(self, value: str, step: StreamStep) -> None:
        if self._after_call:  # between and after calls, layout is not text
            value = value.lstrip()
            self._after_call = not value
        if not value:
            return
        if not self._seen_text and not self.calls and not value.strip():
            self._pending_ws += value  # a bare JSON call may follow
            return
        self._seen_text = True
        step.text += self._pending_ws + value
        self._pending_ws = ""

    # -- a region of calls ----------------------------------------------------

    def _start_region(self, marker: str, step: StreamStep, tagged: bool,
                      bare: bool = False) -> None:
        self._region, self._raw = "", marker
        self._tagged, self._bare = tagged, bare
        self._open = []

    def _grow(self, text: str, step: StreamStep) -> None:
        assert self._region is not None
        self._region += text
        self._raw += text
        self._advance(step, final=False)
        if not self._tagged and self._region_done():
            self._end_region(step)

    def _region_done(self) -> bool:
        start = _skip_ws(self._region or "", 0)
        return start < len(self._region or "") and \
            _skip_value(self._region or "", start) is not None

    def _end_region(self, step: StreamStep) -> None:
        self._advance(step, final=True)
        made = [c for c in self._open if c.id]
        if not made:
            self._whole(step)
        else:
            self._after_call = True
            self._pending_ws = ""
            for call in made:
                if call.sent < 0:  # arguments never streamed (not an object)
                    text = json.dumps(call.arguments if isinstance(call.arguments, dict)
                                      else {})
                    step.deltas.append(ToolCallDelta(call.index, arguments=text))
                done = ToolCall(call.name, call.arguments if isinstance(call.arguments, dict)
                                else {}, call.id)
                self.calls.append(done)
                step.completed.append(done)
            rest = (self._region or "")[self._consumed:].strip()
            if self._bare and rest:
                step.text += rest
        self._region = None
        self._tagged = self._bare = False
        self._open = []

    def _whole(self, step: StreamStep) -> None:
        """A region the streaming reader found no call in: ``tools.py``'s reading of
        the whole (other shapes, such as ``{"function": {…}}``), else text."""
        raw = self._raw
        content, calls = parse_tool_calls(raw, self.known)
        if not calls:
            self._release(step)
            return
        for call in calls:
            call.id = new_call_id()
            index = len(self.calls)
            step.deltas.append(ToolCallDelta(index, id=call.id, name=call.name))
            step.deltas.append(ToolCallDelta(index, arguments=json.dumps(call.arguments)))
            self.calls.append(call)
            step.completed.append(call)
        self._region, self._open, self._after_call = None, [], True
        if content.strip():
            step.text += content

    def _release(self, step: StreamStep) -> None:
        """The region held no call: its text as written, as text."""
        raw, self._region = self._raw, None
        self._open = []
        self._seen_text = self._seen_text or bool(raw.strip())
        step.text += self._pending_ws + raw
        self._pending_ws = ""

    def _advance(self, step: StreamStep, final: bool) -> None:
        """Read the region's objects as far as they are written; send what is new."""
        region = self._region or ""
        i = _skip_ws(region, 0)
        listed = region[i:i + 1] == "["
        if listed:
            i += 1
        index_base = len(self.calls)
        k = 0
        self._consumed = i
        while True:
            i = _skip_ws(region, i)
            if listed and region[i:i + 1] == ",":
                i = _skip_ws(region, i + 1)
            if i >= len(region) or region[i] != "{":
                break
            if k == len(self._open):
                self._open.append(_Call(index_base + k, i))
            call = self._open[k]
            end = self._object(call, region, step, final)
            if end is None:
                break
            self._consumed = end
            i, k = end, k + 1
            if not listed:
                break
        if listed and region[i:i + 1] == "]":
            self._consumed = i + 1

    def _object(self, call: _Call, region: str, step: StreamStep, final: bool) -> int | None:
        """Read one call object from ``call.start``; returns its end when whole."""
        keys, end = _object_keys(region, call.start)
        name = keys.get("name")
        if not call.id and name is not None and name[1] is not None:
            value = _loads(region[name[0]:name[1]])
            if isinstance(value, str) and (self.known is None or value in self.known):
                call.id, call.name = new_call_id(), value
                self._index_fix(call)
                step.deltas.append(ToolCallDelta(call.index, id=call.id, name=value))
        args = next((keys[k] for k in _ARGUMENT_KEYS if k in keys), None)
        if call.id and args is not None and region[args[0]:args[0] + 1] == "{":
            upto = args[1] if args[1] is not None else len(region)
            if call.sent < 0:
                call.sent = args[0]
            if upto > call.sent:
                step.deltas.append(ToolCallDelta(call.index, arguments=region[call.sent:upto]))
                call.sent = upto
        if end is not None or final:
            if args is not None and args[1] is not None:
                value = _loads(region[args[0]:args[1]])
                call.arguments = _loads(value) if isinstance(value, str) else value
            call.done = end is not None
        return end

    def _index_fix(self, call: _Call) -> None:
        """Calls that are not calls (an unknown name) take no index."""
        call.index = len(self.calls) + sum(1 for c in self._open if c.id and c is not call)


# -- a forgiving reader of JSON as it is written --------------------------------------


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _skip_string(text: str, i: int) -> int | None:
    """End of the JSON string starting at ``text[i] == '"'``, or None if unfinished."""
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    return None


def _skip_value(text: str, i: int) -> int | None:
    """End of the JSON value starting at ``i``, or None while it is unfinished."""
    if i >= len(text):
        return None
    if text[i] == '"':
        return _skip_string(text, i)
    if text[i] in "{[":
        depth = 0
        while i < len(text):
            ch = text[i]
            if ch == '"':
                end = _skip_string(text, i)
                if end is None:
                    return None
                i = end
                continue
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return None
    j = i
    while j < len(text) and text[j] not in ",}] \t\r\n":
        j += 1
    return j if j < len(text) else None


def _object_keys(text: str, i: int) -> tuple[dict[str, tuple[int, int | None]], int | None]:
    """The keys of the object at ``text[i] == '{'`` read so far, each with its value's
    (start, end) (end None: unfinished), and the object's end when it is whole."""
    keys: dict[str, tuple[int, int | None]] = {}
    i += 1
    while True:
        i = _skip_ws(text, i)
        if i >= len(text):
            return keys, None
        if text[i] == "}":
            return keys, i + 1
        if text[i] == ",":
            i += 1
            continue
        if text[i] != '"':
            return keys, None
        key_end = _skip_string(text, i)
        if key_end is None:
            return keys, None
        key = _loads(text[i:key_end])
        i = _skip_ws(text, key_end)
        if i >= len(text) or text[i] != ":":
            return keys, None
        i = _skip_ws(text, i + 1)
        if i >= len(text):
            return keys, None
        end = _skip_value(text, i)
        if isinstance(key, str):
            keys[key] = (i, end)
        if end is None:
            return keys, None
        i = end
