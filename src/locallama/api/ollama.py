"""Ollama's API, what a client sends: the requests <-> their JSON bodies.

One definition shared by the server's Ollama face (``server/ollama_api.py``) and the
client (``client.RemoteRuntime``), as Ollama's own ``api/types.go`` is shared by its
server and its Go client.  The bodies themselves (pydantic models: a wrong type is a
400 that names the field) are in ``api/ollama_bodies.py``; what a server answers is
in ``api/ollama_stream.py`` (a generate or chat answer's lines) and
``api/ollama_answers.py`` (records, progress, errors).  Field names and defaults
follow Ollama's docs/api.md.

The functions go both ways and are pure (no HTTP):

* ``generate_body`` / ``chat_body`` / ``create_body`` / ``embed_body``: the Runtime's
  request (or a parsed Modelfile) -> the JSON body a client sends, unset fields left
  out, so ``decode(Body.model_validate(encode(x))) == x``;
* ``generate_request`` / ``chat_request`` / ``create_modelfile``: a validated body ->
  the Runtime's request, refusing what cannot be translated (a file path where a
  model name belongs, a thinking request) and leaving every other check to the
  Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from locallama.api.ollama_bodies import ChatBody, CreateBody, EmbedBody, GenerateBody, Message
from locallama.errors import InvalidRequest, NotSupported
from locallama.options import parse_parameters
from locallama.runtime.types import (
    ChatRequest,
    GenerateRequest,
    KeepAlive,
    Tool,
    ToolCall,
)
from locallama.runtime.types import Message as RuntimeMessage
from locallama.store import parse_name
from locallama.store.modelfile import Modelfile, parse_modelfile

# -- generate and chat -----------------------------------------------------------------------


def generate_body(request: GenerateRequest) -> dict[str, Any]:
    """The /api/generate body for ``request``, defaults left out (no ``stream``: the
    caller says how it reads the answer)."""
    return _set({
        "model": request.model, "prompt": request.prompt, "system": request.system,
        "template": request.template, "suffix": request.suffix or None,
        "raw": request.raw or None, "context": request.context,
        "options": request.options or None, "format": request.format,
        "images": request.images, "keep_alive": request.keep_alive,
        "logprobs": request.logprobs or None, "top_logprobs": request.top_logprobs or None,
        "echo": request.echo or None, "think": request.think,
        "truncate": None if request.truncate else False,
        "shift": None if request.shift else False,
    })


def generate_request(body: GenerateBody) -> GenerateRequest:
    """The Runtime's request for a generate body (``think``: true/false or a level)."""
    return GenerateRequest(
        model=body.model, prompt=body.prompt or "", system=body.system or None,
        template=body.template or None, suffix=body.suffix or "", raw=bool(body.raw),
        context=body.context or None, options=body.options or {}, format=body.format or None,
        images=body.images or None, keep_alive=body.keep_alive,
        logprobs=bool(body.logprobs), top_logprobs=body.top_logprobs or 0,
        echo=bool(body.echo), truncate=body.truncate is not False,
        shift=body.shift is not False, think=_think(body.think),
    )


def chat_body(request: ChatRequest) -> dict[str, Any]:
    """The /api/chat body for ``request``, defaults left out (no ``stream``)."""
    return _set({
        "model": request.model, "messages": [message_json(m) for m in request.messages],
        "options": request.options or None, "format": request.format,
        "tools": [t.function_json() for t in request.tools] if request.tools else None,
        "keep_alive": request.keep_alive,
        "logprobs": request.logprobs or None, "top_logprobs": request.top_logprobs or None,
        "think": request.think,
        "truncate": None if request.truncate else False,
        "shift": None if request.shift else False,
    })


def chat_request(body: ChatBody) -> ChatRequest:
    """The Runtime's request for a chat body.  Raises InvalidRequest for a tool without
    a function name (``param`` names it: ``tools[i].function.name``). A tool message's
    ``tool_call_id`` names its tool when ``tool_name`` does not (the call with that id).
    Ollama has no ``tool_choice``: tools are the model's choice."""
    messages = [_message(m) for m in body.messages or ()]
    names = {c.id: c.name for m in messages for c in m.tool_calls if c.id}
    for message, raw in zip(messages, body.messages or (), strict=True):
        if message.role == "tool" and not message.tool_name and raw.tool_call_id:
            message.tool_name = names.get(raw.tool_call_id)
    return ChatRequest(
        model=body.model, messages=messages,
        options=body.options or {}, format=body.format or None,
        tools=[_tool(t, i) for i, t in enumerate(body.tools)] if body.tools else None,
        keep_alive=body.keep_alive, logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0, truncate=body.truncate is not False,
        shift=body.shift is not False, think=_think(body.think),
    )


