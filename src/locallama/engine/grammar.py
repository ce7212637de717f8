"""Structured output: "json" or a JSON schema becomes a llama.cpp GBNF grammar.

The grammar constrains sampling, so the output always parses and matches the
schema.  A schema goes through ``engine/schema_grammar.py`` (llama.cpp's converter as
llama-cpp-python ports it, with the schema's strings escaped); "json" is any object,
in ``JSON_GRAMMAR`` below.  Both end at the closing brace: nothing after it is
allowed, so generation stops there rather than trailing whitespace until the token
limit.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from locallama.errors import InvalidRequest

#: Ollama's format "json": one JSON object, ending at its closing brace (llama.cpp's
#: grammars/json.gbnf in shape, whitespace bounded, no control characters in strings)
JSON_GRAMMAR = r"""
root   ::= "{" ws ( member ( "," ws member )* )? "}"
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( member ( "," ws member )* )? "}" ws
member ::= string ":" ws value
array  ::= "[" ws ( value ( "," ws value )* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"""


def grammar_for(format: str | dict[str, Any] | None) -> str | None:
    """GBNF text for a request's ``format`` (Ollama's "json" or a JSON schema, as in
    https://github.com/ollama/ollama/blob/main/docs/api.md#request-structured-outputs),
    or None for free text.  Properties keep the schema's declared order.
    InvalidRequest for anything else or a schema that cannot be converted."""
    if format is None or format == "":
        return None
    if format == "json":
        return JSON_GRAMMAR
    if isinstance(format, dict):
        # The cache key keeps the declared order: sorted keys would sort properties.
        return _schema_grammar(json.dumps(format))
    raise InvalidRequest(f'format must be "json" or a JSON schema object, not {format!r}')


@lru_cache(maxsize=64)
def _schema_grammar(schema: str) -> str:
    from locallama.engine.schema_grammar import schema_to_gbnf

    try:
        return schema_to_gbnf(json.loads(schema))  # a fresh copy: the converter edits it
    except Exception as exc:  # the converter raises bare exceptions for bad schemas
        raise InvalidRequest(f"the JSON schema cannot be used: {exc}") from None
