"""Errors as HTTP answers, in the shape of the face a request came to (DESIGN.md rule 6).

Two kinds of error reach a client: a typed ``LocallamaError`` (the status from
``status.py``'s one table, the body the face's), and a body that failed pydantic's
validation (always 400, naming the field).  The Ollama face answers
``{"error": message, "code", "param"?}`` as Ollama does; the OpenAI face answers
``{"error": {message, type, param, code}}`` as the OpenAI API reference documents
(``api/openai_objects.py``); the Anthropic face answers ``{"type": "error", "error":
{type, message}}`` (``api/anthropic_answers.py``).  ``error_response`` and
``validation_error_response`` pick the face (``anthropic``: the path is under
/v1/messages, else ``openai``: under /v1); ``app.py`` and the guard call them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from locallama.api import anthropic_answers, ollama_answers, openai_objects
from locallama.errors import LocallamaError
from locallama.server import status

# -- typed errors -----------------------------------------------------------------------------


def ollama_error_body(exc: LocallamaError) -> dict[str, Any]:
    """Ollama's error object (``api/ollama_answers.error_json``)."""
    return ollama_answers.error_json(exc)


def openai_error_body(exc: LocallamaError) -> dict[str, Any]:
    """OpenAI's error object for ``exc``; its ``type`` follows the status."""
    return openai_objects.error_body(exc, http_status(exc, openai=True))


def anthropic_error_body(exc: LocallamaError) -> dict[str, Any]:
    """Anthropic's error object for ``exc``; its ``type`` follows the status."""
    return anthropic_answers.typed_error_body(exc, http_status(exc, anthropic=True))


def http_status(exc: LocallamaError, *, openai: bool = False, anthropic: bool = False) -> int:
    """The status a face answers ``exc`` with (``status.py``)."""
    if anthropic:
        return status.http_status(exc, status.ANTHROPIC)
    return status.http_status(exc, status.OPENAI if openai else ())


def error_response(exc: LocallamaError, *, openai: bool, anthropic: bool = False
                   ) -> JSONResponse:
    """A typed error as the face sends it, with its status and headers (``Retry-After``
    when the server is busy); the status picks an SDK's exception class."""
    if anthropic:
        body = anthropic_error_body(exc)
    else:
        body = openai_error_body(exc) if openai else ollama_error_body(exc)
    return JSONResponse(body, status_code=http_status(exc, openai=openai, anthropic=anthropic),
                        headers=status.error_headers(exc))


# -- bodies that fail validation ------------------------------------------------------------


def validation_error_response(exc: RequestValidationError, *, openai: bool,
                              anthropic: bool = False) -> JSONResponse:
    """A body that is not JSON or does not fit the schema: 400 (never FastAPI's 422).

    Ollama's face says it in one line (``invalid messages[0].role: input should be
    'system', 'user', ...``, ``model is required``); OpenAI's names the field in
    ``param`` (``messages[0].role``) and says ``code`` "invalid_json" for a body that
    is not JSON, else "invalid_value".  Anthropic's says the same message as its
    ``invalid_request_error``."""
    errors = list(exc.errors())
    if anthropic:  # "max_tokens: Field required", as Anthropic words it
        message = _openai_message(errors)[0]
        return JSONResponse(anthropic_answers.error_body(message, 400), status_code=400)
    if not openai:
        return JSONResponse({"error": _ollama_message(errors), "code": "invalid_request"},
                            status_code=400)
    message, param, code = _openai_message(errors)
    return JSONResponse(openai_objects.invalid_body(message, param, code), status_code=400)


#: the parts of a pydantic error location that name a union's member, not a field:
#: ``str``, ``list[int]``, ``literal['a','b']``, a model class such as ``NamedToolChoice``
_UNION_TAG = re.compile(r"(str|int|float|bool|none|dict|list|[a-z][\w-]*\[.*\]|[A-Z]\w*)")


def field_parts(loc: Sequence[Any]) -> list[str | int]:
    """A pydantic error location without the leading "body" and the union tags:
    ``('body', 'messages', 0, 'content', 'str')`` -> ``['messages', 0, 'content']``."""
    parts = [p for p in loc if not (isinstance(p, str) and _UNION_TAG.fullmatch(p))]
    return parts[1:] if parts and parts[0] == "body" else parts


def field_path(loc: Sequence[Any]) -> str | None:
    """A location as the field's path, ``messages[0].role``; None for the body itself."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in field_parts(loc))
    return text.lstrip(".") or None


def _json_invalid(error: dict[str, Any]) -> str | None:
    """The parser's detail of a body that is not JSON ("" when it gives none), or None
    when ``error`` is about something else."""
    if error.get("type") != "json_invalid":
        return None
    return str(error.get("ctx", {}).get("error") or "")


def _ollama_message(errors: list[dict[str, Any]]) -> str:
    """One line about the first error, with every message pydantic gave for its field
    (one per member of a union) joined by "or"."""
    if not errors:
        return "invalid request body"
    first = errors[0]
    if (detail := _json_invalid(first)) is not None:
        return "invalid JSON in the request body" + (f": {detail}" if detail else "")
    field = field_path(first.get("loc", ()))
    if field is None:
        return ("missing request body" if first.get("type") == "missing"
                else "the request body must be a JSON object")
    if first.get("type") == "missing":
        return f"{field} is required"
    same = [e.get("msg", "") for e in errors
            if e.get("loc") and field_parts(e["loc"]) == field_parts(first["loc"])]
    return f"invalid {field}: " + " or ".join(dict.fromkeys(m[:1].lower() + m[1:] for m in same))


def _openai_message(errors: list[dict[str, Any]]) -> tuple[str, str | None, str]:
    """(message, param, code) for the most telling error: the deepest, and a broken
    constraint before a type mismatch (a union such as str | list[int] reports one
    mismatch per member)."""
    ranked = sorted(errors, key=lambda e: (len(e.get("loc", ())),
                                           not e.get("type", "").endswith("_type")))
    first = ranked[-1] if ranked else {}
    if (detail := _json_invalid(first)) is not None:
        return ("the request body is not valid JSON" + (f" ({detail})" if detail else ""),
                None, "invalid_json")
    if param := field_path(first.get("loc", ())):
        return f"{param}: {first.get('msg', 'invalid value')}", param, "invalid_value"
    return (f"the request body must be a JSON object ({first.get('msg', 'invalid')})", None,
            "invalid_value")