def _think(value: bool | str | None) -> bool | str | None:
    """Ollama's ``think``: true/false, or a level ("low", "medium", "high"); the strings
    "true"/"false" as the booleans. The runtime refuses other levels, and thinking
    from a model that does not think."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _message(message: Message) -> RuntimeMessage:
    return RuntimeMessage(
        role=message.role, content=message.content or "", images=list(message.images or ()),
        tool_calls=[ToolCall(c.function.name, c.function.arguments, c.id or "")
                    for c in message.tool_calls or ()],
        tool_name=message.tool_name, thinking=message.thinking or "")


def _tool(tool: dict[str, Any], index: int) -> Tool:
    """A function tool, ``{"type": "function", "function": {name, description,
    parameters}}``; a tool without a function name is refused."""
    function = tool.get("function") if isinstance(tool, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a tool needs function.name, a non-empty string",
                             f"tools[{index}].function.name")
    description = function.get("description")
    parameters = function.get("parameters")
    return Tool(name, description if isinstance(description, str) else None,
                parameters if isinstance(parameters, dict) else None)


# -- messages and tool calls (requests, /api/show and chat answers alike) -----------------------


def message_json(message: RuntimeMessage) -> dict[str, Any]:
    """A message in Ollama's shape, with only the fields that are set."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.thinking:
        out["thinking"] = message.thinking
    if message.images:
        out["images"] = list(message.images)
    if message.tool_calls:
        out["tool_calls"] = tool_calls_json(message.tool_calls)
    if message.tool_name:
        out["tool_name"] = message.tool_name
    return out


def messages_of(items: Any) -> list[RuntimeMessage]:
    """Messages read back from an answer (``/api/show``), leniently: what is not an
    object is skipped, a missing field is its default."""
    return [RuntimeMessage(role=m.get("role", ""), content=m.get("content") or "",
                           images=list(m.get("images") or []),
                           tool_calls=tool_calls_of(m.get("tool_calls")),
                           tool_name=m.get("tool_name"), thinking=m.get("thinking") or "")
            for m in items or () if isinstance(m, dict)]


def tool_calls_json(calls: list[ToolCall], first: int = 0) -> list[dict[str, Any]]:
    """Ollama's shape: ``[{"id"?, "function": {"index", "name", "arguments": {...}}}]``,
    the calls numbered from ``first`` (a stream sends each call on its own line)."""
    out = []
    for i, c in enumerate(calls, first):
        item: dict[str, Any] = {"function": {"index": i, "name": c.name,
                                             "arguments": c.arguments}}
        if c.id:
            item["id"] = c.id
        out.append(item)
    return out


def tool_calls_of(items: Any) -> list[ToolCall]:
    """The inverse of ``tool_calls_json``, skipping entries without a function object."""
    return [ToolCall(c["function"].get("name", ""), c["function"].get("arguments") or {},
                     c.get("id") or "")
            for c in items or () if isinstance(c, dict) and isinstance(c.get("function"), dict)]


# -- embed --------------------------------------------------------------------------------------


def embed_body(model: str, inputs: list[str], truncate: bool = True,
               options: dict[str, Any] | None = None, keep_alive: KeepAlive = None,
               dimensions: int | None = None) -> dict[str, Any]:
    """The /api/embed body, unset fields left out."""
    return _set({"model": model, "input": inputs, "truncate": truncate, "options": options,
                 "keep_alive": keep_alive, "dimensions": dimensions})


def embed_inputs(body: EmbedBody) -> list[str]:
    """The texts of an embed body: one string, a list, or none (an empty string is none)."""
    if isinstance(body.input, str):
        return [body.input] if body.input else []
    return list(body.input or [])


# -- create -------------------------------------------------------------------------------------


def create_body(model: str, modelfile: Modelfile, files: dict[str, str] | None = None,
                adapters: dict[str, str] | None = None, quantize: str | None = None,
                imatrix: str | None = None) -> dict[str, Any]:
    """The /api/create body (Ollama's current shape) for a parsed Modelfile.

    ``files`` and ``adapters`` map file names to the digests of blobs already uploaded
    (FROM / ADAPTER named local files); without ``files``, FROM is sent as ``from``,
    a model name.  ``imatrix`` is the digest of an uploaded importance matrix
    (locallama's extension).  PARAMETERs are sent typed (a JSON object, stop as a
    list), so an unknown or malformed one raises InvalidRequest here, before any
    request.  No ``stream``: the caller says how it reads the answer.
    """
    body: dict[str, Any] = {"model": model}
    if files:  # the model file first, then its projectors'
        body["files"] = files
    else:
        body["from"] = modelfile.from_
    return body | _set({
        "adapters": adapters or None, "template": modelfile.template,
        "system": modelfile.system,
        "parameters": parse_parameters(modelfile.parameters) or None,
        "license": modelfile.licenses or None,
        "messages": [{"role": r, "content": c} for r, c in modelfile.messages] or None,
        "quantize": quantize or None, "imatrix": imatrix,
    })


