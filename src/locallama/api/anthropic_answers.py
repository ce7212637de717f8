"""The Anthropic Messages API's answers: the Runtime's chunks as a ``message`` object,
as the server-sent events of a streamed message, and errors in Anthropic's shape.
Pure: no HTTP, no Runtime calls (``server/anthropic_api.py`` does those); the
requests' side is ``api/anthropic.py``.

Specs: https://docs.anthropic.com/en/api/messages (the message object),
https://docs.anthropic.com/en/api/messages-streaming (the events) and
https://docs.anthropic.com/en/api/errors (error types and statuses).

* Content blocks in order: the reasoning (``Chunk.thinking``) as a ``thinking`` block
  (its ``signature`` empty: a local model signs nothing), the text as a ``text``
  block, each tool call as a ``tool_use`` block (id ``toolu_…``, ``input`` the
  arguments).
* ``stop_reason``: "max_tokens" when the Runtime stopped at num_predict or the
  context (a tool call too may be cut there), "tool_use" when the answer calls
  tools, "stop_sequence" (with
  ``stop_sequence``) when one of the request's ``stop_sequences`` ended it, else
  "end_turn".
* ``usage``: ``input_tokens`` the prompt tokens evaluated for this request,
  ``cache_read_input_tokens`` those reused from the KV cache (together the whole
  prompt, as Anthropic counts cache reads apart), ``output_tokens`` those generated.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from locallama.errors import LocallamaError, capped
from locallama.runtime.types import Chunk, ToolCall, ToolCallDelta

JSON = dict[str, Any]

#: the error ``type`` for each status Anthropic documents; any other 5xx is "api_error"
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}


def new_id(prefix: str) -> str:
    """A fresh id: ``prefix`` ("msg_", "toolu_") and 24 hex digits."""
    return f"{prefix}{secrets.token_hex(12)}"


def stop_reason(final: Chunk, calls: bool, stop_sequences: Sequence[str] | None
                ) -> tuple[str, str | None]:
    """(``stop_reason``, ``stop_sequence``) for an answer ending with ``final``."""
    if final.done_reason == "length":  # even inside a tool_use block: it was cut there
        return "max_tokens", None
    if calls:
        return "tool_use", None
    matched = final.stop_sequence
    if matched is not None and matched in (stop_sequences or ()):
        return "stop_sequence", matched
    return "end_turn", None


def usage(final: Chunk) -> JSON:
    """The usage object from a final chunk (see the module docstring)."""
    cached = max(final.prompt_tokens - final.prompt_eval_count, 0)
    return {"input_tokens": final.prompt_tokens - cached, "output_tokens": final.eval_count,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def tool_use_block(call: ToolCall) -> JSON:
    """A ``tool_use`` block: the call's id (a new ``toolu_…`` when it has none)."""
    return {"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name,
            "input": call.arguments}


def joined_calls(chunks: Sequence[Chunk]) -> list[ToolCall]:
    """The answer's tool calls: the final chunk's, else those its deltas formed (their
    argument fragments joined and parsed; a call whose text is not a JSON object keeps
    ``{}``)."""
    if chunks and chunks[-1].tool_calls:
        return list(chunks[-1].tool_calls)
    calls: dict[int, ToolCall] = {}
    texts: dict[int, str] = {}
    for chunk in chunks:
        for d in chunk.tool_call_deltas or ():
            call = calls.setdefault(d.index, ToolCall(d.name, {}, d.id))
            call.name, call.id = call.name or d.name, call.id or d.id
            texts[d.index] = texts.get(d.index, "") + d.arguments
    for index, call in calls.items():
        try:
            arguments = json.loads(texts[index] or "{}")
        except ValueError:
            arguments = {}
        call.arguments = arguments if isinstance(arguments, dict) else {}
    return [calls[i] for i in sorted(calls)]


def message(id: str, model: str, chunks: Sequence[Chunk],
            stop_sequences: Sequence[str] | None) -> JSON:
    """The ``message`` object of a whole answer (the chunks of one Runtime stream, the
    last its final chunk)."""
    final = chunks[-1]
    content: list[JSON] = []
    if thinking := "".join(c.thinking for c in chunks):
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    if text := "".join(c.text for c in chunks):
        content.append({"type": "text", "text": text})
    calls = joined_calls(chunks)
    content += [tool_use_block(c) for c in calls]
    reason, sequence = stop_reason(final, bool(calls), stop_sequences)
    return {"id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": usage(final)}


