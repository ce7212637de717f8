"""RemoteRuntime: the Runtime protocol spoken over a running server's Ollama API.

DESIGN.md rule 2: the CLI, evals and the everyday commands talk to a Runtime and
should not care whether the engine is in this process or behind ``locallama serve``
(or Ollama itself).  This module is the HTTP half only: the httpx client, streamed lines,
blob uploads and transport errors.  Every translation (a request dataclass to the
JSON body Ollama documents, each answer back to the dataclass LocalRuntime returns,
an error body to its typed error) is ``api/ollama.py``, ``api/ollama_stream.py`` and
``api/ollama_answers.py``, the same code the server's face uses, so callers cannot
tell the two runtimes apart.
Errors come back typed: the body's ``code`` (a LocallamaError code, when the server
sends one) wins, then the HTTP status; the server's message is kept word for word.

Beyond Ollama's API this uses ``/api/tokenize`` and ``/api/detokenize``
(``{"model", "content"}`` -> ``{"tokens"}`` and back), and passes ``echo`` and
reads ``prompt_logprobs``, ``prompt_tokens`` and ``warnings`` when present.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from locallama.api.ollama import chat_body, create_body, embed_body, generate_body
from locallama.api.ollama_answers import (
    embeddings_of,
    error_of,
    progress_of,
    running_of,
    show_of,
    tag_of,
)
from locallama.api.ollama_stream import chunks_of
from locallama.api.rerank import rerank_body, reranking_of
from locallama.api.tokens import tokenizer_info_from_json
from locallama.errors import InvalidRequest, LocallamaError, NotSupported
from locallama.options import parse_parameters
from locallama.progress import Progress, ProgressEvent, silent
from locallama.runtime.types import (
    ChatRequest,
    Chunk,
    Embeddings,
    GenerateRequest,
    KeepAlive,
    LoadedModelInfo,
    ModelDetails,
    ModelEntry,
    Reranking,
    TokenizerInfo,
)
from locallama.settings import Settings
from locallama.store import parse_name
from locallama.store.blobs import CHUNK, digest_file
from locallama.store.create import source_path as modelfile_path
from locallama.store.hf_convert import check_folder, folder_files
from locallama.store.modelfile import Modelfile
from locallama.store.sources import bundled_names


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
        return self._chunks("/api/generate", generate_body(request), chat=False)

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        return self._chunks("/api/chat", chat_body(request), chat=True)

    def _chunks(self, path: str, body: dict[str, Any], chat: bool) -> Iterator[Chunk]:
        """Nothing is sent until the first chunk is asked for, so a slow model load
        happens where the caller iterates and can stop it (the REPL's Ctrl-C).  Errors
        therefore raise at the first ``next()`` (LocalRuntime raises some at the call).

        Closing this generator closes the HTTP stream, and the server stops generating.
        """
        with closing(self._lines("POST", path, body | {"stream": True})) as lines:
            for chunk in chunks_of(lines, chat):
                yield chunk
                if chunk.done:
                    return
        raise LocallamaError(f"the server at {self.base_url} ended the answer before it was done")

    def embed(self, model: str, inputs: list[str], truncate: bool = True,
              options: dict[str, Any] | None = None, keep_alive: KeepAlive = None,
              dimensions: int | None = None) -> Embeddings:
        """``dimensions``, when set, must be the model's (the server refuses others)."""
        return embeddings_of(self._call("POST", "/api/embed", embed_body(
            model, inputs, truncate, options, keep_alive, dimensions)))

    def rerank(self, model: str, query: str, documents: list[str], top_n: int | None = None,
               options: dict[str, Any] | None = None, keep_alive: KeepAlive = None
               ) -> Reranking:
        """Through ``POST /api/rerank``; the texts come from ``documents`` by index."""
        return reranking_of(self._call("POST", "/api/rerank", rerank_body(
            model, query, documents, top_n, options, keep_alive)), documents)

    def load(self, model: str, keep_alive: KeepAlive = None,
             options: dict[str, Any] | None = None) -> None:
        """An empty generate loads the model, as Ollama documents."""
        self._call("POST", "/api/generate", {"model": model, "keep_alive": keep_alive,
                                             "options": options or {}, "stream": False})

    def unload(self, model: str) -> None:
        """An empty generate with keep_alive 0 unloads it (what ``ollama stop`` sends)."""
        self._call("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False})

    def ps(self) -> list[LoadedModelInfo]:
        return [running_of(m) for m in self._call("GET", "/api/ps").get("models") or []]

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

    def tokenize(self, model: str, text: str, add_special: bool = True) -> list[int]:
        if add_special:
            return self._call("POST", "/api/tokenize", {"model": model, "content": text})["tokens"]
        return self._call("POST", "/tokenize", {"model": model, "prompt": text,
                                                "add_special_tokens": False})["tokens"]

    def token_pieces(self, model: str, tokens: list[int]) -> list[bytes]:
        raise NotSupported("token pieces are read in-process; over HTTP, POST /tokenize "
                           "with_pieces gives them for a text")

    def tokenizer_info(self, model: str) -> TokenizerInfo:
        return tokenizer_info_from_json(self._call("GET", f"/tokenizer_info?model={quote(model)}"))

    def detokenize(self, model: str, tokens: list[int]) -> str:
        return self._call("POST", "/api/detokenize", {"model": model, "tokens": tokens})["content"]

    def count_chat_tokens(self, request: ChatRequest) -> int:
        raise NotSupported("counting a chat prompt's tokens runs in-process or on the "
                           "server's /v1/messages/count_tokens; the Ollama API has no route "
                           "for it")

    # -- the store ----------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        return [tag_of(m) for m in self._call("GET", "/api/tags").get("models") or []]

    def show(self, model: str) -> ModelDetails:
        """/api/show has no digest or size (as in Ollama); the model's list entry does."""
        name = parse_name(model)
        data = self._call("POST", "/api/show", {"model": model})
        entry = next((e for e in self.list() if e.name.key() == name.key()), None)
        return show_of(data, entry.name.display if entry else name.display,
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
        parse_parameters(modelfile.parameters)  # a bad PARAMETER fails before any upload
        files = adapters = None
        if (source := modelfile_path(modelfile.from_, base_dir)) is not None:
            if source.is_dir():  # a safetensors folder: each file, the server converts
                check_folder(source)  # a bad folder fails before any upload
                files = {name: self._upload(source / name, report)
                         for name in folder_files(source)}
            else:
                files = {source.name: self._upload(source, report)}
        for value in modelfile.projectors:  # vision projector files go with the model's
            projector = modelfile_path(value, base_dir)
            if projector is None or files is None or source is None or source.is_dir():
                raise InvalidRequest(f"FROM {value}: a projector file needs the model's "
                                     "FROM to be a GGUF file too")
            files[f"{len(files)}-{projector.name}"] = self._upload(projector, report)
        if modelfile.adapter:
            adapter = modelfile_path(modelfile.adapter, base_dir)
            if adapter is None:
                raise InvalidRequest(f"ADAPTER {modelfile.adapter}: no such file")
            adapters = {adapter.name: self._upload(adapter, report)}
        matrix = self._upload(imatrix, report) if imatrix is not None else None
        body = create_body(model, modelfile, files, adapters, quantize, matrix)
        self._progress("/api/create", body | {"stream": True}, report)

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

    def pull(self, model: str, progress: Progress | None = None,
             insecure: bool = False) -> None:
        body: dict[str, Any] = {"model": model, "stream": True}
        if insecure:
            body["insecure"] = True
        self._progress("/api/pull", body, progress or silent)

    def _progress(self, path: str, body: dict[str, Any], report: Progress) -> None:
        with closing(self._lines("POST", path, body)) as lines:
            for data in lines:
                report(progress_of(data))

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
        content = None if payload is None else _json_body(payload)
        with self._transport_errors():
            response = self._http.request(method, path, content=content, headers=_JSON)
        self._raise_for(response, path)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise LocallamaError(f"the server at {self.base_url} sent {path} a non-JSON "
                                 "answer") from None

    def _lines(self, method: str, path: str, body: dict[str, Any]
               ) -> Iterator[dict[str, Any]]:
        """The NDJSON lines of a streamed answer; an ``error`` line raises, typed."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)  # answers take time
        content = _json_body(body)
        with self._transport_errors(), self._http.stream(method, path, timeout=timeout,
                                                         content=content, headers=_JSON
                                                         ) as response:
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


_JSON = {"Content-Type": "application/json"}


def _json_body(payload: dict[str, Any]) -> bytes:
    """A request body as UTF-8 JSON; InvalidRequest for what JSON or UTF-8 cannot carry
    (NaN or infinite numbers, text with a lone surrogate, as undecodable command-line
    bytes become), before anything is sent."""
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except ValueError as exc:  # UnicodeEncodeError is a ValueError too
        if isinstance(exc, UnicodeEncodeError):
            raise InvalidRequest(f"the request holds text that is not valid Unicode (a lone "
                                 f"surrogate U+{ord(exc.object[exc.start]):04X})") from None
        raise InvalidRequest(f"the request holds a number JSON cannot carry ({exc})") from None


def _json_line(line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except ValueError:
        raise LocallamaError(f"the server sent a line that is not JSON: {line[:80]!r}") from None
    if not isinstance(data, dict):
        raise LocallamaError(f"the server sent a line that is not an object: {line[:80]!r}")
    return data


def _error(status: int | None, payload: Any, path: str, base_url: str) -> LocallamaError:
    """The typed error for an error answer (``error_of``); one without a message is
    worded from its status."""
    if (exc := error_of(payload, status)) is not None:
        return exc
    if status in (404, 405):  # no such route: an older or a different server
        return NotSupported(f"the server at {base_url} does not offer {path}")
    return LocallamaError(f"the server at {base_url} answered {path} with status {status}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # 0.0.0.0 reaches this machine

