"""A model's replica: a Ray Serve deployment whose every replica owns one LocalRuntime
(so one runner process, as ``serve`` has) holding that one model.

On start a replica copies the model from the head if its node lacks it
(``head.copy_model``), loads it (kept while the replica lives: Ray Serve's autoscaler,
with the keep_alive as its downscale delay, is what unloads it), and reports to the
head's directory.  Calls come from the ingress's ``ClusterRuntime`` through a
deployment handle and the prefix router; each streamed answer starts with the
replica's identity (a dict), then the runtime's ``Chunk``s unchanged.

The runtime's iterators block, so each is driven in this replica's own thread pool
(one thread per request it takes: ``max_ongoing_requests``) from async methods,
leaving Ray Serve's event loop free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from locallama.cluster.head import HEAD_NAME, HEARTBEAT_S, NAMESPACE, copy_model
from locallama.runtime.types import ChatRequest, GenerateRequest

#: the Runtime methods a replica answers through ``call`` (the rest are the head's)
CALLS = frozenset({"embed", "rerank", "score", "score_tokens", "tokenize", "detokenize",
                   "token_pieces", "tokenizer_info", "count_chat_tokens"})
_DONE = object()


class ModelReplica:
    """One replica of one model.  ``env`` is the LOCALLAMA_* environment the head was
    started with (a worker node's LOCALLAMA_HOME comes from LOCALLAMA_CLUSTER_NODE_HOME
    when set)."""

    def __init__(self, model: str, env: Mapping[str, str], max_ongoing: int = 16) -> None:
        import ray
        from ray import serve

        from locallama.runtime.local import LocalRuntime
        from locallama.settings import Settings

        # The replica's lifetime is the model's: Ray Serve's autoscaler unloads it.
        env = {**env, "LOCALLAMA_KEEP_ALIVE": "-1"}
        for key, value in env.items():  # this process is the replica's alone
            os.environ[key] = value
        self.model = model
        self.runtime = LocalRuntime(Settings.from_env(env))
        self.head = ray.get_actor(HEAD_NAME, namespace=NAMESPACE)
        context = ray.get_runtime_context()
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        self.identity = {"replica": self.replica_id, "node": context.get_node_id(),
                         "node_ip": ray.util.get_node_ip_address(),
                         "actor": context.get_actor_name() or "", "pid": os.getpid()}
        self.copied = copy_model(self.runtime.store, model, self.head)
        self.runtime.load(model, keep_alive=-1)
        self.pool = ThreadPoolExecutor(max_ongoing + 2, thread_name_prefix="replica")
        self._stop = threading.Event()
        self._counts_lock = threading.Lock()
        self._ongoing = self._served = self._seq = 0
        self._beat()
        threading.Thread(target=self._beats, name="replica-heartbeat", daemon=True).start()

    # -- calls from the ingress -------------------------------------------------

    async def stream(self, kind: str, request: ChatRequest | GenerateRequest,
                     route_key: str | None = None) -> AsyncIterator[Any]:
        """``kind`` "chat" or "generate": this replica's identity, then the Chunks."""
        run = self.runtime.chat if kind == "chat" else self.runtime.generate
        self._report(+1)
        try:
            yield dict(self.identity)
            async for chunk in self._drive(lambda: run(request)):  # type: ignore[arg-type]
                yield chunk
        finally:
            self._report(-1)

    async def call(self, method: str, *args: Any, route_key: str | None = None,
                   **kwargs: Any) -> Any:
        """One of ``CALLS`` on this replica's runtime; its errors raise as they are."""
        if method not in CALLS:
            raise ValueError(f"not a replica call: {method}")
        fn = getattr(self.runtime, method)
        self._report(+1)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.pool, lambda: fn(*args, **kwargs))
        finally:
            self._report(-1)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._stop.set()
            self.head.leave.remote(self.replica_id)
            self.runtime.close()

    # -- helpers ------------------------------------------------------------------

    async def _drive(self, start: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
        """A blocking iterator's items, each ``next`` in the pool; closed (so the job is
        cancelled in the scheduler) when the caller stops listening."""
        loop = asyncio.get_running_loop()
        iterator = await loop.run_in_executor(self.pool, start)
        try:
            while (item := await loop.run_in_executor(self.pool, next, iterator, _DONE)) \
                    is not _DONE:
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                await loop.run_in_executor(self.pool, close)

    def _counted(self, change: int = 0) -> dict[str, int]:
        """This replica's counts after ``change`` (+1 a request starts, -1 it ends),
        with the next report sequence number."""
        with self._counts_lock:
            self._ongoing += change
            self._served += max(change, 0)
            self._seq += 1
            return {"seq": self._seq, "ongoing": self._ongoing, "served": self._served}

    def _report(self, change: int) -> None:
        counts = self._counted(change)
        self.head.counts.remote(self.replica_id, counts["seq"], counts["ongoing"],
                                counts["served"])

    def _beat(self) -> None:
        loaded = [{"name": i.name, "digest": i.digest, "size": i.size,
                   "context_length": i.context_length, "size_vram": i.size_vram,
                   "num_parallel": i.num_parallel, "pid": i.pid, "rss": i.rss}
                  for i in self.runtime.ps()]
        self.head.register.remote(self.identity | self._counted()
                                  | {"model": self.model, "loaded": loaded})

    def _beats(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):
                self._beat()
