"""Tool calls: find them in a model's output as the Runtime's ``ToolCall``.

Models write tool calls in a few conventions; all carry a JSON object with a
function name and its arguments:

* ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen)
* ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}]`` (Mistral)
* a bare JSON object or list of them, with ``arguments`` or ``parameters``
  (Llama 3.1 and others)

The result is ``(content, tool_calls)``: the text with the calls removed, and a
``ToolCall`` (name, arguments) for each call found.
"""

from __future__ import annotations

import json
import re
from typing import Any

from locallama.runtime.types import ToolCall

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def parse_tool_calls(text: str, known: set[str] | None = None) -> tuple[str, list[ToolCall]]:
    """Split model output into plain content and tool calls (names limited to ``known``)."""
    calls: list[ToolCall] = []
    content = text
    tagged = _TAGGED.findall(text)
    if tagged:
        for body in tagged:
            calls += _calls_from(_loads(body))
        content = _TAGGED.sub("", text)
    else:
        stripped = text.strip()
        if stripped.startswith("[TOOL_CALLS]"):
            stripped = stripped[len("[TOOL_CALLS]"):].strip()
        start = next((i for i, ch in enumerate(stripped) if ch in "[{"), None)
        if start is not None:
            value, end = _raw_decode(stripped[start:])
            found = _calls_from(value)
            if found:
                calls = found
                content = stripped[:start] + stripped[start + end:]
    if known is not None:
        calls = [c for c in calls if c.name in known]
    if not calls:
        return text, []
    return content.strip(), calls


def _calls_from(value: Any) -> list[ToolCall]:
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("function"), dict):
            item = item["function"]
        name = item.get("name")
        arguments = item.get("arguments", item.get("parameters", {}))
        if isinstance(arguments, str):
            arguments = _loads(arguments) or {}
        if isinstance(name, str) and isinstance(arguments, dict):
            calls.append(ToolCall(name, arguments))
    return calls


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _raw_decode(text: str) -> tuple[Any, int]:
    try:
        return json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return None, 0


def template_supports_tools(source: str | None) -> bool:
    """A template can show tools to the model only if it reads them."""
    return bool(source) and "tools" in source
