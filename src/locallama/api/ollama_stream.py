"""Ollama's API, a generate or chat answer: its stream lines <-> the Runtime's Chunks.

The server's Ollama face writes each chunk as one NDJSON line (``generate_line``,
``chat_line``; ``ChatLines`` for a chat, which sends each tool call whole on the line
where it completes); ``client.RemoteRuntime`` reads the lines back (``chunk_of``,
``chunks_of``), so a caller cannot tell a remote Runtime from a local one.  An answer
sent whole (``stream`` false) is the same line made of the joined chunks.  The other
answers (records, progress, errors) and the wire's conventions are in
``api/ollama_answers.py``; the requests in ``api/ollama.py``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import Any

from locallama.api.common import finite_logprob, read_logprob
from locallama.api.ollama import tool_calls_json, tool_calls_of
from locallama.api.ollama_answers import timestamp
from locallama.runtime.types import Chunk, TokenLogprob, ToolCall, ToolCallDelta

# -- generate and chat: one line per chunk -------------------------------------------------


def generate_line(model: str, chunk: Chunk, context: bool = True) -> dict[str, Any]:
    """One /api/generate line (or, with every chunk joined, the whole answer):
    ``{"model", "created_at", "response", "done"}`` plus the chunk's logprobs and, when
    done, ``done_reason`` and the counts; ``context`` (the token ids) only when asked
    for (a raw request has none)."""
    out: dict[str, Any] = {"model": model, "created_at": timestamp(), "response": chunk.text}
    if chunk.thinking:
        out["thinking"] = chunk.thinking
    out["done"] = chunk.done
    return _chunk_fields(out, chunk, context)


def chat_line(model: str, chunk: Chunk, first_call: int = 0) -> dict[str, Any]:
    """One /api/chat line: ``{"model", "created_at", "message": {"role": "assistant",
    "content", "thinking"?, "tool_calls"?}, "done"}`` plus the fields ``generate_line``
    adds (never ``context``); the chunk's tool calls are numbered from ``first_call``."""
    message: dict[str, Any] = {"role": "assistant", "content": chunk.text}
    if chunk.thinking:
        message["thinking"] = chunk.thinking
    if chunk.tool_calls:
        message["tool_calls"] = tool_calls_json(chunk.tool_calls, first_call)
    out = {"model": model, "created_at": timestamp(), "message": message,
           "done": chunk.done}
    return _chunk_fields(out, chunk, context=False)


class ChatLines:
    """A streamed chat's lines, as Ollama streams tool calls: each call whole, on the
    line where it completes (its arguments' JSON, sent as ``tool_call_deltas``, is
    whole), and on the final line only the calls not sent before. Call it with each
    chunk in order; for an answer sent whole, call it once with the joined chunk."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._forming: dict[int, ToolCall] = {}
        self._arguments: dict[int, str] = {}
        self._sent: set[int] = set()

    def __call__(self, chunk: Chunk) -> dict[str, Any]:
        ready: list[tuple[int, ToolCall]] = []
        for delta in chunk.tool_call_deltas or ():
            call = self._forming.setdefault(delta.index, ToolCall(delta.name, {}, delta.id))
            call.name, call.id = call.name or delta.name, call.id or delta.id
            text = self._arguments.get(delta.index, "") + delta.arguments
            self._arguments[delta.index] = text
            arguments = _json_object(text)
            if arguments is not None and delta.index not in self._sent:
                call.arguments = arguments
                ready.append((delta.index, call))
        if chunk.done:
            ready += [(i, c) for i, c in enumerate(chunk.tool_calls or ())
                      if i not in self._sent and i not in dict(ready)]
        self._sent.update(i for i, _ in ready)
        # each line's calls are consecutive: a call completes after the one before it
        first = ready[0][0] if ready else 0
        shown = dataclasses.replace(chunk, tool_calls=[c for _, c in ready] or None)
        return chat_line(self.model, shown, first)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def loaded_line(model: str, reason: str, chat: bool) -> dict[str, Any]:
    """The answer to an empty generate or chat: the model was loaded (``reason`` "load")
    or unloaded ("unload")."""
    if chat:
        return {"model": model, "created_at": timestamp(),
                "message": {"role": "assistant", "content": ""}, "done_reason": reason,
                "done": True}
    return {"model": model, "created_at": timestamp(), "response": "", "done": True,
            "done_reason": reason}


def _chunk_fields(out: dict[str, Any], chunk: Chunk, context: bool) -> dict[str, Any]:
    """Add a chunk's logprobs and, on the final chunk, done_reason and the counts."""
    if chunk.logprobs:
        out["logprobs"] = [_logprob_json(t) for t in chunk.logprobs]
    if chunk.prompt_logprobs:
        out["prompt_logprobs"] = [_logprob_json(t) for t in chunk.prompt_logprobs]
    if not chunk.done:
        return out
    out["done_reason"] = chunk.done_reason or "stop"
    if context and chunk.context is not None:
        out["context"] = chunk.context
    out |= {"total_duration": chunk.total_duration, "load_duration": chunk.load_duration,
            "prompt_eval_count": chunk.prompt_eval_count,
            "prompt_eval_duration": chunk.prompt_eval_duration,
            "eval_count": chunk.eval_count, "eval_duration": chunk.eval_duration,
            "prompt_tokens": chunk.prompt_tokens}
    if chunk.draft_n:  # speculative decoding's counts, llama-server's names
        out |= {"draft_n": chunk.draft_n, "draft_n_accepted": chunk.draft_n_accepted}
    if chunk.warnings:
        out["warnings"] = chunk.warnings
    return out


