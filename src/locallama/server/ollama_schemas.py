"""The JSON shapes of the Ollama face, in and out, as Ollama's API documentation has them.

Pydantic checks the types, so a wrong field is a 400 that names it; fields this
server does not use are ignored, as Ollama ignores them.  ``null`` means "not
set" everywhere, as it does for Ollama's Go structs.  Older clients send
``name`` instead of ``model``; both are accepted.

The functions below the bodies are the face's translation step: a body becomes
the Runtime's GenerateRequest or ChatRequest, or a Modelfile for ``create``.
They refuse what cannot be translated (a file path where a model name belongs)
and leave every other check to the Runtime.  The last section turns
the Runtime's chunks and records into Ollama's response objects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from locallama.errors import InvalidRequest, NotSupported
from locallama.runtime.base import (
    ChatRequest,
    Chunk,
    GenerateRequest,
    LoadedModelInfo,
    ModelDetails,
    TokenLogprob,
)
from locallama.store import ModelEntry, parse_name
from locallama.store.modelfile import Modelfile, parse_modelfile
from locallama.units import format_parameter_count

KeepAlive = str | int | float | None
Format = str | dict[str, Any] | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Named(_Body):
    """A body that names a model: ``model``, or ``name`` as older clients send it."""

    model: str

    @model_validator(mode="before")
    @classmethod
    def _name_is_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("model") and data.get("name"):
            return {**data, "model": data["name"]}
        return data


class _Inference(_Named):
    options: dict[str, Any] | None = None
    format: Format = None
    stream: bool | None = None  # None: true, Ollama's default
    keep_alive: KeepAlive = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    think: bool | str | None = None
    truncate: bool | None = None  # None: true, Ollama's default
    shift: bool | None = None  # None: true


class GenerateBody(_Inference):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool | None = None
    context: list[int] | None = None
    images: list[str] | None = None
    echo: bool | None = None  # locallama: score the prompt too (prompt_logprobs)


class ToolCallFunction(_Body):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(_Body):
    function: ToolCallFunction


class Message(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None


class ChatBody(_Inference):
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None


class EmbedBody(_Named):
    input: str | list[str] | None = None
    truncate: bool | None = None  # None: true
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = Field(default=None, ge=1)


class EmbeddingsBody(_Named):
    prompt: str | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class ShowBody(_Named):
    verbose: bool | None = None


class ModelBody(_Named):
    """delete: just the model."""


class PullBody(_Named):
    insecure: bool | None = None
    stream: bool | None = None


class CopyBody(_Body):
    source: str
    destination: str


class CreateBody(_Named):
    from_: str | None = Field(default=None, alias="from")
    files: dict[str, str] | None = None  # file name -> digest of an uploaded blob
    adapters: dict[str, str] | None = None
    template: str | None = None
    license: str | list[str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    stream: bool | None = None
    quantize: str | None = None
    imatrix: str | None = None  # locallama's: the digest of an uploaded importance matrix
    modelfile: str | None = None  # the older shape: the Modelfile's text


class TokenizeBody(_Named):
    content: str = ""


class DetokenizeBody(_Named):
    tokens: list[int] = Field(default_factory=list)


# -- bodies -> the Runtime's requests ---------------------------------------------------


def generate_request(body: GenerateBody) -> GenerateRequest:
    _no_thinking(body)
    return GenerateRequest(
        model=body.model, prompt=body.prompt or "", system=body.system or None,
        template=body.template or None, suffix=body.suffix or "", raw=bool(body.raw),
        context=body.context or None, options=body.options or {}, format=body.format or None,
        images=body.images or None, keep_alive=body.keep_alive,
        logprobs=bool(body.logprobs), top_logprobs=body.top_logprobs or 0,
        echo=bool(body.echo), truncate=body.truncate is not False,
        shift=body.shift is not False,
    )


def chat_request(body: ChatBody) -> ChatRequest:
    _no_thinking(body)
    return ChatRequest(
        model=body.model, messages=[_message(m) for m in body.messages or ()],
        options=body.options or {}, format=body.format or None, tools=body.tools or None,
        keep_alive=body.keep_alive, logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0, truncate=body.truncate is not False,
        shift=body.shift is not False,
    )


def _message(message: Message) -> dict[str, Any]:
    out = message.model_dump(exclude_none=True)
    out["content"] = message.content or ""
    return out


def _no_thinking(body: _Inference) -> None:
    """No model here thinks; Ollama answers a think request for such a model with a 400."""
    if body.think not in (None, False, "", "false", "none"):
        raise InvalidRequest(f"model '{body.model}' does not support thinking", "think")


def create_modelfile(body: CreateBody, blob_path: Callable[[str], Path]) -> Modelfile:
    """The Modelfile a create body describes: ``from`` a model, else uploaded ``files``,
    else the older ``modelfile`` text; the other fields override what that says.

    Files are reached only through the digests of uploaded blobs, never a path the
    caller names: a client must not make the server read its own disk.
    """
    if body.from_:
        base = Modelfile(from_=_model_ref(body.from_))
    elif body.files:
        base = Modelfile(from_=str(_only_blob(body.files, "files", blob_path)))
    elif body.modelfile:
        base = parse_modelfile(body.modelfile)
        base.from_ = _blob_or_model(base.from_, blob_path)
        if base.adapter:
            base.adapter = _blob_or_model(base.adapter, blob_path)
    else:
        raise InvalidRequest("neither 'from' nor 'files' was specified")
    if body.adapters:
        base.adapter = str(_only_blob(body.adapters, "adapters", blob_path))
    if body.template is not None:
        base.template = body.template
    if body.system is not None:
        base.system = body.system
    if body.license is not None:
        base.licenses = [body.license] if isinstance(body.license, str) else list(body.license)
    if body.messages is not None:
        base.messages = [(m.role, m.content or "") for m in body.messages]
    base.parameters += _parameters(body.parameters or {})
    return base


def _model_ref(value: str) -> str:
    parse_name(value)  # a path does not parse as a name: refused with the name's rules
    return value


def _blob_or_model(value: str, blob_path: Callable[[str], Path]) -> str:
    """FROM/ADAPTER of an older Modelfile: ``@sha256:<hex>`` names an uploaded blob."""
    return str(blob_path(value[1:])) if value.startswith("@") else _model_ref(value)


def _only_blob(files: dict[str, str], field: str, blob_path: Callable[[str], Path]) -> Path:
    if len(files) != 1:
        raise NotSupported(f"{field}: exactly one GGUF file is supported (safetensors "
                           "folders and projector files are not supported yet)")
    return blob_path(next(iter(files.values())))


def _parameters(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """JSON parameters as Modelfile PARAMETER lines; a list (stop) gives one line each."""
    pairs = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                text = ("true" if item else "false") if isinstance(item, bool) else str(item)
                pairs.append((name, text))
    return pairs


# -- the Runtime's answers -> Ollama's JSON ---------------------------------------------


def timestamp(when: datetime | None = None) -> str:
    """RFC 3339 in UTC with microseconds, as Ollama's clients parse it."""
    when = when or datetime.now(UTC)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chunk_fields(out: dict[str, Any], chunk: Chunk, context: bool) -> dict[str, Any]:
    """Add a chunk's logprobs and, on the final chunk, done_reason and the counts."""
    if chunk.logprobs:
        out["logprobs"] = [_logprob(t) for t in chunk.logprobs]
    if chunk.prompt_logprobs:
        out["prompt_logprobs"] = [_logprob(t) for t in chunk.prompt_logprobs]
    if not chunk.done:
        return out
    out["done_reason"] = chunk.done_reason or "stop"
    if context and chunk.context is not None:
        out["context"] = chunk.context
    out |= {"total_duration": chunk.total_duration, "load_duration": chunk.load_duration,
            "prompt_eval_count": chunk.prompt_eval_count,
            "prompt_eval_duration": chunk.prompt_eval_duration,
            "eval_count": chunk.eval_count, "eval_duration": chunk.eval_duration,
            "prompt_tokens": chunk.prompt_tokens}
    if chunk.warnings:
        out["warnings"] = chunk.warnings
    return out


