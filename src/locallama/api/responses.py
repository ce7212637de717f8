"""The OpenAI Responses API's request: the body of ``POST /v1/responses`` and its
translation into the Runtime's ``ChatRequest``.  Pure: no HTTP, no store
(``server/responses_api.py`` does those); the answers' side, Chunks to Response objects
and stream events, is ``api/responses_stream.py``.

Spec: https://platform.openai.com/docs/api-reference/responses/create (the field names
and shapes are those of the ``openai`` SDK's ``types/responses``).

What is translated:

* ``input``: a string (one user message) or a list of items: messages (role user,
  system, developer or assistant; content a string or parts ``input_text``,
  ``output_text``, ``refusal``, ``input_image`` as a base64 ``data:`` URL),
  ``function_call`` items (an assistant turn's tool calls; several in a row are one
  turn), ``function_call_output`` items (a tool turn, named after the call it answers)
  and ``reasoning`` items (their text becomes the next assistant turn's ``thinking``).
  Other item types (file search, computer use, item references, ...) are a 400 naming
  the item.
* ``instructions`` is a system message before everything else; a previous response's
  instructions are not carried over (as OpenAI documents).
* ``tools``: function tools only; ``tool_choice`` "auto" is the Runtime's None, "none"
  also hides the tools, "required" and ``{"type": "function", "name"}`` are passed on.
* ``temperature``, ``top_p``, ``max_output_tokens`` (``num_predict``), ``text.format``
  (json_schema: the schema; json_object: "json"), ``reasoning.effort`` (``think``:
  "none" is off, minimal/low "low", medium "medium", high/xhigh/max "high").
* ``options`` is not OpenAI's: Ollama options under the explicit fields, as on
  ``/v1/chat/completions``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from locallama.api.common import UnicodeBody, not_unicode_in
from locallama.errors import InvalidRequest
from locallama.runtime.types import ChatRequest, Message, Think, Tool, ToolCall

JSON = dict[str, Any]


class _Body(UnicodeBody):  # text that is not valid Unicode is refused (api/common.py)
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class FunctionTool(_Body):
    """``{"type": "function", name, description, parameters, strict}``."""

    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolChoiceFunction(_Body):
    type: Literal["function"]
    name: str = Field(min_length=1)


class TextFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(_Body):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(_Body):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponseCreate(_Body):
    """The body of ``POST /v1/responses`` (fields locallama does not use are ignored)."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = ""
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    stream: bool | None = False
    store: bool | None = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    options: dict[str, Any] | None = None  # Ollama options, under the fields above

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        """OpenAI's bounds: at most 16 pairs, keys up to 64 characters, values 512."""
        if value is None:
            return None
        if len(value) > 16:
            raise ValueError("metadata holds at most 16 key-value pairs")
        for key, item in value.items():
            if len(key) > 64 or len(item) > 512:
                raise ValueError("metadata keys are at most 64 characters, values 512")
        return value


def invalid(message: str, param: str | None = None) -> InvalidRequest:
    """An InvalidRequest naming the field (``param`` in OpenAI's error body)."""
    return InvalidRequest(message, param)