def _logprob_json(t: TokenLogprob) -> dict[str, Any]:
    out: dict[str, Any] = {"token": t.token, "logprob": finite_logprob(t.logprob),
                           "bytes": t.bytes}
    if t.top:
        out["top_logprobs"] = [{"token": a.token, "logprob": finite_logprob(a.logprob),
                                "bytes": a.bytes} for a in t.top]
    return out


def chunk_of(line: dict[str, Any], chat: bool) -> Chunk:
    """The chunk one generate (``chat`` False) or chat line carries: the inverse of
    ``generate_line`` and ``chat_line``.  On the final line a missing ``prompt_tokens``
    (a real Ollama server's) is the context's length less the answer, else the prompt
    tokens evaluated."""
    part = (line.get("message") or {}) if chat else line
    text = part.get("content" if chat else "response") or ""
    thinking = part.get("thinking") or ""
    logprobs = _logprobs_of(line.get("logprobs"))
    prompt_logprobs = _logprobs_of(line.get("prompt_logprobs"))
    tool_calls = tool_calls_of(part.get("tool_calls")) or None
    if not line.get("done"):
        return Chunk(text=text, logprobs=logprobs, prompt_logprobs=prompt_logprobs,
                     tool_calls=tool_calls, thinking=thinking)
    context = line.get("context")
    eval_count = line.get("eval_count", 0)
    whole_prompt = len(context) - eval_count if context else line.get("prompt_eval_count", 0)
    return Chunk(
        text=text, thinking=thinking, done=True, done_reason=line.get("done_reason"),
        prompt_eval_count=line.get("prompt_eval_count", 0),
        prompt_eval_duration=line.get("prompt_eval_duration", 0),
        eval_count=eval_count, eval_duration=line.get("eval_duration", 0),
        load_duration=line.get("load_duration", 0),
        total_duration=line.get("total_duration", 0), context=context,
        logprobs=logprobs, prompt_logprobs=prompt_logprobs, tool_calls=tool_calls,
        prompt_tokens=line.get("prompt_tokens", whole_prompt),
        draft_n=line.get("draft_n", 0), draft_n_accepted=line.get("draft_n_accepted", 0),
        warnings=list(line.get("warnings") or []),
    )


def chunks_of(lines: Iterable[dict[str, Any]], chat: bool) -> Iterator[Chunk]:
    """A streamed answer's chunks, as the Runtime gives them: tool calls (which Ollama
    sends on earlier lines, each whole) ride on the final chunk, all of them, and each
    also arrives as a chunk's ``tool_call_deltas`` (id and name, then the arguments'
    JSON whole) where its line came.  Stops after the final chunk; the caller tells a
    stream that ended without one by the last chunk's ``done``."""
    tool_calls: list[ToolCall] = []
    for line in lines:
        chunk = chunk_of(line, chat)
        if chunk.done:
            chunk.tool_calls = (tool_calls + (chunk.tool_calls or [])) or None
            yield chunk
            return
        if chunk.tool_calls:
            deltas = []
            for call in chunk.tool_calls:
                index = len(tool_calls)
                deltas += [ToolCallDelta(index, id=call.id, name=call.name),
                           ToolCallDelta(index, arguments=json.dumps(call.arguments))]
                tool_calls.append(call)
            chunk.tool_calls, chunk.tool_call_deltas = None, deltas
        yield chunk


def _logprobs_of(items: list[dict[str, Any]] | None) -> list[TokenLogprob] | None:
    if items is None:
        return None
    return [TokenLogprob(token=item.get("token", ""), logprob=read_logprob(item.get("logprob")),
                         bytes=list(item.get("bytes") or []),
                         top=_logprobs_of(item.get("top_logprobs")) or [])
            for item in items]
