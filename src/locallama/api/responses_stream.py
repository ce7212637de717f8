"""The OpenAI Responses API's answers: the Runtime's chunks as a ``response`` object and
as its server-sent events.  Pure: no HTTP, no Runtime calls, no store; the request's
side is ``api/responses.py``.

Spec: https://platform.openai.com/docs/api-reference/responses/object and
https://platform.openai.com/docs/api-reference/responses-streaming (field names and
shapes as the ``openai`` SDK's ``types/responses`` define them).

One state machine (``ResponseStream``) serves both ways of answering: fed chunk by
chunk it gives the stream's events, and at the end the whole ``response`` object, so a
streamed and an unstreamed answer cannot differ.  Output items open as the chunks
ask for them, one at a time, in the order the model writes:

* ``Chunk.thinking`` -> a ``reasoning`` item (``rs_…``) with one ``reasoning_text``
  content part (``response.reasoning_text.delta`` / ``.done``), ``summary`` empty;
* ``Chunk.text`` -> a ``message`` item (``msg_…``, role assistant) with one
  ``output_text`` part (``response.output_text.delta`` / ``.done``);
* ``Chunk.tool_call_deltas`` -> a ``function_call`` item (``fc_…``) per call index,
  its ``call_id`` the call's id (``call_…``) and its arguments streamed
  (``response.function_call_arguments.delta`` / ``.done``); the final chunk's
  ``tool_calls`` add the calls no delta announced, and fill in arguments no delta sent.

Each item is announced (``response.output_item.added``, ``response.content_part.added``)
when it opens and finished (``.done`` events) when another opens or the answer ends.
The stream starts with ``response.created`` and ``response.in_progress`` and ends with
``response.completed``, or ``response.incomplete`` (``incomplete_details.reason``
"max_output_tokens") when the Runtime stopped at its token limit; an error after the
start is an ``error`` event and then ``response.failed``.  Every event carries ``type``
and a ``sequence_number`` counting from 0.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import Any

from locallama.errors import LocallamaError, capped
from locallama.runtime.types import Chunk, ToolCall, ToolCallDelta

JSON = dict[str, Any]


def new_id(prefix: str) -> str:
    """A fresh id: ``prefix`` ("resp_", "msg_", "fc_", "rs_", "call_") and 48 hex digits."""
    return f"{prefix}{secrets.token_hex(24)}"


def usage(final: Chunk | None, reasoning_tokens: int) -> JSON:
    """The ``usage`` object from the final chunk: input_tokens the whole prompt
    (``prompt_tokens``), of which ``cached_tokens`` came from the prompt cache (not
    evaluated again), output_tokens the generated tokens, of which ``reasoning_tokens``
    were thinking."""
    prompt = final.prompt_tokens if final else 0
    output = final.eval_count if final else 0
    cached = max(0, prompt - final.prompt_eval_count) if final else 0
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": min(reasoning_tokens, output)},
            "total_tokens": prompt + output}


def deleted(response_id: str) -> JSON:
    """The answer to ``DELETE /v1/responses/{id}``."""
    return {"id": response_id, "object": "response", "deleted": True}


class _Item:
    """One output item while it forms: its JSON and the text of its content part."""

    def __init__(self, index: int, item: JSON) -> None:
        self.index = index
        self.item = item
        self.text = ""  # the content part's text, or a function call's arguments
        self.closed = False

    @property
    def id(self) -> str:
        return self.item["id"]

    @property
    def kind(self) -> str:
        return self.item["type"]

    def part(self) -> JSON:
        """Its content part now (message: output_text; reasoning: reasoning_text)."""
        if self.kind == "message":
            return {"type": "output_text", "text": self.text, "annotations": [],
                    "logprobs": []}
        return {"type": "reasoning_text", "text": self.text}


class ResponseStream:
    """Chunks in, events and the ``response`` object out (see the module docstring).

    ``response`` holds the fields the answer echoes from its request (model,
    instructions, tools, tool_choice, temperature, ..., from ``response_fields``); an
    id and ``created_at`` are added here.  Call ``start`` first, ``feed`` every chunk
    (the last one ``done``), then ``response``; or ``fail`` on an error."""

    def __init__(self, fields: JSON) -> None:
        self.id = new_id("resp_")
        self.created_at = int(time.time())
        self.fields = fields
        self.sequence = 0
        self.items: list[_Item] = []
        self.current: _Item | None = None
        self.calls: dict[int, _Item] = {}  # a tool call's index -> its item
        self.final: Chunk | None = None
        self.reasoning_tokens = 0
        self.status = "in_progress"
        self.error: JSON | None = None

    # -- the response object -----------------------------------------------------------

    def response(self) -> JSON:
        """The ``response`` object as it stands: while streaming ``in_progress``, after
        the final chunk ``completed`` or ``incomplete``, after ``fail`` ``failed``."""
        incomplete = None
        if self.status == "incomplete":
            incomplete = {"reason": "max_output_tokens"}
        done = self.status in ("completed", "incomplete", "failed")
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": self.status, "error": self.error, "incomplete_details": incomplete,
            **copy.deepcopy(self.fields),
            "output": [copy.deepcopy(i.item) for i in self.items],
            "usage": usage(self.final, self.reasoning_tokens) if done else None,
            "completed_at": int(time.time()) if self.status == "completed" else None,
        }

    # -- events ------------------------------------------------------------------------

    def start(self) -> list[JSON]:
        """``response.created`` and ``response.in_progress``."""
        return [self._event("response.created", response=self.response()),
                self._event("response.in_progress", response=self.response())]

    def feed(self, chunk: Chunk) -> list[JSON]:
        """The events for one chunk: its thinking, text and tool-call deltas, in that
        order; for the final chunk also its tool calls, the open item's end and
        ``response.completed`` / ``response.incomplete``."""
        events: list[JSON] = []
        if chunk.thinking:
            self.reasoning_tokens += 1  # LocalRuntime streams one chunk per token
            events += self._write("reasoning", chunk.thinking)
        if chunk.text:
            events += self._write("message", chunk.text)
        for delta in chunk.tool_call_deltas or ():
            events += self._delta(delta)
        if chunk.done:
            events += self._finish(chunk)
        return events

    def fail(self, exc: LocallamaError, status: int) -> list[JSON]:
        """An ``error`` event and ``response.failed`` for an error after the start;
        ``status`` is the HTTP status the error would have had before it."""
        code = "server_error" if status >= 500 else "invalid_prompt"
        message = capped(exc.message)
        self.status = "failed"
        self.error = {"code": code, "message": message}
        return [self._event("error", code=exc.code, message=message,
                            param=getattr(exc, "param", None)),
                self._event("response.failed", response=self.response())]

    def _event(self, kind: str, **fields: Any) -> JSON:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _where(self, item: _Item) -> JSON:
        return {"item_id": item.id, "output_index": item.index}

    def _open(self, item: JSON) -> tuple[_Item, list[JSON]]:
        events = self._close()
        opened = _Item(len(self.items), item)
        self.items.append(opened)
        self.current = opened
        events.append(self._event("response.output_item.added", output_index=opened.index,
                                  item=copy.deepcopy(item)))
        if opened.kind in ("message", "reasoning"):
            events.append(self._event("response.content_part.added", **self._where(opened),
                                      content_index=0, part=opened.part()))
        return opened, events

    def _write(self, kind: str, text: str) -> list[JSON]:
        events: list[JSON] = []
        item = self.current
        if item is None or item.kind != kind:
            if kind == "message":
                fields: JSON = {"type": "message", "id": new_id("msg_"), "status": "in_progress",
                                "role": "assistant", "content": []}
            else:
                fields = {"type": "reasoning", "id": new_id("rs_"), "summary": [],
                          "content": [], "status": "in_progress"}
            item, events = self._open(fields)
        item.text += text
        name = "response.output_text.delta" if kind == "message" \
            else "response.reasoning_text.delta"
        extra = {"logprobs": []} if kind == "message" else {}
        events.append(self._event(name, **self._where(item), content_index=0, delta=text,
                                  **extra))
        return events

    def _delta(self, delta: ToolCallDelta) -> list[JSON]:
        events: list[JSON] = []
        item = self.calls.get(delta.index)
        if item is None:
            item, events = self._open({
                "type": "function_call", "id": new_id("fc_"),
                "call_id": delta.id or new_id("call_"), "name": delta.name,
                "arguments": "", "status": "in_progress"})
            self.calls[delta.index] = item
        elif delta.name and not item.item["name"]:
            item.item["name"] = delta.name
        if delta.arguments:
            item.text += delta.arguments
            events.append(self._event("response.function_call_arguments.delta",
                                      **self._where(item), delta=delta.arguments))
        return events

    def _finish(self, final: Chunk) -> list[JSON]:
        events: list[JSON] = []
        for index, call in enumerate(final.tool_calls or ()):
            events += self._complete_call(index, call)
        self.final = final
        self.status = "incomplete" if final.done_reason == "length" else "completed"
        events += self._close(self.status)
        name = "response.completed" if self.status == "completed" else "response.incomplete"
        events.append(self._event(name, response=self.response()))
        return events

    def _complete_call(self, index: int, call: ToolCall) -> list[JSON]:
        """A final tool call: a new item when no delta announced it; its arguments when
        no delta sent any."""
        events: list[JSON] = []
        item = self.calls.get(index)
        if item is None:
            events = self._delta(ToolCallDelta(index, call.id, call.name))
            item = self.calls[index]
        if not item.text:
            events += self._delta(ToolCallDelta(index, arguments=json.dumps(call.arguments)))
        if not item.item["name"]:
            item.item["name"] = call.name
        return events

    def _close(self, status: str = "completed") -> list[JSON]:
        """The end of the open item, if any: its ``.done`` events, the item complete."""
        item, self.current = self.current, None
        if item is None or item.closed:
            return []
        item.closed = True
        where = self._where(item)
        events = []
        if item.kind == "function_call":
            item.item.update(arguments=item.text, status=status)
            events.append(self._event("response.function_call_arguments.done", **where,
                                      name=item.item["name"], arguments=item.text))
        else:
            part = item.part()
            done = "response.output_text.done" if item.kind == "message" \
                else "response.reasoning_text.done"
            extra = {"logprobs": []} if item.kind == "message" else {}
            events.append(self._event(done, **where, content_index=0, text=item.text, **extra))
            events.append(self._event("response.content_part.done", **where, content_index=0,
                                      part=part))
            item.item.update(content=[part], status=status)
        events.append(self._event("response.output_item.done", output_index=item.index,
                                  item=copy.deepcopy(item.item)))
        return events
