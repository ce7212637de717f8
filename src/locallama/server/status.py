"""HTTP statuses and headers for the typed errors: one table for every face.

The faces answer a given error with the same status, except that the OpenAI face
answers a failed pull with 502 (``OPENAI``) and the Anthropic face keeps to the
statuses Anthropic documents (``ANTHROPIC``).  Most specific classes first: the first
``isinstance`` match wins.  The bodies are the faces' (``server/http_errors.py``).
"""

from __future__ import annotations

from locallama.errors import (
    DigestMismatch,
    Forbidden,
    InvalidModelFile,
    InvalidRequest,
    LocallamaError,
    MethodNotAllowed,
    ModelNotFound,
    NotSupported,
    PayloadTooLarge,
    PullError,
    ResponseNotFound,
    RouteNotFound,
    ServerBusy,
    StorageFull,
    Unauthorized,
)

StatusTable = tuple[tuple[type[LocallamaError], int], ...]

STATUS: StatusTable = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (ModelNotFound, 404),
    (RouteNotFound, 404),
    (ResponseNotFound, 404),
    (MethodNotAllowed, 405),
    (PayloadTooLarge, 413),
    (InvalidRequest, 400),
    (InvalidModelFile, 400),  # a file the client sent; a stored one gone bad is a 500
    (DigestMismatch, 400),
    (NotSupported, 501),
    (ServerBusy, 503),
    (StorageFull, 507),
)

#: the Anthropic face's own entries, before ``STATUS``: Anthropic's statuses
#: (https://docs.anthropic.com/en/api/errors) have no 501, 503 or 507: a feature not
#: built here is the request's problem (400), a full queue is "overloaded" (529), a full
#: disk the server's (500); an unknown route or method keeps its 404 / 405
ANTHROPIC: StatusTable = (
    (RouteNotFound, 404),
    (MethodNotAllowed, 405),
    (NotSupported, 400),
    (ServerBusy, 529),
    (StorageFull, 500),
)

#: the OpenAI face's own entries, before ``STATUS``: a registry that failed us is a bad
#: gateway to an OpenAI client (Ollama answers 500)
OPENAI: StatusTable = ((PullError, 502),)


def http_status(exc: LocallamaError, first: StatusTable = ()) -> int:
    """The status for ``exc``: from ``first`` (a face's own entries), else ``STATUS``,
    else 500 (a stored model file gone bad, a model too large, a failed write, an
    internal fault: Ollama answers 500 too)."""
    for cls, status in (*first, *STATUS):
        if isinstance(exc, cls):
            return status
    return 500


def error_headers(exc: LocallamaError) -> dict[str, str]:
    """Headers an error answer carries: ``Retry-After`` (seconds) for ServerBusy."""
    if isinstance(exc, ServerBusy):
        return {"Retry-After": str(max(1, exc.retry_after))}
    return {}
