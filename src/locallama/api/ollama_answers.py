"""Ollama's API, what a server answers besides the stream lines: records, progress, errors.

The other halves are ``api/ollama.py`` (what a client sends) and
``api/ollama_stream.py`` (a generate or chat answer's lines), shared the same way by
the server's Ollama face and ``client.RemoteRuntime``.  Each shape has a pure function
each way: ``*_json`` turns the Runtime's value into Ollama's JSON object (what the
server sends, field names as Ollama's docs/api.md has them) and ``*_of`` reads such
an object back into the same value (what the client returns), so a caller cannot
tell a remote Runtime from a local one.  Readers are lenient: a field Ollama itself
leaves out (a real Ollama server answers too) takes its default.

Conventions of the wire: timestamps are RFC 3339 in UTC; digests are bare hex (the
Runtime says ``sha256:<hex>``); a model kept until stopped expires centuries away;
log-probabilities are finite (``api/common.py``: null for nan, -9999 for -inf).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from locallama import errors
from locallama.api.ollama import message_json, messages_of
from locallama.errors import InvalidRequest, LocallamaError, ModelNotFound, NotSupported, capped
from locallama.options import parse_parameters
from locallama.progress import ProgressEvent
from locallama.runtime.types import (
    Details,
    Embeddings,
    LoadedModelInfo,
    ModelDetails,
    ModelEntry,
)
from locallama.store import parse_name

#: how far away /api/ps puts the expiry of a model kept until stopped (Ollama's clients
#: expect a date; Ollama shows one 292 years on)
FOREVER = timedelta(days=365 * 292)
#: an expiry in this year or later reads back as "kept until stopped"
_FOREVER_YEAR = 2200


def timestamp(when: datetime | None = None) -> str:
    """RFC 3339 in UTC with microseconds (``2025-01-02T03:04:05.000000Z``), as Ollama's
    clients parse it; now when ``when`` is None, UTC when it has no zone."""
    if when is None:  # every streamed line: isoformat is several times faster than strftime
        return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time_of(value: str) -> datetime:
    """An RFC 3339 time as Ollama sends it (``Z``, an offset, up to nanoseconds)."""
    return datetime.fromisoformat(value)


# -- models: details, /api/tags, /api/ps, /api/show ---------------------------------------------


def details_json(d: Details) -> dict[str, Any]:
    """Ollama's ``details`` object (list, ps and show); no families is null."""
    return {"parent_model": "", "format": d.format, "family": d.family,
            "families": list(d.families) or None, "parameter_size": d.parameter_size,
            "quantization_level": d.quantization_level}


def details_of(d: Any) -> Details:
    """The inverse of ``details_json``; anything but an object is empty details."""
    d = d if isinstance(d, dict) else {}
    return Details(format=d.get("format") or "gguf", family=d.get("family") or "",
                   families=list(d.get("families") or []),
                   parameter_size=d.get("parameter_size") or "",
                   quantization_level=d.get("quantization_level") or "")


def tag_json(entry: ModelEntry) -> dict[str, Any]:
    """One model of /api/tags, in Ollama's shape; a broken model adds ``broken`` (ours:
    why it cannot be used; ``DELETE /api/delete`` removes it)."""
    name = entry.name.display
    tag = {"name": name, "model": name, "modified_at": timestamp(entry.modified),
           "size": entry.size, "digest": _hex(entry.digest),
           "details": details_json(entry.details)}
    if entry.broken:
        tag["broken"] = entry.broken
    return tag


def tag_of(m: dict[str, Any]) -> ModelEntry:
    """The inverse of ``tag_json``.  Raises InvalidModelName for a name that does not
    parse, KeyError without a name or ``modified_at``."""
    return ModelEntry(name=parse_name(m.get("model") or m["name"]),
                      digest=_digest(m.get("digest", "")), size=m.get("size", 0),
                      modified=_time_of(m["modified_at"]),
                      details=details_of(m.get("details")), broken=m.get("broken") or None)


