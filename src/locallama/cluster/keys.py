"""Routing keys: which requests should land on the replica that already holds their
prefix in its KV cache, and the bounded table that remembers where each went.

No Ray import: the router (``cluster/routing.py``) and the tests use these alike.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Hashable

from locallama.runtime.types import ChatRequest, GenerateRequest


def route_key(request: ChatRequest | GenerateRequest, prefix_chars: int = 2048) -> str:
    """A short hex key for the prefix a request shares with its conversation's turns.

    A chat: the model and the messages up to and including the first user message
    (the system prompt and the first question stay the same on every later turn).
    A generate: the model, system, and the first ``prefix_chars`` characters of the
    prompt (a prompt that continues an earlier one shares them); with Ollama's
    ``context`` ids, the first 256 of those.  Equal prefixes give equal keys."""
    if isinstance(request, ChatRequest):
        head: list[object] = []
        for message in request.messages:
            head.append([message.role, message.content[:prefix_chars]])
            if message.role == "user":
                break
        parts: list[object] = ["chat", request.model, head]
    elif request.context:
        parts = ["context", request.model, request.context[:256]]
    else:
        parts = ["generate", request.model, request.system or "",
                 request.prompt[:prefix_chars]]
    data = json.dumps(parts, ensure_ascii=False, default=str).encode()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


class AffinityTable:
    """key -> the replica that served it last, least recently used dropped past
    ``max_keys``; safe across threads.  Lives in the router, one per ingress."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._table: OrderedDict[str, Hashable] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Hashable | None:
        with self._lock:
            replica = self._table.get(key)
            if replica is not None:
                self._table.move_to_end(key)
            return replica

    def put(self, key: str, replica: Hashable) -> None:
        with self._lock:
            self._table[key] = replica
            self._table.move_to_end(key)
            while len(self._table) > self.max_keys:
                self._table.popitem(last=False)

    def forget(self, replica: Hashable) -> None:
        """Drop every key held by a replica that died (its cache died with it)."""
        with self._lock:
            for key in [k for k, r in self._table.items() if r == replica]:
                del self._table[key]

    def __len__(self) -> int:
        return len(self._table)
