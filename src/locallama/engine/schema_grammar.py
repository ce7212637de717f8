"""A JSON schema -> GBNF grammar, with every string from the schema escaped.

The conversion is llama-cpp-python's port of llama.cpp's converter
(``llama_cpp.llama_grammar.SchemaConverter``, from llama.cpp's
examples/json_schema_to_grammar.py), corrected where it pastes the schema's
strings into the grammar:

* a GBNF string literal is written by ``gbnf_literal``, which escapes what llama.cpp's
  grammar parser reads as syntax (https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md):
  the port escaped only ``"``, CR and LF, so a backslash in an enum or const value or a
  property name was read as the start of an escape (``a\\b`` came out as ``a<backspace>``),
  and a NUL ended the grammar text;
* const and enum values are written as JSON with non-ASCII characters as they are
  (lone surrogates, which UTF-8 cannot carry, as ``\\uXXXX``);
* a property named ``""`` at the top level no longer takes the rule name ``root``
  (its value's rule became the grammar's root);
* the string rule admits no raw control characters (JSON forbids them in strings);
* the root rule ends at the value (the port allowed a space after it);
* ``pattern`` is refused when it holds a quote, a backslash or a character class or
  dot that could produce one: the port pastes such patterns so that the output is
  not valid JSON, or the grammar does not compile.

llama.cpp's C++ converter is not reachable from Python (it is in libcommon, which
llama-cpp-python does not ship), and the port is a snapshot that llama-cpp-python
does not keep in step with llama.cpp; so the corrections live here, with property-
based tests (tests/engine/test_schema_grammar.py) that any string round-trips.
Properties keep their declared order (the port sorts by ``prop_order`` only).
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
#: what a GBNF literal cannot hold as itself: its quote, the escape character, and
#: control characters (a NUL would end the grammar text; the rest for readability)
_GBNF_SPECIAL = re.compile('[\\\\"\x00-\x1f\x7f]')
_GBNF_NAMED = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: what makes a pattern unsafe to paste into a JSON string (see the module's note)
_UNSAFE_PATTERN = re.compile(r'["\\.\[]')


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal that matches exactly ``text``.

    Non-ASCII characters stay as they are (llama.cpp reads the grammar as UTF-8);
    ``\\``, ``"`` and control characters are escaped as its parser reads them
    (``\\\\``, ``\\"``, ``\\n``, ``\\r``, ``\\t``, ``\\xHH``).  ``text`` must hold no lone
    surrogate (UTF-8 cannot encode one): ``json_text`` never returns one."""
    def escape(match: re.Match[str]) -> str:
        c = match.group(0)
        return _GBNF_NAMED.get(c) or f"\\x{ord(c):02X}"

    return '"' + _GBNF_SPECIAL.sub(escape, text) + '"'


def json_text(value: Any) -> str:
    """``value`` as compact-ish JSON (``json.dumps``'s separators) with non-ASCII
    characters as they are and lone surrogates as ``\\uXXXX`` escapes."""
    text = json.dumps(value, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF text for a JSON schema (a dict, properties in declared order).

    Raises ValueError, AssertionError or KeyError (the port's) for a schema it cannot
    convert, and ValueError for an unsafe ``pattern``."""
    from llama_cpp import llama_grammar  # imported on use: it loads llama.cpp

    class Converter(llama_grammar.SchemaConverter):
        _root_visited = False

        def _format_literal(self, literal: str) -> str:
            return gbnf_literal(literal)

        def _generate_constant_rule(self, value: Any) -> str:
            return gbnf_literal(json_text(value))

        def visit(self, schema: dict[str, Any], name: str) -> str:
            if not isinstance(schema, dict):
                raise ValueError(f"a schema must be an object, not {json_text(schema)}")
            if name == "" and self._root_visited:
                name = "empty-name"  # a property named "": never the root rule
            self._root_visited = True
            return super().visit(schema, name)

        def _visit_pattern(self, pattern: str, name: str) -> str:
            if _UNSAFE_PATTERN.search(pattern.removeprefix("^").removesuffix("$")):
                raise ValueError(f"the pattern {pattern!r} is not supported: quotes, "
                                 "backslashes, character classes and '.' are not")
            return super()._visit_pattern(pattern, name)

    converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(schema, "input"), "")
    root = converter._rules.get("root", "")
    if root.endswith(" space"):  # nothing after the value: generation ends there
        converter._rules["root"] = root.removesuffix(" space")
    grammar = converter.format_grammar()
    # The port's string characters admit raw control characters, which JSON forbids
    # inside strings; narrow the rule so every output parses.
    return grammar.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |', 1)
