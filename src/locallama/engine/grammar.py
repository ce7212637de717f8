"""Structured output: "json" or a JSON schema becomes a llama.cpp GBNF grammar.

The grammar constrains sampling, so the output always parses and matches the
schema.  The schema-to-GBNF conversion is llama-cpp-python's
(``llama_cpp.llama_grammar``), which follows llama.cpp's own converter.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from locallama.errors import InvalidRequest


def grammar_for(format: str | dict[str, Any] | None) -> str | None:
    """GBNF text for a request's ``format``, or None for free text."""
    if format is None or format == "":
        return None
    if format == "json":
        from llama_cpp import llama_grammar  # imported on use: it loads llama.cpp

        return llama_grammar.JSON_GBNF
    if isinstance(format, dict):
        return _schema_grammar(json.dumps(format, sort_keys=True))
    raise InvalidRequest(f'format must be "json" or a JSON schema object, not {format!r}')


@lru_cache(maxsize=64)
def _schema_grammar(schema: str) -> str:
    from llama_cpp import llama_grammar

    try:
        grammar = llama_grammar.json_schema_to_gbnf(schema)
    except Exception as exc:  # the converter raises bare exceptions for bad schemas
        raise InvalidRequest(f"the JSON schema cannot be used: {exc}") from None
    # The converter's string characters admit raw control characters, which JSON
    # forbids inside strings; narrow the rule so every output parses.
    return grammar.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |', 1)
