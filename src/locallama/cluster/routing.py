"""Prefix-aware routing, as a Ray Serve request router (``ray.serve.request_router``).

Each call from the ingress to a model's replicas carries ``route_key`` (see
``keys.route_key``).  The router runs inside the ingress's deployment handle: the
first rank it offers Ray Serve is the replica that served that key last (its slots
hold the conversation's KV cache, so the next turn evaluates only the new tokens);
the second rank is two other replicas drawn at random, of which Ray Serve takes the
less busy (power of two choices, by probed queue length).  A replica that is full
(``max_ongoing_requests``) or gone falls through to the second rank, and the key then
follows the conversation to its new replica.  The table is per ingress replica,
bounded (LOCALLAMA_CLUSTER_AFFINITY_MAX, least recently used dropped).
"""

from __future__ import annotations

import random
from typing import Any

from ray.serve.request_router import (
    FIFOMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

from locallama.cluster.keys import AffinityTable


def request_key(pending: PendingRequest | None) -> str | None:
    """The ``route_key`` keyword of a pending call, if it has one."""
    if pending is None:
        return None
    key = pending.kwargs.get("route_key")
    return key if isinstance(key, str) and key else None


class PrefixRouter(FIFOMixin, RequestRouter):
    """Sends a conversation back to the replica that holds its prefix; otherwise the
    less busy of two random replicas.  Counts hits and misses (``stats``)."""

    def initialize_state(self, max_keys: int = 100_000, prefix: bool = True,
                         **kwargs: Any) -> None:
        """``max_keys``: conversations remembered; ``prefix`` False ignores the keys
        (LOCALLAMA_CLUSTER_ROUTING=least_busy)."""
        self.affinity = AffinityTable(max_keys)
        self.prefix = prefix
        self.hits = 0
        self.misses = 0

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        ranks: list[list[RunningReplica]] = []
        others = list(candidate_replicas)
        key = request_key(pending_request) if self.prefix else None
        held = self.affinity.get(key) if key else None
        if held is not None:
            mine = [r for r in others if r.replica_id == held]
            if mine and self._has_room(mine[0]):
                ranks.append(mine)
                others.remove(mine[0])
        if len(others) > 2:
            others = random.sample(others, 2)
        if others:
            ranks.append(others)
        return ranks

    def _has_room(self, replica: RunningReplica) -> bool:
        queue = self.replica_queue_len_cache.get(replica.replica_id)
        return queue is None or queue < replica.max_ongoing_requests

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID,
                          result: Any) -> None:
        key = request_key(pending_request)
        if key is None or not self.prefix:
            return
        if self.affinity.get(key) == replica_id:
            self.hits += 1
        else:
            self.misses += 1
        self.affinity.put(key, replica_id)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.affinity.forget(replica_id)