def _logprob(t: TokenLogprob) -> dict[str, Any]:
    out: dict[str, Any] = {"token": t.token, "logprob": _finite(t.logprob), "bytes": t.bytes}
    if t.top:
        out["top_logprobs"] = [{"token": a.token, "logprob": _finite(a.logprob),
                                "bytes": a.bytes} for a in t.top]
    return out


def _finite(value: float) -> float | None:
    """JSON has no nan or -inf: no value (the prompt's first token) is null."""
    return None if math.isnan(value) else max(value, -9999.0)


UNKNOWN_DETAILS = {"parent_model": "", "format": "gguf", "family": "", "families": None,
                   "parameter_size": "", "quantization_level": ""}


def tag_json(entry: ModelEntry, details: dict[str, Any]) -> dict[str, Any]:
    """One model of /api/tags, in Ollama's shape; a broken model adds ``broken`` (ours:
    why it cannot be used; ``DELETE /api/delete`` removes it)."""
    name = entry.name.display
    tag = {"name": name, "model": name, "modified_at": timestamp(entry.modified),
           "size": entry.size, "digest": _hex(entry.digest), "details": details}
    if entry.broken:
        tag["broken"] = entry.broken
    return tag


def config_details(config: dict[str, Any]) -> dict[str, Any]:
    """Details from a model's config blob, as Ollama's /api/tags reads them."""
    if not config:
        return UNKNOWN_DETAILS  # a broken model is still listed; show says what is wrong
    family = config.get("model_family", "")
    return {"parent_model": "", "format": config.get("model_format", "gguf"), "family": family,
            "families": config.get("model_families") or ([family] if family else None),
            "parameter_size": config.get("model_type", ""),
            "quantization_level": config.get("file_type", "")}


