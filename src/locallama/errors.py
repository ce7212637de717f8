"""Typed errors, defined once.

Every failure a user can cause has a class here.  The faces map these classes to
HTTP status codes (one table per face) and the CLI maps them to a one-line
message; nothing else in the code decides how an error looks to a user.
"""

from __future__ import annotations

import re

#: the most characters of an error message an answer carries (see ``capped``)
MESSAGE_LIMIT = 1000

#: a UTF-16 surrogate code point: JSON's ``\ud800`` escape carries one alone, Python's
#: parser accepts it into a str, and UTF-8 cannot encode it
_SURROGATE = re.compile("[\ud800-\udfff]")


def capped(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` as an answer may carry it: its first ``limit`` characters and "…" when
    it is longer.  Some messages quote what a stranger chose (a template's
    ``raise_exception``, a registry's answer), which may be any size."""
    return message if len(message) <= limit else message[:limit] + "…"


def not_unicode(text: str) -> str | None:
    """Why ``text`` is not valid Unicode, in words ("a lone surrogate U+D800 at character
    3"), or None when it is.  Such text cannot be written as UTF-8, which llama.cpp, the
    template workers and every file need; the faces refuse it where a body is read, the
    engine where it encodes text."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return f"a lone surrogate U+{ord(found.group()):04X} at character {found.start()}"


class LocallamaError(Exception):
    """Base class: an error with a message fit to show a user as it is."""

    #: a short machine-readable code, used by the faces and ``--json`` output
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidRequest(LocallamaError):
    """The request (arguments, options, JSON body) is malformed or out of range.

    ``param`` names the offending field when one is to blame (OpenAI's errors carry it).
    """

    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Unauthorized(LocallamaError):
    """A missing or wrong API key (checked only when LOCALLAMA_API_KEY is set)."""

    code = "invalid_api_key"


class Forbidden(LocallamaError):
    """A request refused before anything runs: an ``Origin`` that is not allowed, or a
    ``Host`` that is not this machine's on a loopback bind (DNS rebinding)."""

    code = "forbidden"


class PayloadTooLarge(InvalidRequest):
    """A request body over the size limit (LOCALLAMA_MAX_REQUEST_BYTES for JSON,
    LOCALLAMA_MAX_BLOB_BYTES for blob uploads)."""

    code = "request_too_large"


class InvalidModelName(InvalidRequest):
    """A model name that breaks the naming rules or could escape the store."""

    code = "invalid_model_name"


class ModelfileError(InvalidRequest):
    """A Modelfile that cannot be parsed; names the line when it knows it."""

    code = "invalid_modelfile"

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"Modelfile line {line}: {message}" if line else message)


class TemplateError(InvalidRequest):
    """A chat template that does not compile or fails when rendered."""

    code = "invalid_template"


class TemplateLimitExceeded(TemplateError):
    """A template that ran past its time limit (LOCALLAMA_TEMPLATE_TIMEOUT) or wrote past
    its output limit (LOCALLAMA_TEMPLATE_MAX_BYTES); the message names model and limit."""

    code = "template_limit_exceeded"


class ModelNotFound(LocallamaError):
    """No model of that name in the store (and none could be pulled)."""

    code = "model_not_found"

    def __init__(self, name: str, hint: str = "") -> None:
        self.name = name
        message = f"model '{name}' not found"
        super().__init__(f"{message}; {hint}" if hint else message)


class ResponseNotFound(LocallamaError):
    """No stored response of that id (the Responses API's ``GET``/``DELETE`` and
    ``previous_response_id``): never stored (``store: false``), deleted, or gone past
    LOCALLAMA_RESPONSES_MAX.  ``param`` names the field that gave the id."""

    code = "response_not_found"

    def __init__(self, response_id: str, param: str | None = None) -> None:
        super().__init__(f"response with id '{response_id}' not found")
        self.param = param


class BadModelFile(LocallamaError):
    """A model file that is not a valid GGUF, or one llama.cpp cannot use: as such a
    stored model gone bad on disk, the server's state (500)."""

    code = "bad_model_file"


class InvalidModelFile(BadModelFile):
    """A model file the caller supplied (an uploaded blob, a Modelfile's FROM path) that
    is not a valid GGUF: the caller's mistake (400), where a stored model gone bad stays
    BadModelFile (500)."""

    code = "invalid_model_file"


class ModelTooLarge(LocallamaError):
    """The model cannot fit in the memory this machine has."""

    code = "model_too_large"


class DigestMismatch(LocallamaError):
    """Bytes that do not hash to the digest they were announced with."""

    code = "digest_mismatch"


class NotSupported(LocallamaError):
    """A feature that exists in the formats but is not built here yet."""

    code = "not_supported"


class RouteNotFound(NotSupported):
    """No route at that path (404): an older or a different server, or a typo."""

    code = "route_not_found"


class MethodNotAllowed(NotSupported):
    """The path exists but not with that method (405)."""

    code = "method_not_allowed"


class ServerBusy(LocallamaError):
    """Too many requests already wait for this model (LOCALLAMA_MAX_QUEUE, as Ollama's
    OLLAMA_MAX_QUEUE): 503 with ``Retry-After: retry_after`` seconds."""

    code = "server_busy"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageError(LocallamaError):
    """The store could not be written: permission denied, read-only file system, I/O
    error.  The message names the path and the reason; nothing partial is left."""

    code = "storage_error"


class StorageFull(StorageError):
    """No space left on the device that holds the store (ENOSPC, EDQUOT): 507."""

    code = "insufficient_storage"


class PullError(LocallamaError):
    """A model could not be fetched (offline, unknown source, transfer failed)."""

    code = "pull_error"


class Cancelled(LocallamaError):
    """The caller stopped a request before it finished."""

    code = "cancelled"


class RunnerStopped(LocallamaError):
    """A model's runner process ended while it served the request (a signal such as
    SIGABRT from llama.cpp, an out-of-memory kill): 500.  The message names the model,
    the cause and llama.cpp's last words; the next request starts a fresh runner."""

    code = "runner_stopped"
