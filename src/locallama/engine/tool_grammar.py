"""tool_choice by grammar: the model must call a tool, in its template's call format.

OpenAI's ``tool_choice`` (https://platform.openai.com/docs/api-reference/chat/create
#chat-create-tool_choice): "required" makes the model call one or more tools, a named
function makes it call exactly that one. Both become a GBNF grammar over the call
format the chat template teaches (``<tool_call>`` … ``</tool_call>`` for Hermes and
Qwen templates, ``[TOOL_CALLS] [...]`` for Mistral's, a bare JSON object otherwise),
whose JSON is ``{"name": NAME, "arguments": ARGS}`` with ARGS matching the tool's
parameters schema (converted by llama.cpp's JSON-schema converter, as
``grammar.py`` converts a ``format``). The name comes first, so a streamed call is
announced before its arguments.
"""

from __future__ import annotations

import json
from typing import Any

from locallama.errors import InvalidRequest
from locallama.runtime.types import Tool


def tool_choice_grammar(tools: list[Tool], choice: str, template_source: str | None = None
                        ) -> str:
    """GBNF for ``choice`` ("required" or a function's name) over ``tools``, in the call
    format of ``template_source``. InvalidRequest for a name no tool has, or a tool
    whose parameters schema the converter cannot use."""
    if choice == "required":
        chosen = tools
    else:
        chosen = [t for t in tools if t.name == choice]
        if not chosen:
            raise InvalidRequest(f"tool_choice names function {choice!r}, which is not among "
                                 "the tools", "tool_choice")
    calls = [_call_schema(t) for t in chosen]
    schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    rules = _convert(schema).replace("root ::=", "call ::=", 1)
    source = template_source or ""
    if "<tool_call>" in source:
        root = 'root ::= "<tool_call>\\n" call "\\n</tool_call>"'
    elif "[TOOL_CALLS]" in source:
        root = 'root ::= "[TOOL_CALLS] [" call "]"'
    else:
        root = "root ::= call"
    return root + "\n" + rules


def _call_schema(tool: Tool) -> dict[str, Any]:
    parameters = tool.parameters or {"type": "object"}
    return {"type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": parameters},
            "required": ["name", "arguments"], "additionalProperties": False}


def _convert(schema: dict[str, Any]) -> str:
    """GBNF for ``schema`` through ``schema_grammar`` (every string escaped, properties in
    order, the value last): the same converter as a request's ``format``."""
    from locallama.engine.schema_grammar import schema_to_gbnf

    try:
        return schema_to_gbnf(json.loads(json.dumps(schema)))  # a copy: it edits its input
    except Exception as exc:  # the converter raises bare exceptions for bad schemas
        raise InvalidRequest(f"a tool's parameters schema cannot be used: {exc}",
                             "tools") from None