def running_json(info: LoadedModelInfo) -> dict[str, Any]:
    """One model of /api/ps; kept until stopped (no expiry), it expires ``FOREVER`` from
    now, as Ollama shows it.  ``num_parallel`` is not on the wire; ``pid`` and ``rss``
    (the runner's process and its resident bytes), the prompt token counters
    (``prompt_eval_count``, ``prompt_cached_count``, ``prompt_shared_count``: evaluated,
    reused from a KV cache, copied from another slot), ``kv_cache_type`` (f16, q8_0,
    q4_0), ``flash_attention`` and ``repack`` (what the model was loaded with: README,
    *Determinism and its price*) and, under ``serve --ray``, ``replica`` and ``node`` are
    locallama's, present when known."""
    expires = info.expires_at or datetime.now(UTC) + FOREVER
    body = {"name": info.name, "model": info.name, "size": info.size,
            "digest": _hex(info.digest), "details": details_json(info.details),
            "expires_at": timestamp(expires), "size_vram": info.size_vram,
            "context_length": info.context_length}
    extra = (("pid", info.pid), ("rss", info.rss), ("prompt_eval_count", info.prompt_eval_count),
             ("prompt_cached_count", info.prompt_cached_count),
             ("prompt_shared_count", info.prompt_shared_count),
             ("kv_cache_type", info.kv_cache_type), ("flash_attention", info.flash_attention),
             ("repack", info.repack), ("replica", info.replica), ("node", info.node))
    return body | {k: v for k, v in extra if v is not None}


def running_of(m: dict[str, Any]) -> LoadedModelInfo:
    """The inverse of ``running_json``; an expiry in 2200 or later is None (kept until
    stopped)."""
    return LoadedModelInfo(
        name=m.get("name") or m.get("model", ""), digest=_digest(m.get("digest", "")),
        size=m.get("size", 0), expires_at=_expiry(m.get("expires_at")),
        context_length=m.get("context_length", 0), details=details_of(m.get("details")),
        size_vram=m.get("size_vram", 0), pid=m.get("pid"), rss=m.get("rss"),
        prompt_eval_count=m.get("prompt_eval_count"),
        prompt_cached_count=m.get("prompt_cached_count"),
        prompt_shared_count=m.get("prompt_shared_count"),
        kv_cache_type=m.get("kv_cache_type"), flash_attention=m.get("flash_attention"),
        repack=m.get("repack"), replica=m.get("replica"), node=m.get("node"))


def _expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    when = _time_of(value)
    return None if when.year >= _FOREVER_YEAR else when


def show_json(d: ModelDetails) -> dict[str, Any]:
    """The /api/show answer: license (several joined by newlines), modelfile,
    parameters (text), template and system (each left out when empty), messages,
    details, model_info (GGUF metadata, arrays empty), capabilities, projector_info (a
    vision model's projector metadata, when it has one), modified_at.
    Name, digest and size are not in it (as in Ollama)."""
    out: dict[str, Any] = {"license": "\n".join(d.licenses), "modelfile": d.modelfile,
                           "parameters": _parameters_text(d.parameters),
                           "template": d.template or "", "system": d.system or ""}
    out = {k: v for k, v in out.items() if v}  # Ollama leaves empty fields out
    if d.messages:
        out["messages"] = [message_json(m) for m in d.messages]
    out |= {"details": details_json(d.details), "model_info": _model_info(d),
            "capabilities": d.capabilities}
    if d.projector_info:  # a vision model's projector (Ollama's projector_info)
        out["projector_info"] = {k: [] if isinstance(v, str) and _ARRAY.fullmatch(v) else v
                                 for k, v in d.projector_info.items()}
    if d.modified_at:
        out["modified_at"] = timestamp(datetime.fromisoformat(d.modified_at))
    return out


def show_of(data: dict[str, Any], name: str, digest: str = "", size: int = 0) -> ModelDetails:
    """/api/show's answer read back: numbers from model_info, the rest as sent; the
    name, digest and size come from the caller (the model's /api/tags entry).
    Raises InvalidRequest for a parameter that does not type."""
    info = data.get("model_info") or {}
    arch = info.get("general.architecture") or (data.get("details") or {}).get("family", "")
    license_ = data.get("license") or []
    return ModelDetails(
        name=name, digest=digest, size=size, architecture=arch,
        parameter_count=info.get("general.parameter_count", 0),
        context_length=info.get(f"{arch}.context_length"),
        embedding_length=info.get(f"{arch}.embedding_length"),
        quantization=(data.get("details") or {}).get("quantization_level", ""),
        template=data.get("template") or None, system=data.get("system") or None,
        parameters=_parameters_of(data.get("parameters")),
        messages=messages_of(data.get("messages")),
        licenses=[license_] if isinstance(license_, str) else list(license_),
        modelfile=data.get("modelfile", ""), model_info=info,
        modified_at=data.get("modified_at", ""),
        capabilities=list(data.get("capabilities") or ["completion"]),
        projector_info=dict(data.get("projector_info") or {}),
    )


def _parameters_text(parameters: dict[str, Any]) -> str:
    """Ollama's form: the name padded to 30 columns, strings quoted, a stop per line."""
    lines = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            text = json.dumps(item) if isinstance(item, str | bool) else str(item)
            lines.append(f"{name:<30} {text}")
    return "\n".join(lines)


