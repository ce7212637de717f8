"""Model names: ``[host/][namespace/]model[:tag]``, with Ollama's rules.

A name becomes a path inside the store, so parsing is also the guard that keeps
a stranger's name from pointing outside it: every part is checked against a
small alphabet, ``..`` and empty parts are refused, and nothing else is allowed
to build manifest paths.
"""

from __future__ import annotations

import re

from locallama.errors import InvalidModelName
from locallama.runtime.types import DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelName

__all__ = ["DEFAULT_HOST", "DEFAULT_NAMESPACE", "DEFAULT_TAG", "ModelName", "parse_name"]

MAX_NAME_LENGTH = 128

# Each part starts with a letter, digit or underscore (so "." and ".." can never
# be a part) and continues with letters, digits, "_", "-" and ".".  Namespaces
# allow no dots; hosts may carry a port.
_PART = {
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(:[0-9]{1,5})?"),
    "namespace": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*"),
    "model": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"),
    "tag": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"),
}


def parse_name(text: str) -> ModelName:
    """Parse and validate a name, filling in Ollama's defaults.

    Raises InvalidModelName with a message that says what is wrong.
    """
    raw = text
    text = text.strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    if not text:
        raise InvalidModelName("model name is empty")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidModelName(f"model name is longer than {MAX_NAME_LENGTH} characters")
    if "\\" in text or text.startswith("/") or ".." in text or "@" in text:
        raise InvalidModelName(f"invalid model name {raw!r}")

    pieces = text.split("/")
    if len(pieces) > 3 or any(p == "" for p in pieces):
        raise InvalidModelName(
            f"invalid model name {raw!r}: expected [host/][namespace/]model[:tag]"
        )
    last = pieces[-1]
    model, sep, tag = last.partition(":")
    if sep and not tag:
        raise InvalidModelName(f"invalid model name {raw!r}: the tag after ':' is empty")
    host = pieces[0] if len(pieces) == 3 else DEFAULT_HOST
    namespace = pieces[-2] if len(pieces) >= 2 else DEFAULT_NAMESPACE
    name = ModelName(host, namespace, model, tag or DEFAULT_TAG)
    for kind, value in zip(("host", "namespace", "model", "tag"), name.parts, strict=True):
        if not _PART[kind].fullmatch(value):
            raise InvalidModelName(f"invalid model name {raw!r}: bad {kind} {value!r}")
    return name
