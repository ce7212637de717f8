"""Ollama's API, the request bodies: what a client sends, as pydantic models.

The server's Ollama face (``server/ollama_api.py``) validates each body with these;
``api/ollama.py`` translates them into the Runtime's requests, and the Runtime's
requests into the JSON a client sends (which these models read back the same).
Field names and defaults follow Ollama's docs/api.md.

A wrong type is a 400 that names the field; fields this server does not use are
ignored, as Ollama ignores them; ``null`` means "not set" everywhere, as it does for
Ollama's Go structs; older clients send ``name`` instead of ``model`` and both are
accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from locallama.api.common import UnicodeBody
from locallama.runtime.types import Format, KeepAlive

# -- the bodies ----------------------------------------------------------------------------


class _Body(UnicodeBody):  # text that is not valid Unicode is refused (api/common.py)
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
    """``POST /api/generate``; an empty prompt loads the model (keep_alive 0: unloads)."""

    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool | None = None
    context: list[int] | None = None
    images: list[str] | None = None
    echo: bool | None = None  # locallama: score the prompt too (prompt_logprobs)


class ToolCallFunction(_Body):
    index: int | None = None
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallBody(_Body):
    id: str | None = None
    function: ToolCallFunction


class Message(_Body):
    """A chat message: ``{"role", "content", "thinking", "images", "tool_calls",
    "tool_name", "tool_call_id"}`` (https://docs.ollama.com/api/chat)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCallBody] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ChatBody(_Inference):
    """``POST /api/chat``; no messages loads the model (keep_alive 0: unloads)."""

    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None


class EmbedBody(_Named):
    """``POST /api/embed``: one input or a list; ``dimensions`` must match the model's."""

    input: str | list[str] | None = None
    truncate: bool | None = None  # None: true
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = Field(default=None, ge=1)


class EmbeddingsBody(_Named):
    """``POST /api/embeddings``, the older endpoint: one prompt, one vector."""

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
    """``POST /api/create`` in Ollama's current shape (``from`` or uploaded ``files``), or
    the older one (the Modelfile's text in ``modelfile``)."""

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
    """``POST /api/tokenize`` (locallama's): ``{"model", "content"}`` -> ``{"tokens"}``."""

    content: str = ""


class DetokenizeBody(_Named):
    """``POST /api/detokenize`` (locallama's): ``{"model", "tokens"}`` -> ``{"content"}``."""

    tokens: list[int] = Field(default_factory=list)
