"""ClusterRuntime: the Runtime the ingress's faces talk to under ``serve --ray``.

The seam is the Runtime protocol, so ``server/`` is unchanged: inference (generate,
chat, embed, rerank, score, tokenizer calls) goes to the model's replicas through a
Ray Serve deployment handle, keyed for the prefix router; the store (list, show,
pull, create, copy, delete, blobs) is the head's own LocalRuntime, whose store the
replicas copy models from; ``ps`` is the head's directory of replicas, a row per
replica with its node.

A request's keep_alive is not passed on: a replica keeps its model while it lives and
Ray Serve's autoscaler (its downscale delay is LOCALLAMA_KEEP_ALIVE) unloads it; an
empty request with keep_alive 0 (``locallama stop``) deletes the model's application.
A model's application is deployed on its first request (or at start, for
LOCALLAMA_CLUSTER_MODELS).  A replica that dies before its first item is retried on
another (nothing was sent yet); one that dies mid-answer ends that stream with a
RunnerStopped error (a 500 line or event on the face), and the next request goes to
the replicas left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locallama.cluster import deploy
from locallama.cluster.config import ClusterConfig
from locallama.cluster.head import HEAD_NAME, NAMESPACE
from locallama.cluster.keys import route_key
from locallama.errors import LocallamaError, RunnerStopped
from locallama.progress import Progress
from locallama.runtime.types import (
    ChatRequest,
    Chunk,
    Details,
    Embeddings,
    GenerateRequest,
    KeepAlive,
    LoadedModelInfo,
    ModelDetails,
    ModelEntry,
    Reranking,
    Score,
    TokenizerInfo,
)
from locallama.store.names import parse_name

if TYPE_CHECKING:
    from locallama.runtime.local import LocalRuntime
    from locallama.settings import Settings
    from locallama.store.modelfile import Modelfile

ATTEMPTS = 3  # replicas tried for a request whose replica died before answering


class ClusterRuntime:
    """The Runtime over a Ray Serve cluster.  ``local``: the head's LocalRuntime (its
    store; it never loads a model here); ``env``: the LOCALLAMA_* environment the
    replicas get; ``config``: scaling and routing."""

    def __init__(self, local: LocalRuntime, config: ClusterConfig, env: Mapping[str, str]) -> None:
        import ray

        self.local = local
        self.settings: Settings = local.settings
        self.config = config
        self.env = dict(env)
        self.head = ray.get_actor(HEAD_NAME, namespace=NAMESPACE)
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- inference: the model's replicas ----------------------------------------

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        return self._stream("generate", request)

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        return self._stream("chat", request)

    def embed(self, model: str, inputs: list[str], truncate: bool = True,
              options: dict[str, Any] | None = None, keep_alive: KeepAlive = None,
              dimensions: int | None = None) -> Embeddings:
        return self._call(model, "embed", model, inputs, truncate, options, None, dimensions)

    def rerank(self, model: str, query: str, documents: list[str], top_n: int | None = None,
               options: dict[str, Any] | None = None, keep_alive: KeepAlive = None
               ) -> Reranking:
        return self._call(model, "rerank", model, query, documents, top_n, options, None)

    def score(self, model: str, pairs: list[tuple[str, str]],
              options: dict[str, Any] | None = None,
              progress: Callable[[int], None] | None = None) -> list[Score]:
        """Every pair on one replica, keyed by the first context: pairs that share a
        few-shot context stay together, on the replica that holds it."""
        key = route_key(GenerateRequest(model, prompt=pairs[0][0])) if pairs else None
        scores = self._call(model, "score", model, pairs, options, key=key)
        if progress is not None:
            progress(len(pairs))
        return scores

    def score_tokens(self, model: str, windows: list[list[int]], score_from: int,
                     options: dict[str, Any] | None = None,
                     progress: Callable[[int], None] | None = None) -> list[list[float]]:
        out = self._call(model, "score_tokens", model, windows, score_from, options)
        if progress is not None:
            progress(len(windows))
        return out

    def tokenize(self, model: str, text: str, add_special: bool = True) -> list[int]:
        return self._call(model, "tokenize", model, text, add_special)

    def token_pieces(self, model: str, tokens: list[int]) -> list[bytes]:
        return self._call(model, "token_pieces", model, tokens)

    def tokenizer_info(self, model: str) -> TokenizerInfo:
        return self._call(model, "tokenizer_info", model)

    def detokenize(self, model: str, tokens: list[int]) -> str:
        return self._call(model, "detokenize", model, tokens)

    def count_chat_tokens(self, request: ChatRequest) -> int:
        return self._call(request.model, "count_chat_tokens", request)

    def load(self, model: str, keep_alive: KeepAlive = None,
             options: dict[str, Any] | None = None) -> None:
        """Deploy the model's replicas (they load it as they start)."""
        self._handle(self._name(model))

    def unload(self, model: str) -> None:
        """Remove the model's application: every replica unloads (``locallama stop``)."""
        name = self._name(model)
        with self._lock:
            self._handles.pop(name, None)
            deploy.delete_model(name)

    def ps(self) -> list[LoadedModelInfo]:
        """A row per replica and model it holds, with the replica's id and node."""
        import ray

        rows = []
        for replica in ray.get(self.head.replicas.remote()):
            for m in replica["loaded"]:
                rows.append(LoadedModelInfo(
                    name=m["name"], digest=m["digest"], size=m["size"], expires_at=None,
                    context_length=m["context_length"], details=self._details(m["name"]),
                    size_vram=m["size_vram"], num_parallel=m["num_parallel"],
                    pid=m["pid"] or replica["pid"], rss=m["rss"],
                    replica=replica["replica"], node=replica["node_ip"]))
        return rows

    def replicas(self) -> list[dict[str, Any]]:
        """The head's directory: each live replica's model, node, pid, requests in
        flight and served (``GET /api/cluster``)."""
        import ray

        return ray.get(self.head.replicas.remote())

    def waiting(self) -> dict[str, int]:
        return {}

    # -- the store: the head's --------------------------------------------------

    def estimate(self, model: str, num_ctx: int, num_parallel: int = 1) -> int | None:
        return self.local.estimate(model, num_ctx, num_parallel)

    def offline_models(self) -> list[str]:
        return self.local.offline_models()

    def list(self) -> list[ModelEntry]:
        return self.local.list()

    def show(self, model: str) -> ModelDetails:
        return self.local.show(model)

    def create(self, model: str, modelfile: Modelfile, base_dir: Path,
               progress: Progress | None = None, quantize: str | None = None,
               imatrix: Path | None = None) -> None:
        self.local.create(model, modelfile, base_dir, progress, quantize, imatrix)

    def copy(self, source: str, destination: str) -> None:
        self.local.copy(source, destination)

    def delete(self, model: str) -> None:
        self.local.delete(model)

    def pull(self, model: str, progress: Progress | None = None, insecure: bool = False) -> None:
        self.local.pull(model, progress, insecure)

    def has_blob(self, digest: str) -> bool:
        return self.local.has_blob(digest)

    def add_blob(self, digest: str, data: Iterable[bytes]) -> None:
        self.local.add_blob(digest, data)

    def blob_path(self, digest: str) -> Path:
        return self.local.blob_path(digest)

    def close(self) -> None:
        self.local.close()

    # -- helpers ------------------------------------------------------------------

    def _name(self, model: str) -> str:
        """The model's display name; ModelNotFound (before any deploy) if the head's
        store lacks it."""
        name = parse_name(model).display
        self.local.store.get(name)
        return name

    def _details(self, model: str) -> Details:
        try:
            return Details.from_config(self.local.store.get(model).config)
        except LocallamaError:
            return Details()

    def _handle(self, model: str) -> Any:
        if (handle := self._handles.get(model)) is not None:
            return handle  # deployed: no lock (a deploy in progress holds it for seconds)
        with self._lock:
            handle = self._handles.get(model)
            if handle is None:
                if deploy.app_name(model) not in deploy.deployed_models():
                    scaling = self.config.scaling(model)
                    num_ctx = self.local.store.get(model).params.get("num_ctx", 4096)
                    memory = self.local.estimate(model, int(num_ctx), self.settings.num_parallel
                                                 or int(scaling.target_ongoing_requests))
                    deploy.deploy_model(model, self.env, self.config, memory)
                handle = self._handles[model] = deploy.model_handle(model)
            return handle

    def _stream(self, kind: str, request: ChatRequest | GenerateRequest) -> Iterator[Chunk]:
        model = self._name(request.model)
        key = route_key(request, self.config.prefix_chars)
        # a replica keeps its model while it lives; Serve's autoscaler is the keep_alive
        request = replace(request, keep_alive=None)
        for attempt in range(ATTEMPTS):
            answer = self._handle(model).options(stream=True).stream.remote(
                kind, request, route_key=key)
            try:
                identity = next(answer)
                break
            except Exception as exc:
                if not _replica_gone(exc) or attempt == ATTEMPTS - 1:
                    raise _typed(exc, model, None) from None
        return self._relay(answer, identity, model)

    def _relay(self, answer: Any, identity: dict[str, Any], model: str) -> Iterator[Chunk]:
        try:
            yield from answer
        except Exception as exc:
            raise _typed(exc, model, identity) from None
        finally:
            answer.cancel()  # a closed stream (client gone) stops the replica's job

    def _call(self, model: str, method: str, *args: Any, key: str | None = None) -> Any:
        name = self._name(model)
        for attempt in range(ATTEMPTS):
            try:
                return self._handle(name).call.remote(method, *args, route_key=key).result()
            except Exception as exc:
                if not _replica_gone(exc) or attempt == ATTEMPTS - 1:
                    raise _typed(exc, name, None) from None
        raise AssertionError("unreachable")


def _replica_gone(exc: BaseException) -> bool:
    """A replica died or became unreachable (worth another replica)."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(exc, ActorDiedError | ActorUnavailableError | RayActorError)


def _typed(exc: BaseException, model: str, identity: dict[str, Any] | None) -> LocallamaError:
    """A replica's failure as the typed error the faces answer: the runtime's own error
    as it was raised there; a replica gone mid-answer a RunnerStopped naming it."""
    from ray.exceptions import RayTaskError

    cause: BaseException = exc
    while isinstance(cause, RayTaskError) and getattr(cause, "cause", None) is not None:
        cause = cause.cause  # Ray wraps what the replica raised; unwrap to the original
    if isinstance(cause, LocallamaError) and not isinstance(cause, RayTaskError):
        return cause
    where = f" on {identity['node_ip']} (replica {identity['replica']})" if identity else ""
    if _replica_gone(exc):
        return RunnerStopped(f"the replica of {model}{where} stopped while answering "
                             f"({type(exc).__name__}); new requests go to the other replicas")
    return LocallamaError(f"the replica of {model}{where} failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}")
