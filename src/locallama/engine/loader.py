"""Keeps loaded models for keep_alive after their last request, then unloads them.

A model is reloaded when a request needs different context parameters
(num_ctx, num_batch, num_gpu, use_mmap), as Ollama does.  For now one
generation model and one embedding model stay loaded at a time; several models
under a memory budget, and batching, belong to the scheduler (a later step).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from locallama.engine.params import ContextParams
from locallama.errors import ModelTooLarge
from locallama.gguf_info import GGUFInfo, estimate_memory, format_bytes, read_gguf_info
from locallama.options import Options

if TYPE_CHECKING:
    from locallama.engine.model import LoadedModel


@dataclass
class Entry:
    model: LoadedModel
    name: str
    digest: str
    keep_alive: float | None  # seconds after the last request; None: forever
    expires_at: float | None = None  # wall clock; None while in use or kept forever
    active: int = 0

    @property
    def size(self) -> int:
        params = self.model.params
        return estimate_memory(self.model.info, params.num_ctx).total


def available_memory() -> int:
    """Memory the system can give without swapping (MemAvailable on Linux)."""
    import psutil

    return int(psutil.virtual_memory().available)


class ModelLoader:
    def __init__(self, memory: Callable[[], int] = available_memory) -> None:
        self._memory = memory
        self._lock = threading.Condition()
        self._loaded: dict[bool, Entry] = {}  # keyed by embedding mode
        self._info: dict[Path, GGUFInfo] = {}
        self._reaper: threading.Thread | None = None
        self._closed = False

    def info(self, path: Path) -> GGUFInfo:
        """GGUF info, validated once per blob (blobs never change under a digest)."""
        if path not in self._info:
            self._info[path] = read_gguf_info(path)
        return self._info[path]

    @contextmanager
    def use(self, path: Path, options: Options, *, embedding: bool = False, name: str = "",
            digest: str = "", keep_alive: float | None = 300.0
            ) -> Iterator[tuple[LoadedModel, int]]:
        """Hold a loaded model for one request; yields it and the ns spent loading it."""
        entry, load_ns = self._acquire(path, options, embedding, name, digest, keep_alive)
        try:
            yield entry.model, load_ns
        finally:
            self._release(entry, embedding)

    def _acquire(self, path: Path, options: Options, embedding: bool, name: str, digest: str,
                 keep_alive: float | None) -> tuple[Entry, int]:
        info = self.info(path)
        params = ContextParams.from_options(options, info, embedding)
        with self._lock:
            current = self._loaded.get(embedding)
            if current is not None and current.model.path == path and \
                    current.model.params == params:
                current.active += 1
                current.keep_alive, current.expires_at = keep_alive, None
                return current, 0
            freed = current.size if current is not None else 0
            self._check_fits(info, params, freed)
            if current is not None:
                self._drop(embedding)
            from locallama.engine.model import LoadedModel  # llama.cpp loads on first use

            model = LoadedModel(path, info, params, options.threads)
            entry = Entry(model, name, digest, keep_alive, active=1)
            self._loaded[embedding] = entry
            return entry, model.load_duration

    def _check_fits(self, info: GGUFInfo, params: ContextParams, freed: int) -> None:
        """Refuse a model that would push the machine into swap, naming both numbers."""
        need = estimate_memory(info, params.num_ctx).total
        have = self._memory() + freed
        if need > have:
            raise ModelTooLarge(
                f"model requires {format_bytes(need)} of memory (weights and a KV cache for "
                f"num_ctx {params.num_ctx}) but only {format_bytes(have)} is available; "
                "try a smaller num_ctx or a smaller quantization")

    def _release(self, entry: Entry, embedding: bool) -> None:
        with self._lock:
            entry.active -= 1
            if entry.active or self._loaded.get(embedding) is not entry:
                return
            if entry.keep_alive == 0:
                self._drop(embedding)
            elif entry.keep_alive is not None:
                entry.expires_at = time.time() + entry.keep_alive
                self._start_reaper()
                self._lock.notify_all()

    def _drop(self, embedding: bool) -> None:
        """Unload one entry (caller holds ``_lock``); waits for a stream in flight."""
        entry = self._loaded.pop(embedding)
        with entry.model.lock:
            entry.model.close()

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="keep-alive", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.time()
                for key, entry in list(self._loaded.items()):
                    if entry.active == 0 and entry.expires_at is not None \
                            and entry.expires_at <= now:
                        self._drop(key)
                waits = [e.expires_at - now for e in self._loaded.values()
                         if e.expires_at is not None]
                if not waits:
                    return
                self._lock.wait(timeout=max(0.05, min(waits)))

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._loaded.values())

    def loaded(self) -> list[LoadedModel]:
        return [e.model for e in self.entries()]

    def unload(self, path: Path | None = None) -> None:
        with self._lock:
            for key, entry in list(self._loaded.items()):
                if path is None or entry.model.path == path:
                    self._drop(key)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self.unload()
