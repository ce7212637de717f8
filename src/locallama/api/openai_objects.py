"""The OpenAI API's answers: the Runtime's chunks and records as the objects the OpenAI
API reference documents.  Pure: no HTTP, no Runtime calls (``server/openai_api.py``
calls the Runtime and hands the chunks here); the requests' side is ``api/openai.py``.

* Chat Completions: ``chat_completion`` (the ``chat.completion`` object) and
  ``ChatStream`` (its ``chat.completion.chunk`` events).
* Completions: ``text_completion`` and ``CompletionStream`` (``text_completion``
  objects, with the completions' own logprobs shape and ``text_offset``).
* Embeddings: ``embedding_list``; Models: ``model_object``, ``model_list``.
* Errors: ``error_body`` (a typed error) and ``invalid_body`` (a body that failed
  validation), both ``{"error": {message, type, param, code}}``.

Conventions every answer keeps:

* A logprob of nan (no value: a prompt's first token) is null, -inf is -9999
  (``api/common.finite_logprob``).
* ``finish_reason``: "length" when the Runtime stopped at num_predict or the
  context (a tool call too may be cut there), "tool_calls" when a chat answer's
  final chunk calls tools, else "stop".
* ``usage``: a prompt counts once however many choices (``n``) it has; every
  choice's generated tokens count.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from locallama.api.common import finite_logprob
from locallama.api.openai import Run
from locallama.errors import LocallamaError, ModelNotFound, capped
from locallama.runtime.types import (
    Chunk,
    GenerateRequest,
    ModelEntry,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
)

#: ``system_fingerprint``: one value, as the backend configuration does not vary
FINGERPRINT = "fp_locallama"

JSON = dict[str, Any]


def new_id(prefix: str) -> str:
    """A fresh id: ``prefix`` ("chatcmpl-", "cmpl-", "call_") and 24 hex digits."""
    return f"{prefix}{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Head:
    """The fields every object of one answer shares: one id and one creation time
    (Unix seconds) for the whole answer, however many events a stream sends."""

    id: str
    created: int
    model: str  # as the request named it

    @classmethod
    def new(cls, prefix: str, model: str) -> Head:
        """A head for a new answer: a fresh id with ``prefix``, created now."""
        return cls(new_id(prefix), int(time.time()), model)

    def json(self, kind: str) -> JSON:
        """The shared fields, with ``object`` set to ``kind``."""
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": FINGERPRINT}


@dataclass
class Usage:
    """Token counts of an answer, summed over its choices as OpenAI counts them."""

    prompts: dict[int, int] = field(default_factory=dict)  # prompt index -> its tokens
    cached: dict[int, int] = field(default_factory=dict)  # ... -> of those from a cache
    completion: int = 0
    drafted: int = 0  # speculative decoding: tokens drafted ...
    accepted: int = 0  # ... and accepted

    def add(self, final: Chunk, prompt_index: int = 0) -> None:
        """Count one choice from its final chunk (``prompt_tokens``, ``eval_count``);
        choices of one prompt share it, so it counts once, and its cached part is the
        least any of its choices found cached (``prompt_tokens - prompt_eval_count``)."""
        self.prompts[prompt_index] = max(self.prompts.get(prompt_index, 0),
                                         final.prompt_tokens)
        cached = max(0, final.prompt_tokens - final.prompt_eval_count)
        self.cached[prompt_index] = min(self.cached.get(prompt_index, cached), cached)
        self.completion += final.eval_count
        self.drafted += final.draft_n
        self.accepted += final.draft_n_accepted

    def json(self) -> dict[str, Any]:
        """``{"prompt_tokens", "completion_tokens", "total_tokens",
        "prompt_tokens_details": {"cached_tokens"}}``: cached tokens are the prompt's
        tokens reused from a KV cache (the slot's own or copied from another slot)
        rather than evaluated, as OpenAI's prompt caching reports them.  Where
        speculative decoding drafted tokens, ``completion_tokens_details`` counts them
        as OpenAI's predicted outputs do (``accepted_prediction_tokens``,
        ``rejected_prediction_tokens``)."""
        prompt = sum(self.prompts.values())
        out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": self.completion,
                               "total_tokens": prompt + self.completion,
                               "prompt_tokens_details": {"cached_tokens":
                                                         sum(self.cached.values())}}
        if self.drafted:
            out["completion_tokens_details"] = {
                "accepted_prediction_tokens": self.accepted,
                "rejected_prediction_tokens": self.drafted - self.accepted}
        return out


def finish_reason(final: Chunk) -> str:
    """"length" when the Runtime stopped at a limit, else "stop" (a stop string, the
    end of the answer, or a cancel)."""
    return "length" if final.done_reason == "length" else "stop"


def chat_finish_reason(final: Chunk, called: bool) -> str:
    """A chat answer's finish_reason: "length" when it stopped at a limit, even inside
    or after a tool call (a call cut there is not whole; llama-server says "length"
    too), else "tool_calls" when it called tools, else ``finish_reason``."""
    if called and final.done_reason != "length":
        return "tool_calls"
    return finish_reason(final)


# -- chat -----------------------------------------------------------------------------------


def tool_calls(calls: Sequence[ToolCall] | None) -> list[JSON]:
    """The Runtime's tool calls as OpenAI's: each with its id (a new "call_…" where the
    call has none), type "function", and its arguments as a JSON string."""
    return [{"id": c.id or new_id("call_"), "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in calls or ()]


def tool_call_deltas(deltas: Sequence[ToolCallDelta], started: set[int]) -> list[JSON]:
    """Streamed ``delta.tool_calls`` items: a call's first (``index``, ``id``, type
    "function", ``function: {name, arguments: ""}``), then its argument fragments
    (``index``, ``function: {arguments}``). ``started``: indexes already announced
    (updated)."""
    out: list[JSON] = []
    for d in deltas:
        if d.index not in started and (d.id or d.name):
            started.add(d.index)
            out.append({"index": d.index, "id": d.id or new_id("call_"), "type": "function",
                        "function": {"name": d.name, "arguments": ""}})
        if d.arguments:
            out.append({"index": d.index, "function": {"arguments": d.arguments}})
    return out


def token_logprob(t: TokenLogprob) -> JSON:
    """One item of a chat choice's ``logprobs.content``: token, logprob, bytes (UTF-8
    values) and ``top_logprobs`` (the alternatives, most likely first)."""
    return {"token": t.token, "logprob": finite_logprob(t.logprob), "bytes": t.bytes,
            "top_logprobs": [{"token": a.token, "logprob": finite_logprob(a.logprob),
                              "bytes": a.bytes} for a in t.top]}


def chat_completion(head: Head, answers: Sequence[Sequence[Chunk]], logprobs: bool) -> JSON:
    """A ``chat.completion`` object: choice i is answer i (the chunks of one Runtime
    stream, ending with its final chunk), its message the joined text; ``content`` is
    null when the answer is only tool calls.  With ``logprobs`` each choice carries
    ``{"content": [token_logprob...], "refusal": null}``, else null."""
    usage, choices = Usage(), []
    for index, chunks in enumerate(answers):
        final = chunks[-1]
        calls = tool_calls(final.tool_calls)
        text = "".join(c.text for c in chunks)
        message: JSON = {"role": "assistant", "content": text if text or not calls else None,
                         "refusal": None}
        if thinking := "".join(c.thinking for c in chunks):
            message["reasoning_content"] = thinking  # llama-server's and vLLM's field
        if calls:
            message["tool_calls"] = calls
        content = None
        if logprobs:
            content = {"content": [token_logprob(t) for c in chunks for t in c.logprobs or ()],
                       "refusal": None}
        choices.append({"index": index, "message": message, "logprobs": content,
                        "finish_reason": chat_finish_reason(final, bool(calls))})
        usage.add(final)
    return {**head.json("chat.completion"), "choices": choices, "usage": usage.json()}


class ChatStream:
    """The ``chat.completion.chunk`` events of a streamed chat answer, its choices one
    after another.  Per choice: ``start`` (a delta with the role and empty content),
    ``event`` for each chunk (a delta with its ``content``, its thinking as
    ``reasoning_content`` and its tool calls as they form in ``tool_calls``, see
    ``tool_call_deltas``; on the final chunk the rest, any call not streamed before
    whole, and the finish_reason, "tool_calls" when the answer called tools), then
    after every choice ``end``: with ``include_usage``, an event with no choices and
    the usage (every other event then carries ``usage: null``)."""

    def __init__(self, head: Head, logprobs: bool, include_usage: bool) -> None:
        self.head = head.json("chat.completion.chunk")
        if include_usage:
            self.head["usage"] = None
        self.logprobs = logprobs
        self.include_usage = include_usage
        self.usage = Usage()
        self._started: set[int] = set()  # tool calls announced in this choice

    def start(self, index: int) -> JSON:
        """The first event of choice ``index``."""
        self._started = set()
        return self._event(index, {"role": "assistant", "content": ""})

    def event(self, index: int, chunk: Chunk) -> JSON | None:
        """The event for one chunk of choice ``index``, or None when it carries nothing."""
        delta: JSON = {}
        if chunk.text or (chunk.logprobs and not chunk.done):
            delta["content"] = chunk.text
        if chunk.thinking:
            delta["reasoning_content"] = chunk.thinking
        calls = tool_call_deltas(chunk.tool_call_deltas or (), self._started)
        if not chunk.done:
            if calls:
                delta["tool_calls"] = calls
            return self._event(index, delta, chunk) if delta or chunk.logprobs else None
        whole = [(i, call) for i, call in enumerate(tool_calls(chunk.tool_calls))
                 if i not in self._started]
        calls += [{"index": i, **call} for i, call in whole]
        if calls:
            delta["tool_calls"] = calls
        self.usage.add(chunk)
        called = bool(chunk.tool_calls or self._started)
        return self._event(index, delta, chunk, chat_finish_reason(chunk, called))

    def end(self) -> JSON | None:
        """The usage event (``choices: []``) when it was asked for, else None."""
        if not self.include_usage:
            return None
        return {**self.head, "choices": [], "usage": self.usage.json()}

    def _event(self, index: int, delta: JSON, chunk: Chunk | None = None,
               finish: str | None = None) -> JSON:
        content = None
        if chunk is not None and chunk.logprobs and self.logprobs:
            content = {"content": [token_logprob(t) for t in chunk.logprobs], "refusal": None}
        return {**self.head, "choices": [{"index": index, "delta": delta, "logprobs": content,
                                          "finish_reason": finish}]}


# -- completions ------------------------------------------------------------------------------


def echo(prompt: str | list[int], request: GenerateRequest, first: Chunk
         ) -> tuple[str, list[TokenLogprob], int]:
    """What goes before a completion's text: with ``echo`` the prompt (a prompt of ids
    spelled by its scored tokens), its scored tokens (``first.prompt_logprobs``) and
    offset 0; without, nothing and the prompt's length, where the text's offsets start."""
    scores = list(first.prompt_logprobs or ())
    text = prompt if isinstance(prompt, str) else "".join(t.token for t in scores)
    if request.echo:
        return text, scores, 0
    return "", [], len(text)


def text_logprobs(tokens: Sequence[TokenLogprob], offset: int) -> tuple[JSON, int]:
    """The completions' logprobs shape for ``tokens``, and the offset after them.

    Parallel lists: ``tokens``, ``token_logprobs`` (null for a token without a value),
    ``top_logprobs`` (a ``{token: logprob}`` dict holding the k alternatives and the
    chosen token, so up to k + 1 entries; null where the token has no value) and
    ``text_offset`` (each token's start in the choice's text, from ``offset``)."""
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                 "text_offset": []}
    for t in tokens:
        logprob = finite_logprob(t.logprob)
        top = None
        if logprob is not None:
            top = {}
            for a in t.top:
                top.setdefault(a.token, finite_logprob(a.logprob))
            top.setdefault(t.token, logprob)
        out["tokens"].append(t.token)
        out["token_logprobs"].append(logprob)
        out["top_logprobs"].append(top)
        out["text_offset"].append(offset)
        offset += len(t.token)
    return out, offset


def text_completion(head: Head, answers: Sequence[tuple[Run, Sequence[Chunk]]]) -> JSON:
    """A ``text_completion`` object: choice i is answer i, a run (``api/openai.Run``)
    and its chunks ending with the final chunk.  Each choice's text is the echoed
    prompt (with ``echo``) and the completion; ``logprobs`` (when the run asked) covers
    both.  Usage counts each prompt once."""
    usage, choices = Usage(), []
    for index, (run, chunks) in enumerate(answers):
        text, tokens, offset = echo(run.prompt, run.request, chunks[0])
        tokens += [t for c in chunks for t in c.logprobs or ()]
        logprobs = text_logprobs(tokens, offset)[0] if run.request.logprobs else None
        choices.append({"text": text + "".join(c.text for c in chunks), "index": index,
                        "logprobs": logprobs, "finish_reason": finish_reason(chunks[-1])})
        usage.add(chunks[-1], run.prompt_index)
    return {**head.json("text_completion"), "choices": choices, "usage": usage.json()}


class CompletionStream:
    """The ``text_completion`` events of a streamed completion, its choices one after
    another: ``start`` a choice, ``event`` for each of its chunks (the first carries the
    echoed prompt; a chunk with no text, no tokens and not final sends nothing; the
    final one the finish_reason), and after every choice ``end``: with
    ``include_usage``, an event with no choices and the usage."""

    def __init__(self, head: Head, include_usage: bool) -> None:
        self.head = head.json("text_completion")
        if include_usage:
            self.head["usage"] = None
        self.include_usage = include_usage
        self.usage = Usage()
        self._index, self._run = 0, None
        self._offset, self._started = 0, False

    def start(self, index: int, run: Run) -> None:
        """Choice ``index`` follows, answering ``run``."""
        self._index, self._run = index, run
        self._offset, self._started = 0, False

    def event(self, chunk: Chunk) -> JSON | None:
        """The event for one chunk of the current choice, or None when it carries nothing."""
        run = self._run
        if run is None:
            raise RuntimeError("CompletionStream.event before start")
        text, tokens = "", []
        if not self._started:
            text, tokens, self._offset = echo(run.prompt, run.request, chunk)
            self._started = True
        text += chunk.text
        tokens += chunk.logprobs or ()
        logprobs = None
        if run.request.logprobs and tokens:
            logprobs, self._offset = text_logprobs(tokens, self._offset)
        if chunk.done:
            self.usage.add(chunk, run.prompt_index)
        elif not (text or tokens):
            return None
        return {**self.head, "choices": [{
            "text": text, "index": self._index, "logprobs": logprobs,
            "finish_reason": finish_reason(chunk) if chunk.done else None}]}

    def end(self) -> JSON | None:
        """The usage event (``choices: []``) when it was asked for, else None."""
        if not self.include_usage:
            return None
        return {**self.head, "choices": [], "usage": self.usage.json()}


# -- embeddings and models ---------------------------------------------------------------------


def embedding_list(model: str, vectors: Sequence[Sequence[float]], prompt_tokens: int,
                   encoding_format: str | None = "float") -> JSON:
    """The embeddings answer: a ``list`` of ``embedding`` objects, item i for input i;
    each vector as floats, or with ``encoding_format`` "base64" as the base64 of its
    little-endian float32 values (what the SDKs send by default).  Usage counts the
    input's tokens (no completion)."""
    data = []
    for i, vector in enumerate(vectors):
        embedding: Any = list(vector)
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def model_object(entry: ModelEntry) -> JSON:
    """A ``model`` object: id the full name (``tiny:latest``), created the store's
    modification time (Unix seconds), owned_by the namespace (``library``); a broken
    model adds ``broken`` (ours: why it cannot be used)."""
    model: JSON = {"id": entry.name.display, "object": "model",
                   "created": int(entry.modified.timestamp()),
                   "owned_by": entry.name.namespace}
    if entry.broken:
        model["broken"] = entry.broken
    return model


def model_list(entries: Sequence[ModelEntry]) -> JSON:
    """GET /v1/models: a ``list`` of model objects."""
    return {"object": "list", "data": [model_object(e) for e in entries]}


# -- errors ----------------------------------------------------------------------------------------


def error_type(status: int) -> str:
    """OpenAI's error ``type``: "server_error" for a fault of the server (5xx, but not
    501, which says a request asks for what is not built), else "invalid_request_error"."""
    return "server_error" if status >= 500 and status != 501 else "invalid_request_error"


def error_body(exc: LocallamaError, status: int) -> JSON:
    """A typed error answered with ``status``: its message capped (``errors.capped``),
    ``param`` the field to blame ("model" for an unknown model), ``code`` the error's."""
    param = getattr(exc, "param", None) or ("model" if isinstance(exc, ModelNotFound) else None)
    return {"error": {"message": capped(exc.message), "type": error_type(status),
                      "param": param, "code": exc.code}}


def invalid_body(message: str, param: str | None, code: str) -> JSON:
    """A body that failed validation (always a 400): type "invalid_request_error"."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}
