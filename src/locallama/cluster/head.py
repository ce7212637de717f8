"""The head's actor: the store every node copies models from, and the directory of
replicas (model, node, pid, requests in flight and served) that ``ps`` reads.

One named actor (``locallama-head`` in namespace ``locallama``) on the head node,
started by ``serve --ray``; it lives as long as that process does.  Replicas report
to it (``counts`` on each request's start and end, a heartbeat every few seconds); an
entry whose heartbeat is older than ``STALE_S`` is dropped (a killed replica stops
beating).  The head is a threaded actor, so two reports from one replica may run in
either order: each carries the replica's own totals and a sequence number, and an
older report never overwrites a newer one (a count kept as +1/-1 messages would leak
a request when its end overtook its start).

``copy_model`` is the replica's side of "models on every node": a replica whose node
lacks the model's manifest or any of its blobs fetches them from the head in
``CHUNK`` pieces, each blob hashed on arrival (``BlobStore.add_stream`` with the
expected digest: a blob that hashes otherwise never enters the store), the manifest
written last, as a pull does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from locallama.store.manifests import parse_manifest
from locallama.store.names import parse_name
from locallama.store.store import Store

HEAD_NAME = "locallama-head"
NAMESPACE = "locallama"
CHUNK = 8 * 1024 * 1024  # bytes per blob read over Ray
HEARTBEAT_S = 2.0
STALE_S = 3 * HEARTBEAT_S


@dataclass
class ReplicaInfo:
    """One replica as ``ps`` and ``/api/cluster`` show it."""

    replica: str  # Ray Serve's replica id
    model: str
    node: str  # Ray node id
    node_ip: str
    actor: str  # the replica actor's name (namespace "serve")
    pid: int
    ongoing: int = 0
    served: int = 0
    seq: int = -1  # the sequence number of the report ``ongoing``/``served`` came from
    loaded: list[dict[str, Any]] = field(default_factory=list)  # its runtime's ps rows
    seen: float = field(default_factory=time.monotonic)


class Head:
    """The head's store (read side) and the replica directory; run as a Ray actor with
    a few threads (``max_concurrency``)."""

    def __init__(self, models_dir: str) -> None:
        self.store = Store(models_dir)
        self._replicas: dict[str, ReplicaInfo] = {}
        self._lock = threading.Lock()

    # -- the store, read by nodes that lack a model ------------------------------

    def manifest(self, model: str) -> bytes:
        """The manifest bytes of ``model``; ModelNotFound if the head lacks it."""
        return self.store.read_manifest(parse_name(model))[1]

    def read_blob(self, digest: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a blob from ``offset`` (b"" at its end)."""
        with self.store.blobs.path(digest).open("rb") as f:
            f.seek(offset)
            return f.read(min(size, CHUNK))

    # -- the directory ------------------------------------------------------------

    def register(self, info: dict[str, Any]) -> None:
        """A replica's heartbeat (its identity, ps rows, and counts with their ``seq``):
        its fields replace what was known, ``seen`` now; counts older than the ones
        held are kept out."""
        with self._lock:
            old = self._replicas.get(info["replica"])
            entry = ReplicaInfo(**info)
            if old is not None and old.seq > entry.seq:
                entry.ongoing, entry.served, entry.seq = old.ongoing, old.served, old.seq
            self._replicas[entry.replica] = entry

    def counts(self, replica: str, seq: int, ongoing: int, served: int) -> None:
        """A replica's requests in flight and served so far, as of its report ``seq``
        (increasing per replica); ignored when a later report has already arrived."""
        with self._lock:
            entry = self._replicas.get(replica)
            if entry is not None and seq > entry.seq:
                entry.ongoing, entry.served, entry.seq = ongoing, served, seq

    def leave(self, replica: str) -> None:
        with self._lock:
            self._replicas.pop(replica, None)

    def replicas(self) -> list[dict[str, Any]]:
        """Live replicas (heartbeat within STALE_S), by model then replica id."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, r in self._replicas.items() if now - r.seen > STALE_S]:
                del self._replicas[key]
            rows = sorted(self._replicas.values(), key=lambda r: (r.model, r.replica))
            return [asdict(r) | {"seen": now - r.seen} for r in rows]


def copy_model(store: Store, model: str, head: Any) -> int:
    """Make ``model`` present in ``store`` by copying what it lacks from the head actor
    (its manifest, then each missing blob, digest-checked); returns bytes copied.

    Raises the head's ModelNotFound for a model the head lacks, DigestMismatch for a
    blob that arrives changed, StorageFull/StorageError for a full or failing disk."""
    import ray

    name = parse_name(model)
    data = ray.get(head.manifest.remote(name.display))
    manifest = parse_manifest(data, where=f"manifest of {name.display} from the head")
    copied = 0
    for layer in [manifest.config, *manifest.layers]:
        if store.blobs.has(layer.digest):
            continue

        def chunks(digest: str = layer.digest) -> Iterator[bytes]:
            offset = 0
            while piece := ray.get(head.read_blob.remote(digest, offset, CHUNK)):
                offset += len(piece)
                yield piece

        _, size = store.blobs.add_stream(chunks(), expected=layer.digest, needed=layer.size)
        copied += size
    if not store.exists(name) or store.read_manifest(name)[1] != data:
        store.write_manifest(name, manifest)
    return copied