def create_modelfile(body: CreateBody, blob_path: Callable[[str], Path]) -> Modelfile:
    """The Modelfile a create body describes: ``from`` a model, else uploaded ``files``,
    else the older ``modelfile`` text; the other fields override what that says.

    Files are reached only through the digests of uploaded blobs (``blob_path`` maps a
    digest to its file, raising for a malformed or unknown one), never a path the
    caller names: a client must not make the server read its own disk.  Raises
    InvalidRequest (no source, a path where a model name belongs), NotSupported (more
    than one adapter) and ModelfileError (unparsable ``modelfile`` text).  Several
    ``files`` are a model and its vision projectors (create tells which is which).
    """
    if body.from_:
        base = Modelfile(from_=_model_ref(body.from_))
    elif body.files and is_folder_upload(body.files):
        base = Modelfile(from_=f"./{UPLOADED_FOLDER}")  # the server lays it out there
    elif body.files:  # a model GGUF, and its vision projector GGUFs (told apart at create)
        paths = [str(blob_path(digest)) for digest in body.files.values()]
        base = Modelfile(from_=paths[0], projectors=paths[1:])
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
    base.parameters += _parameter_lines(body.parameters or {})
    return base


#: the folder, in create's scratch folder, that an uploaded model folder is laid out as
UPLOADED_FOLDER = "model"


def is_folder_upload(files: dict[str, str]) -> bool:
    """``files`` is a model folder (Hugging Face safetensors, converted by the server),
    not GGUF files (a model and its vision projectors): a name that is not a ``.gguf``."""
    return any(not name.lower().endswith(".gguf") for name in files)


def uploaded_folder(files: dict[str, str] | None, blob_path: Callable[[str], Path]
                    ) -> dict[str, Path]:
    """An uploaded model folder's files: relative name -> the blob uploaded for it
    ({} when ``files`` is absent or one GGUF file).  A name is a relative path of
    ``/``-separated parts, none empty, ``.`` or ``..``, no backslash or NUL, and not
    the folder of another name: InvalidRequest otherwise, as for an unknown digest."""
    if not files or not is_folder_upload(files):
        return {}
    out = {}
    for name, digest in files.items():
        parts = name.split("/")
        if (not name or len(name) > 1024 or "\\" in name or "\0" in name
                or any(p in ("", ".", "..") for p in parts)):
            raise InvalidRequest(f"files: {name[:100]!r} is not a relative file name "
                                 "inside the model folder")
        out[name] = blob_path(digest)
    for name in out:  # "a" and "a/b": a name that is a file cannot be a folder too
        parts = name.split("/")
        if folder := next((d for d in ("/".join(parts[:i]) for i in range(1, len(parts)))
                           if d in out), None):
            raise InvalidRequest(f"files: {folder[:100]!r} is both a file and the folder of "
                                 f"{name[:100]!r}")
    return out


def _model_ref(value: str) -> str:
    parse_name(value)  # a path does not parse as a name: refused with the name's rules
    return value


def _blob_or_model(value: str, blob_path: Callable[[str], Path]) -> str:
    """FROM/ADAPTER of an older Modelfile: ``@sha256:<hex>`` names an uploaded blob."""
    return str(blob_path(value[1:])) if value.startswith("@") else _model_ref(value)


def _only_blob(files: dict[str, str], field: str, blob_path: Callable[[str], Path]) -> Path:
    if len(files) != 1:
        raise NotSupported(f"{field}: exactly one GGUF file is supported (safetensors "
                           "folders are not supported yet)")
    return blob_path(next(iter(files.values())))


def _parameter_lines(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """JSON parameters as Modelfile PARAMETER lines; a list (stop) gives one line each."""
    pairs = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                text = ("true" if item else "false") if isinstance(item, bool) else str(item)
                pairs.append((name, text))
    return pairs


def _set(fields: dict[str, Any]) -> dict[str, Any]:
    """Only the fields that are set: null means "not set" to Ollama."""
    return {k: v for k, v in fields.items() if v is not None}