def _parameters_of(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """The inverse of ``_parameters_text`` (an object is taken as it is)."""
    if isinstance(raw, dict):
        return raw
    pairs = []
    for line in (raw or "").splitlines():
        name, _, value = line.strip().partition(" ")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        if name:
            pairs.append((name, value))
    return parse_parameters(pairs)


_ARRAY = re.compile(r"\[\d+ items\]")


def _model_info(d: ModelDetails) -> dict[str, Any]:
    """GGUF metadata; arrays (the vocabulary) are empty, as in Ollama's non-verbose show."""
    info = {k: [] if isinstance(v, str) and _ARRAY.fullmatch(v) else v
            for k, v in d.model_info.items()}
    info.setdefault("general.parameter_count", d.parameter_count)
    return info


def _hex(digest: str) -> str:
    """Ollama lists bare hex digests."""
    return digest.removeprefix("sha256:")


def _digest(value: str) -> str:
    """The inverse of ``_hex``: the store says ``sha256:<hex>``."""
    return value if not value or value.startswith("sha256:") else f"sha256:{value}"


# -- embeddings, progress ------------------------------------------------------------------------


def embed_json(model: str, result: Embeddings) -> dict[str, Any]:
    """The /api/embed answer: ``{"model", "embeddings", "total_duration",
    "load_duration", "prompt_eval_count"}``."""
    return {"model": model, "embeddings": result.embeddings,
            "total_duration": result.total_duration, "load_duration": result.load_duration,
            "prompt_eval_count": result.prompt_eval_count}


def embeddings_of(data: dict[str, Any]) -> Embeddings:
    """The inverse of ``embed_json``."""
    return Embeddings(data.get("embeddings", []), data.get("prompt_eval_count", 0),
                      data.get("total_duration", 0), data.get("load_duration", 0))


def progress_json(event: ProgressEvent) -> dict[str, Any]:
    """A status line of pull or create: ``{"status", "digest"?, "total"?, "completed"?}``
    (bytes), unset fields left out."""
    return {k: v for k, v in {"status": event.status, "digest": event.digest,
                              "total": event.total, "completed": event.completed}.items()
            if v is not None}


def progress_of(line: dict[str, Any]) -> ProgressEvent:
    """The inverse of ``progress_json``."""
    return ProgressEvent(str(line.get("status", "")), line.get("digest"), line.get("total"),
                         line.get("completed"))


# -- errors --------------------------------------------------------------------------------------

#: a LocallamaError class for each ``code`` a server may put beside ``error``
_BY_CODE: dict[str, type[LocallamaError]] = {
    cls.code: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, LocallamaError)
}
#: without a code (a real Ollama server), the HTTP status tells the class
_BY_STATUS: dict[int, type[LocallamaError]] = {
    400: InvalidRequest, 401: errors.Unauthorized, 403: errors.Forbidden, 404: ModelNotFound,
    413: errors.PayloadTooLarge, 501: NotSupported, 503: errors.ServerBusy,
    507: errors.StorageFull,
}


def error_json(exc: LocallamaError) -> dict[str, Any]:
    """The error object of an answer or a stream's last line: ``{"error": message,
    "code": exc.code}`` and ``param`` where one field is to blame; the message capped
    (``errors.capped``).  Ollama sends ``{"error"}``; ``code`` and ``param`` are
    locallama's, for its own client."""
    body: dict[str, Any] = {"error": capped(exc.message), "code": exc.code}
    if param := getattr(exc, "param", None):
        body["param"] = param
    return body


def error_of(payload: Any, status: int | None = None) -> LocallamaError | None:
    """The typed error an error answer (or line) describes: the class of its ``code``,
    else of the HTTP ``status``, else LocallamaError; the server's message word for
    word.  An OpenAI-shaped body (``{"error": {"message", "code"}}``) reads too.  None
    when the payload carries no message (the caller words one from the status)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    code = payload.get("code") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error, code = error.get("message"), error.get("code") or code
    if not error:
        return None
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status or 0, LocallamaError)
    exc = cls.__new__(cls)
    LocallamaError.__init__(exc, str(error))  # the server's words, whatever the class
    if isinstance(exc, ModelNotFound):
        exc.name = str(error).partition("'")[2].partition("'")[0]
    if isinstance(exc, InvalidRequest):
        exc.param = payload.get("param") if isinstance(payload, dict) else None
    if isinstance(exc, errors.ModelfileError):
        exc.line = None  # the message names the line already
    if isinstance(exc, errors.ServerBusy):
        exc.retry_after = 1  # the header says it; the body does not
    return exc