def input_items(body: ResponseCreate) -> list[JSON]:
    """The request's ``input`` as a list of items: a string is one user message item
    (``{"type": "message", "role": "user", "content": [{"type": "input_text", ...}]}``),
    a list is as sent.  These are what the store keeps as a response's input."""
    if isinstance(body.input, str):
        return [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": body.input}]}]
    return [dict(item) for item in body.input]


def think(reasoning: Reasoning | None) -> Think:
    """``reasoning.effort`` as the Runtime's ``think``: None when not given."""
    if reasoning is None or reasoning.effort is None:
        return None
    if reasoning.effort == "none":
        return False
    return {"minimal": "low", "low": "low", "medium": "medium"}.get(reasoning.effort, "high")


def chat_request(body: ResponseCreate, items: list[JSON]) -> ChatRequest:
    """The ChatRequest for ``body`` over ``items`` (a previous response's input and
    output items, then ``input_items(body)``): ``instructions`` first as a system
    message, then the items' messages (``messages_for_runtime``).  Raises
    InvalidRequest (``param`` naming the field) for a tool_choice naming no tool in
    ``tools``, a json_schema format without a schema, and what
    ``messages_for_runtime`` refuses."""
    messages = messages_for_runtime(items)
    if body.instructions:
        messages.insert(0, Message("system", body.instructions))
    if not messages:
        raise invalid("input must not be empty", "input")
    tools = [Tool(t.name, t.description, t.parameters) for t in body.tools or ()] or None
    choice = body.tool_choice
    tool_choice: str | None = None
    if isinstance(choice, ToolChoiceFunction):
        if not any(t.name == choice.name for t in tools or ()):
            raise invalid(f"tool_choice names {choice.name!r}, which is not in tools",
                          "tool_choice")
        tool_choice = choice.name
    elif choice == "none":
        tools, tool_choice = None, "none"
    elif choice == "required":
        if not tools:
            raise invalid("tool_choice 'required' needs tools", "tool_choice")
        tool_choice = "required"
    explicit = {"temperature": body.temperature, "top_p": body.top_p,
                "num_predict": body.max_output_tokens}
    options = {**(body.options or {}), **{k: v for k, v in explicit.items() if v is not None}}
    return ChatRequest(model=body.model, messages=messages, options=options,
                       format=text_format(body.text), tools=tools, think=think(body.reasoning),
                       tool_choice=tool_choice)


def response_fields(body: ResponseCreate) -> JSON:
    """The fields a ``response`` object echoes from its request: model, instructions,
    tools (function tools as sent), tool_choice ("auto" when not given),
    parallel_tool_calls, temperature and top_p (1.0 when not given, OpenAI's defaults),
    max_output_tokens, previous_response_id, metadata ({} when not given), reasoning,
    text (its format; ``{"type": "text"}`` when not given), store, truncation."""
    choice: Any = body.tool_choice or "auto"
    if isinstance(choice, ToolChoiceFunction):
        choice = {"type": "function", "name": choice.name}
    tools = [t.model_dump(exclude_none=True) for t in body.tools or ()]
    for tool in tools:
        tool.setdefault("strict", None)
    text: JSON = {"format": {"type": "text"}}
    if body.text and body.text.format:
        text = {"format": body.text.format.model_dump(by_alias=True, exclude_none=True)}
    reasoning = body.reasoning or Reasoning()
    return {
        "model": body.model, "instructions": body.instructions, "tools": tools,
        "tool_choice": choice, "parallel_tool_calls": body.parallel_tool_calls is not False,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "max_output_tokens": body.max_output_tokens,
        "previous_response_id": body.previous_response_id,
        "metadata": dict(body.metadata or {}),
        "reasoning": {"effort": reasoning.effort, "summary": reasoning.summary},
        "text": text, "store": body.store is not False, "truncation": "disabled",
        "background": False, "user": None,
    }


def text_format(text: TextConfig | None) -> str | dict[str, Any] | None:
    """``text.format`` as the Runtime's format: None for text, "json" for json_object,
    the schema for json_schema (a 400 when it has none)."""
    spec = text.format if text else None
    if spec is None or spec.type == "text":
        return None
    if spec.type == "json_object":
        return "json"
    if spec.schema_ is None:
        raise invalid("a json_schema text.format needs a schema", "text.format.schema")
    return spec.schema_


def messages_for_runtime(items: list[JSON]) -> list[Message]:
    """Input items -> the Runtime's messages (the module docstring lists the item types).

    A function_call joins the assistant turn just before it (its text, or other calls);
    a function_call_output is a tool message named after the call with its ``call_id``;
    a reasoning item's text (its ``content`` reasoning_text parts, else its ``summary``)
    is the ``thinking`` of the assistant turn that follows it.  Raises InvalidRequest
    naming the item (``input[i]...``) for what it cannot translate."""
    names: dict[str, str] = {}  # call_id -> function name
    messages: list[Message] = []
    thinking = ""  # a reasoning item's text, waiting for its assistant turn
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid("an input item must be an object", where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            message = _message(item, where)
            if message.role == "assistant" and thinking:
                message.thinking, thinking = thinking, ""
            messages.append(message)
        elif kind == "function_call":
            call = _function_call(item, where)
            names[str(item.get("call_id") or "")] = call.name
            last = messages[-1] if messages else None
            if last is None or last.role != "assistant":
                last = Message("assistant", thinking=thinking)
                thinking = ""
                messages.append(last)
            last.tool_calls.append(call)
        elif kind == "function_call_output":
            call_id = _text_field(item, "call_id", where)
            messages.append(Message("tool", _output_text(item.get("output"), f"{where}.output"),
                                    tool_name=names.get(call_id) or item.get("name") or None))
        elif kind == "reasoning":
            thinking += _reasoning_text(item)
        else:
            raise invalid(f"input item type {kind!r} is not supported: use message, "
                          "function_call, function_call_output or reasoning", f"{where}.type")
    return messages


# -- items ------------------------------------------------------------------------------------

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


def _message(item: JSON, where: str) -> Message:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(f"role must be one of {', '.join(_ROLES)}, not {role!r}", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return Message(_ROLES[role], content)
    if not isinstance(content, list):
        raise invalid("content must be a string or a list of content parts",
                      f"{where}.content")
    texts, images = [], []
    for k, part in enumerate(content):
        at = f"{where}.content[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            key = "refusal" if kind == "refusal" else "text"
            texts.append(_text_field(part, key, at))
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                images.append(url)  # fetched by the server (server/image_urls.py)
                continue
            if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
                raise invalid("images must be base64 data: URLs or http(s) URLs in image_url",
                              f"{at}.image_url")
            images.append(url.partition(",")[2])
        else:
            raise invalid(f"content part type {kind!r} is not supported: use input_text, "
                          "output_text or input_image", f"{at}.type")
    return Message(_ROLES[role], "\n".join(texts), images)


def _function_call(item: JSON, where: str) -> ToolCall:
    name = _text_field(item, "name", where)
    raw = item.get("arguments", "{}")
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise invalid("function call arguments must be a JSON object, as a string",
                      f"{where}.arguments")
    if reason := not_unicode_in(arguments, "arguments"):
        raise invalid(reason, f"{where}.arguments")
    return ToolCall(name, arguments, str(item.get("call_id") or ""))


def _output_text(output: Any, where: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for k, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
                raise invalid("a function call's output parts must be input_text",
                              f"{where}[{k}].type")
            texts.append(_text_field(part, "text", f"{where}[{k}]"))
        return "\n".join(texts)
    raise invalid("output must be a string or a list of input_text parts", where)


def _reasoning_text(item: JSON) -> str:
    parts = item.get("content") or item.get("summary") or []
    return "".join(p["text"] for p in parts
                   if isinstance(p, dict) and isinstance(p.get("text"), str))


def _text_field(item: JSON, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise invalid(f"{key} must be a string", f"{where}.{key}")
    return value