def details_json(d: ModelDetails) -> dict[str, Any]:
    return {"parent_model": "", "format": "gguf", "family": d.architecture,
            "families": [d.architecture] if d.architecture else None,
            "parameter_size": format_parameter_count(d.parameter_count),
            "quantization_level": d.quantization}


def show_json(d: ModelDetails) -> dict[str, Any]:
    out: dict[str, Any] = {"license": "\n".join(d.licenses), "modelfile": d.modelfile,
                           "parameters": _parameters_text(d.parameters),
                           "template": d.template or "", "system": d.system or ""}
    out = {k: v for k, v in out.items() if v}  # Ollama leaves empty fields out
    if d.messages:
        out["messages"] = d.messages
    out |= {"details": details_json(d), "model_info": _model_info(d),
            "capabilities": d.capabilities}
    if d.modified_at:
        out["modified_at"] = timestamp(datetime.fromisoformat(d.modified_at))
    return out


def _parameters_text(parameters: dict[str, Any]) -> str:
    """Ollama's form: the name padded to 30 columns, strings quoted, a stop per line."""
    lines = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            text = json.dumps(item) if isinstance(item, str | bool) else str(item)
            lines.append(f"{name:<30} {text}")
    return "\n".join(lines)


_ARRAY = re.compile(r"\[\d+ items\]")


def _model_info(d: ModelDetails) -> dict[str, Any]:
    """GGUF metadata; arrays (the vocabulary) are empty, as in Ollama's non-verbose show."""
    info = {k: [] if isinstance(v, str) and _ARRAY.fullmatch(v) else v
            for k, v in d.model_info.items()}
    info.setdefault("general.parameter_count", d.parameter_count)
    return info


def running_json(info: LoadedModelInfo) -> dict[str, Any]:
    # Kept until stopped: Ollama shows a date centuries away, which its clients expect.
    expires = info.expires_at or datetime.now(UTC) + timedelta(days=365 * 292)
    return {"name": info.name, "model": info.name, "size": info.size,
            "digest": _hex(info.digest), "details": {"parent_model": "", **info.details},
            "expires_at": timestamp(expires), "size_vram": info.size_vram,
            "context_length": info.context_length}


def _hex(digest: str) -> str:
    """Ollama lists bare hex digests."""
    return digest.removeprefix("sha256:")