@dataclass
class MessageStream:
    """The events of a streamed message: ``start`` (message_start and a ping), ``event``
    for each chunk (content_block_start / _delta / _stop as blocks open and close),
    and on the final chunk the last block's stop, message_delta and message_stop.

    Each event is ``(name, data)``; the name is the SSE ``event:`` line and equals
    ``data["type"]``.  Blocks open in the order their content arrives: reasoning
    (thinking_delta), text (text_delta), each tool call (input_json_delta fragments,
    from ``Chunk.tool_call_deltas`` as they form, or whole from the final chunk's
    ``tool_calls`` when the Runtime gave no deltas for a call)."""

    id: str
    model: str
    stop_sequences: Sequence[str] | None = None
    _index: int = -1  # the open block's index; -1: none open yet
    _open: str | None = None  # "thinking", "text" or "tool_use:<n>"
    _calls: dict[int, str] = field(default_factory=dict)  # call index -> its toolu_ id
    _texts: dict[int, str] = field(default_factory=dict)  # call index -> its arguments

    def start(self) -> list[tuple[str, JSON]]:
        """message_start (an empty message; usage is known at the end) and a ping."""
        head = {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [_event("message_start", message=head), _event("ping")]

    def event(self, chunk: Chunk) -> list[tuple[str, JSON]]:
        """The events one chunk gives (none for a chunk that carries nothing)."""
        out: list[tuple[str, JSON]] = []
        if chunk.thinking:
            out += self._switch("thinking", {"type": "thinking", "thinking": "",
                                             "signature": ""})
            out.append(self._delta({"type": "thinking_delta", "thinking": chunk.thinking}))
        if chunk.text:
            out += self._switch("text", {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": chunk.text}))
        for d in chunk.tool_call_deltas or ():
            out += self._call_delta(d)
        if chunk.done:
            out += self._finish(chunk)
        return out

    def _call_delta(self, d: ToolCallDelta) -> list[tuple[str, JSON]]:
        out: list[tuple[str, JSON]] = []
        if d.index not in self._calls:
            self._calls[d.index] = d.id or new_id("toolu_")
            out += self._switch(f"tool_use:{d.index}", {
                "type": "tool_use", "id": self._calls[d.index], "name": d.name, "input": {}})
        elif self._open != f"tool_use:{d.index}":
            raise LocallamaError("the runtime went back to a tool call it had left")
        if d.arguments:
            self._texts[d.index] = self._texts.get(d.index, "") + d.arguments
            out.append(self._delta({"type": "input_json_delta", "partial_json": d.arguments}))
        return out

    def _finish(self, final: Chunk) -> list[tuple[str, JSON]]:
        out: list[tuple[str, JSON]] = []
        for index, call in enumerate(final.tool_calls or ()):
            if index in self._calls:
                continue  # streamed already, as it formed
            out += self._call_delta(ToolCallDelta(index, call.id, call.name))
            out += self._call_delta(ToolCallDelta(index, arguments=json.dumps(call.arguments)))
        out += self._close()
        reason, sequence = stop_reason(final, bool(self._calls), self.stop_sequences)
        out.append(_event("message_delta", delta={"stop_reason": reason,
                                                  "stop_sequence": sequence},
                          usage=usage(final)))
        out.append(_event("message_stop"))
        return out

    def _switch(self, kind: str, block: JSON) -> list[tuple[str, JSON]]:
        """Open a block of ``kind`` unless it is the open one (closing that first)."""
        if self._open == kind:
            return []
        out = self._close()
        self._index += 1
        self._open = kind
        out.append(_event("content_block_start", index=self._index, content_block=block))
        return out

    def _close(self) -> list[tuple[str, JSON]]:
        if self._open is None:
            return []
        out = []
        if self._open == "thinking":  # Anthropic signs reasoning; there is nothing to sign
            out.append(self._delta({"type": "signature_delta", "signature": ""}))
        out.append(_event("content_block_stop", index=self._index))
        self._open = None
        return out

    def _delta(self, delta: JSON) -> tuple[str, JSON]:
        return _event("content_block_delta", index=self._index, delta=delta)


def _event(name: str, **data: Any) -> tuple[str, JSON]:
    return name, {"type": name, **data}


# -- errors ----------------------------------------------------------------------------------


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for a status: its table, else "api_error" for a 5xx
    and "invalid_request_error" for any other 4xx."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(message: str, status: int) -> JSON:
    """``{"type": "error", "error": {"type", "message"}}`` for an error answered with
    ``status`` (also the data of a mid-stream ``error`` event); the message capped
    (``errors.capped``)."""
    return {"type": "error", "error": {"type": error_type(status), "message": capped(message)}}


def typed_error_body(exc: LocallamaError, status: int) -> JSON:
    """``error_body`` for a typed error."""
    return error_body(exc.message, status)
