"""JSON helpers every wire format needs: logprobs JSON can carry, and the base of every
request body (its text must be valid Unicode)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from locallama.errors import not_unicode

#: the floor OpenAI's API uses for a token the model gives no chance (-inf in nats)
LOGPROB_FLOOR = -9999.0


def finite_logprob(value: float) -> float | None:
    """A log-probability (nats) fit for JSON, which has no nan or -inf: nan (no value,
    as for a prompt's first token) becomes null and -inf becomes -9999, OpenAI's floor."""
    if math.isnan(value):
        return None
    return max(value, LOGPROB_FLOOR)


def read_logprob(value: float | None) -> float:
    """The inverse of ``finite_logprob`` for a client: null is nan again and the floor
    (-9999 or below) is -inf again."""
    if value is None:
        return math.nan
    return -math.inf if value <= LOGPROB_FLOOR else float(value)


class UnicodeBody(BaseModel):
    """The base of every request body of every face: its text is valid Unicode.

    JSON may escape half of a UTF-16 surrogate pair (``"\\ud800"``) and Python's parser
    reads it into a str that UTF-8 (llama.cpp, the template workers, the store) cannot
    hold.  Each field is checked once, before its own validation: a field whose type
    holds bodies (``messages``, ``tools`` as models) is left to them (unless its value is
    a plain string, as ``content: str | list[Block]`` may be), so the error's
    location is the deepest field (``messages[1].content``); one whose type holds no
    text (token ids) is skipped; any other value is searched whole, keys of objects
    included (``options``, tool arguments, a JSON schema), and the message says where
    inside it.  The error is pydantic's (type ``string_unicode``), so each face answers
    400 naming the field in its own shape (``server/http_errors.py``).
    """

    @field_validator("*", mode="before")
    @classmethod
    def _text_is_unicode(cls, value: Any, info: ValidationInfo) -> Any:
        field = info.field_name
        if field is None or (not _searched(cls, field) and not isinstance(value, str)):
            return value  # a str is checked even where the type also holds bodies
        found = not_unicode_in(value, field)
        if found is not None:
            raise PydanticCustomError("string_unicode", "{reason}", {"reason": found})
        return value


@functools.cache
def _searched(body: type[BaseModel], field: str) -> bool:
    """Whether a field's value is searched for text: its type may hold text (str, Any,
    an object's keys) and holds no bodies, which check their own fields.  So token ids
    (``list[int]``) cost nothing."""
    annotation = body.model_fields[field].annotation
    return (_holds(annotation, lambda t: t is str or t is Any or t is dict)
            and not _holds(annotation, lambda t: isinstance(t, type)
                           and issubclass(t, BaseModel)))


def _holds(annotation: Any, test: Callable[[Any], bool]) -> bool:
    """Whether ``test`` holds for a type or any type inside it (``list[Message] | None``)."""
    return test(annotation) or test(get_origin(annotation)) or any(
        _holds(arg, test) for arg in get_args(annotation))


#: the JSON values that may hold text
_CONTAINERS = (str, dict, list)


def not_unicode_in(value: Any, field: str) -> str | None:
    """Why the first text in a JSON value (depth first, keys too) is not valid Unicode
    ("not valid Unicode: a lone surrogate U+D800 at character 0 of arguments.city", the
    path from ``field`` when the text is inside the value); None when every text is."""
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if reason := not_unicode(item):
                inside = "" if item is value else f" of {where}"
                return f"not valid Unicode: {reason}{inside}"
            continue
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and (reason := not_unicode(key)):
                    return f"not valid Unicode: {reason} of a key in {where}"
            children = [(_member(where, key), v) for key, v in item.items()
                        if isinstance(v, _CONTAINERS)]
        elif isinstance(item, list):  # token ids and numbers are skipped cheaply
            children = [(f"{where}[{i}]", v) for i, v in enumerate(item)
                        if isinstance(v, _CONTAINERS)]
        else:
            continue
        stack.extend(reversed(children))
    return None


def _member(where: str, key: Any) -> str:
    """The path of an object's member: ``options.stop``, or ``schema['$defs']``."""
    return f"{where}.{key}" if str(key).isidentifier() else f"{where}[{key!r}]"
