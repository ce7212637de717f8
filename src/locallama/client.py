"""RemoteRuntime: the Runtime protocol spoken over a running server's Ollama API.

DESIGN.md rule 2: the CLI, evals and tasks talk to a Runtime and should not care
whether the engine is in this process or behind ``locallama serve`` (or Ollama
itself).  Everything here translates: a request dataclass becomes the JSON body
Ollama documents, and every response line becomes the same dataclass the
LocalRuntime returns (Chunk, Embeddings, ModelDetails, LoadedModelInfo,
ModelEntry), so callers cannot tell the two apart.  Errors come back typed: the
body's ``code`` (a LocallamaError code, when the server sends one) wins, then
the HTTP status; the server's message is kept word for word.

Beyond Ollama's API this uses ``/api/tokenize`` and ``/api/detokenize``
(``{"model", "content"}`` -> ``{"tokens"}`` and back), and passes ``echo`` and
reads ``prompt_logprobs``, ``prompt_tokens`` and ``warnings`` when present.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from locallama import errors
from locallama.errors import InvalidRequest, LocallamaError, ModelNotFound, NotSupported
from locallama.options import parse_parameters
from locallama.progress import Progress, ProgressEvent, silent
from locallama.runtime.types import (
    ChatRequest,
    Chunk,
    Details,
    Embeddings,
    GenerateRequest,
    KeepAlive,
    LoadedModelInfo,
    Message,
    ModelDetails,
    ModelEntry,
    TokenLogprob,
    ToolCall,
)
from locallama.server.ollama_schemas import message_json, tools_json
from locallama.settings import Settings
from locallama.store import parse_name
from locallama.store.blobs import CHUNK, digest_file
from locallama.store.create import source_path as modelfile_path
from locallama.store.modelfile import Modelfile
from locallama.store.sources import bundled_names

#: a LocallamaError class for each ``code`` a server may put beside ``error``
_BY_CODE: dict[str, type[LocallamaError]] = {
    cls.code: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, LocallamaError)
}
_BY_STATUS: dict[int, type[LocallamaError]] = {
    400: InvalidRequest, 401: errors.Unauthorized, 403: errors.Forbidden, 404: ModelNotFound,
    413: errors.PayloadTooLarge, 501: NotSupported, 503: errors.ServerBusy,
    507: errors.StorageFull,
}


class RemoteRuntime:
    """A Runtime whose engine and store live in the server at ``settings.base_url``."""

    def __init__(self, settings: Settings | None = None, timeout: float = 600.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``transport`` replaces the network (tests fake a server with httpx.MockTransport)."""
        self.settings = settings or Settings.from_env()
        self.base_url = self.settings.base_url
        key = self.settings.api_key
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=5.0),
            headers={"Authorization": f"Bearer {key}"} if key else {},
            trust_env=not _is_loopback(self.settings.host),  # no proxy for this machine
            transport=transport,
        )

    # -- inference ----------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        body = {
            "model": request.model, "prompt": request.prompt, "system": request.system,
            "template": request.template, "suffix": request.suffix or None,
            "raw": request.raw or None, "context": request.context,
            "options": request.options or None, "format": request.format,
            "images": request.images, "keep_alive": request.keep_alive,
            "logprobs": request.logprobs or None, "top_logprobs": request.top_logprobs or None,
            "echo": request.echo or None,
            "truncate": None if request.truncate else False,
            "shift": None if request.shift else False,
        }
        return self._chunks("/api/generate", body, chat=False)

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        body = {
            "model": request.model, "messages": [message_json(m) for m in request.messages],
            "options": request.options or None, "format": request.format,
            "tools": tools_json(request.tools) if request.tools else None,
            "keep_alive": request.keep_alive,
            "logprobs": request.logprobs or None, "top_logprobs": request.top_logprobs or None,
            "truncate": None if request.truncate else False,
            "shift": None if request.shift else False,
        }
        return self._chunks("/api/chat", body, chat=True)

    def _chunks(self, path: str, body: dict[str, Any], chat: bool) -> Iterator[Chunk]:
        """Nothing is sent until the first chunk is asked for, so a slow model load
        happens where the caller iterates and can stop it (the REPL's Ctrl-C).  Errors
        therefore raise at the first ``next()`` (LocalRuntime raises some at the call).

        Closing this generator closes the HTTP stream, and the server stops generating.
        """
        body = {k: v for k, v in body.items() if v is not None} | {"stream": True}
        tool_calls = None
        with closing(self._lines("POST", path, json=body)) as lines:
            for data in lines:
                part = (data.get("message") or {}) if chat else data
                text = part.get("content" if chat else "response") or ""
                tool_calls = _tool_calls(part.get("tool_calls")) or tool_calls
                if data.get("done"):
                    yield _final_chunk(data, text, tool_calls)
                    return
                if text or not part.get("tool_calls"):  # tool calls ride on the final chunk
                    yield Chunk(text=text, logprobs=_logprobs(data.get("logprobs")),
                                prompt_logprobs=_logprobs(data.get("prompt_logprobs")))
        raise LocallamaError(f"the server at {self.base_url} ended the answer before it was done")

    def embed(self, model: str, inputs: list[str], truncate: bool = True,
              options: dict[str, Any] | None = None, keep_alive: KeepAlive = None
              ) -> Embeddings:
        data = self._call("POST", "/api/embed", {
            "model": model, "input": inputs, "truncate": truncate, "options": options,
            "keep_alive": keep_alive,
        })
        return Embeddings(data.get("embeddings", []), data.get("prompt_eval_count", 0),
                          data.get("total_duration", 0), data.get("load_duration", 0))

    def load(self, model: str, keep_alive: KeepAlive = None,
             options: dict[str, Any] | None = None) -> None:
        """An empty generate loads the model, as Ollama documents."""
        self._call("POST", "/api/generate", {"model": model, "keep_alive": keep_alive,
                                             "options": options or {}, "stream": False})

    def unload(self, model: str) -> None:
        """An empty generate with keep_alive 0 unloads it (what ``ollama stop`` sends)."""
        self._call("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False})

    def ps(self) -> list[LoadedModelInfo]:
        return [
            LoadedModelInfo(
                name=m.get("name") or m.get("model", ""), digest=_digest(m.get("digest", "")),
                size=m.get("size", 0), expires_at=_expiry(m.get("expires_at")),
                context_length=m.get("context_length", 0), details=_details_of(m.get("details")),
                size_vram=m.get("size_vram", 0),
            )
            for m in self._call("GET", "/api/ps").get("models") or []
        ]

    def waiting(self) -> dict[str, int]:
        """The Ollama API does not say how many requests wait."""
        return {}

    def estimate(self, model: str, num_ctx: int, num_parallel: int = 1) -> int | None:
        """The model file is on the server, not here."""
        return None

    def offline_models(self) -> list[str]:
        """The bundled default: a locallama server pulls it without a network, and so
        does this process when no server answers."""
        return bundled_names()

    def tokenize(self, model: str, text: str) -> list[int]:
        return self._call("POST", "/api/tokenize", {"model": model, "content": text})["tokens"]

    def detokenize(self, model: str, tokens: list[int]) -> str:
        return self._call("POST", "/api/detokenize", {"model": model, "tokens": tokens})["content"]

    # -- the store ----------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        return [_entry(m) for m in self._call("GET", "/api/tags").get("models") or []]

    def show(self, model: str) -> ModelDetails:
        """/api/show has no digest or size (as in Ollama); the model's list entry does."""
        name = parse_name(model)
        data = self._call("POST", "/api/show", {"model": model})
        entry = next((e for e in self.list() if e.name.key() == name.key()), None)
        return _details(data, entry.name.display if entry else name.display,
                        entry.digest if entry else "", entry.size if entry else 0)

    def create(self, model: str, modelfile: Modelfile, base_dir: Path,
               progress: Progress | None = None, quantize: str | None = None,
               imatrix: Path | None = None) -> None:
        """Upload a local FROM (and ADAPTER) file; send the rest of the Modelfile.

        The body is Ollama's current /api/create shape; the server validates the
        template and option ranges, as LocalRuntime.create does.
        """
        report = progress or silent
        parse_name(model)
        parsed = modelfile
        params = parse_parameters(parsed.parameters)
        body: dict[str, Any] = {"model": model, "stream": True}
        source = modelfile_path(parsed.from_, base_dir)
        if source is None:
            body["from"] = parsed.from_
        else:
            body["files"] = {source.name: self._upload(source, report)}
        if parsed.adapter:
            adapter = modelfile_path(parsed.adapter, base_dir)
            if adapter is None:
                raise InvalidRequest(f"ADAPTER {parsed.adapter}: no such file")
            body["adapters"] = {adapter.name: self._upload(adapter, report)}
        extra = {"template": parsed.template, "system": parsed.system,
                 "parameters": params or None, "license": parsed.licenses or None,
                 "messages": [{"role": r, "content": c} for r, c in parsed.messages] or None}
        body |= {k: v for k, v in extra.items() if v is not None}
        if quantize:
            body["quantize"] = quantize
        if imatrix is not None:  # an extension of Ollama's body: the uploaded file's digest
            body["imatrix"] = self._upload(imatrix, report)
        self._progress("/api/create", body, report)

    def _upload(self, path: Path, report: Progress) -> str:
        """Send a file as a blob unless the server has it already; return its digest."""
        report(ProgressEvent(f"hashing {path.name}"))
        digest = digest_file(path)
        if self.has_blob(digest):
            return digest
        total, done = path.stat().st_size, 0

        def blocks() -> Iterator[bytes]:
            nonlocal done
            with path.open("rb") as f:
                while block := f.read(CHUNK):
                    done += len(block)
                    report(ProgressEvent(f"copying file {digest}", digest, total, done))
                    yield block

        self.add_blob(digest, blocks())
        return digest

    def score(self, model: str, pairs: list[tuple[str, str]],
              options: dict[str, Any] | None = None, progress=None) -> list:
        raise NotSupported("scoring runs in-process (locallama eval, perplexity); the Ollama "
                           "API has no scoring call")

    def score_tokens(self, model: str, windows: list[list[int]], score_from: int,
                     options: dict[str, Any] | None = None, progress=None) -> list:
        raise NotSupported("token scoring runs in-process (locallama perplexity); the Ollama "
                           "API has no scoring call")

    def copy(self, source: str, destination: str) -> None:
        self._call("POST", "/api/copy", {"source": source, "destination": destination})

    def delete(self, model: str) -> None:
        self._call("DELETE", "/api/delete", {"model": model})

    def pull(self, model: str, progress: Progress | None = None) -> None:
        self._progress("/api/pull", {"model": model, "stream": True}, progress or silent)

    def _progress(self, path: str, body: dict[str, Any], report: Progress) -> None:
        with closing(self._lines("POST", path, json=body)) as lines:
            for data in lines:
                report(ProgressEvent(str(data.get("status", "")), data.get("digest"),
                                     data.get("total"), data.get("completed")))

    def has_blob(self, digest: str) -> bool:
        with self._transport_errors():
            response = self._http.head(f"/api/blobs/{digest}")
        if response.status_code == 404:
            return False
        self._raise_for(response, f"/api/blobs/{digest}")
        return True

    def add_blob(self, digest: str, data: Iterable[bytes]) -> None:
        path = f"/api/blobs/{digest}"
        with self._transport_errors():
            response = self._http.post(path, content=data)
        self._raise_for(response, path)

    def blob_path(self, digest: str) -> Path:
        raise NotSupported(f"blob {digest} lives on the server at {self.base_url}, not here")

    def close(self) -> None:
        self._http.close()

    # -- HTTP -------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request, one JSON answer (or {} for an empty body)."""
        payload = None if body is None else {k: v for k, v in body.items() if v is not None}
        with self._transport_errors():
            response = self._http.request(method, path, json=payload)
        self._raise_for(response, path)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise LocallamaError(f"the server at {self.base_url} sent {path} a non-JSON "
                                 "answer") from None

    def _lines(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The NDJSON lines of a streamed answer; an ``error`` line raises, typed."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)  # answers take time
        with self._transport_errors(), self._http.stream(method, path, timeout=timeout,
                                                         **kwargs) as response:
            if response.is_error:
                response.read()
                self._raise_for(response, path)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                data = _json_line(line)
                if "error" in data:
                    raise _error(None, data, path, self.base_url)
                yield data

    def _raise_for(self, response: httpx.Response, path: str) -> None:
        if not response.is_error:
            return
        try:
            payload = response.json() if response.content else None
        except ValueError:
            payload = None
        raise _error(response.status_code, payload, path, self.base_url)

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """Network failures as one clear line instead of an httpx traceback."""
        try:
            yield
        except httpx.ConnectError:
            raise LocallamaError(f"no locallama server answers at {self.base_url} (start one "
                                 "with 'locallama serve')") from None
        except httpx.TimeoutException:
            raise LocallamaError(f"the server at {self.base_url} did not answer in time"
                                 ) from None
        except httpx.TransportError as exc:
            raise LocallamaError(f"lost the connection to {self.base_url}: {exc}") from None


# -- JSON -> the Runtime's dataclasses ----------------------------------------------


def _final_chunk(data: dict[str, Any], text: str, tool_calls: Any) -> Chunk:
    context = data.get("context")
    eval_count = data.get("eval_count", 0)
    whole_prompt = len(context) - eval_count if context else data.get("prompt_eval_count", 0)
    return Chunk(
        text=text, done=True, done_reason=data.get("done_reason"),
        prompt_eval_count=data.get("prompt_eval_count", 0),
        prompt_eval_duration=data.get("prompt_eval_duration", 0),
        eval_count=eval_count, eval_duration=data.get("eval_duration", 0),
        load_duration=data.get("load_duration", 0),
        total_duration=data.get("total_duration", 0), context=context,
        logprobs=_logprobs(data.get("logprobs")),
        prompt_logprobs=_logprobs(data.get("prompt_logprobs")),
        tool_calls=tool_calls or None,
        prompt_tokens=data.get("prompt_tokens", whole_prompt),
        warnings=list(data.get("warnings") or []),
    )


def _logprobs(items: list[dict[str, Any]] | None) -> list[TokenLogprob] | None:
    if items is None:
        return None
    return [
        TokenLogprob(
            token=item.get("token", ""),
            logprob=float("nan") if item.get("logprob") is None else item["logprob"],
            bytes=list(item.get("bytes") or []),
            top=_logprobs(item.get("top_logprobs")) or [],
        )
        for item in items
    ]


def _entry(m: dict[str, Any]) -> ModelEntry:
    return ModelEntry(name=parse_name(m.get("model") or m["name"]),
                      digest=_digest(m.get("digest", "")), size=m.get("size", 0),
                      modified=datetime.fromisoformat(m["modified_at"]),
                      details=_details_of(m.get("details")), broken=m.get("broken") or None)


def _details_of(d: Any) -> Details:
    d = d if isinstance(d, dict) else {}
    return Details(format=d.get("format") or "gguf", family=d.get("family") or "",
                   families=list(d.get("families") or []),
                   parameter_size=d.get("parameter_size") or "",
                   quantization_level=d.get("quantization_level") or "")


def _tool_calls(items: Any) -> list[ToolCall]:
    return [ToolCall(c["function"].get("name", ""), c["function"].get("arguments") or {})
            for c in items or () if isinstance(c, dict) and isinstance(c.get("function"), dict)]


def _message(m: dict[str, Any]) -> Message:
    return Message(role=m.get("role", ""), content=m.get("content") or "",
                   images=list(m.get("images") or []),
                   tool_calls=_tool_calls(m.get("tool_calls")), tool_name=m.get("tool_name"))


def _details(data: dict[str, Any], name: str, digest: str, size: int) -> ModelDetails:
    """Ollama's show answer, read back: numbers from model_info, the rest as sent."""
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
        parameters=_parameters(data.get("parameters")),
        messages=[_message(m) for m in data.get("messages") or () if isinstance(m, dict)],
        licenses=[license_] if isinstance(license_, str) else list(license_),
        modelfile=data.get("modelfile", ""), model_info=info,
        modified_at=data.get("modified_at", ""),
        capabilities=list(data.get("capabilities") or ["completion"]),
    )


def _parameters(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """Ollama sends parameters as text, a ``name value`` line each (strings quoted)."""
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


def _digest(value: str) -> str:
    """Ollama lists bare hex digests; the store says ``sha256:<hex>``."""
    return value if not value or value.startswith("sha256:") else f"sha256:{value}"


def _expiry(value: str | None) -> datetime | None:
    """None for a model kept until stopped (Ollama sends a date centuries away)."""
    if not value:
        return None
    when = datetime.fromisoformat(value)
    return None if when.year >= 2200 else when


def _json_line(line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except ValueError:
        raise LocallamaError(f"the server sent a line that is not JSON: {line[:80]!r}") from None
    if not isinstance(data, dict):
        raise LocallamaError(f"the server sent a line that is not an object: {line[:80]!r}")
    return data


def _error(status: int | None, payload: Any, path: str, base_url: str) -> LocallamaError:
    """The typed error for an error answer: its code, else its status; message as sent."""
    error = payload.get("error") if isinstance(payload, dict) else None
    code = payload.get("code") if isinstance(payload, dict) else None
    if isinstance(error, dict):  # an OpenAI-shaped body
        error, code = error.get("message"), error.get("code") or code
    if not error:
        if status in (404, 405):  # no such route: an older or a different server
            return NotSupported(f"the server at {base_url} does not offer {path}")
        return LocallamaError(f"the server at {base_url} answered {path} with status {status}")
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status or 0, LocallamaError)
    exc = cls.__new__(cls)
    LocallamaError.__init__(exc, str(error))  # the server's words, whatever the class
    if isinstance(exc, ModelNotFound):
        exc.name = str(error).partition("'")[2].partition("'")[0]
    if isinstance(exc, InvalidRequest):
        exc.param = payload.get("param") if isinstance(payload, dict) else None
    if isinstance(exc, errors.ModelfileError):
        exc.line = None
    if isinstance(exc, errors.ServerBusy):
        exc.retry_after = 1
    return exc


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # 0.0.0.0 reaches this machine

