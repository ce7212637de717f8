"""Which models are loaded: a memory budget, least-recently-used unloading, keep_alive.

Several models stay loaded side by side while they fit.  Before a load the
loader estimates what the model needs (weights + KV cache for num_ctx x
num_parallel + compute buffers) and compares it with the memory the machine
can give: a model that cannot fit even alone is refused with both numbers; one
that fits only without others first unloads idle models, least recently used
first, as does a load beyond LOCALLAMA_MAX_LOADED_MODELS.  A busy model is
never unloaded under its requests: the load waits for it to go idle.

A model is reloaded when a request needs different context parameters
(num_ctx, num_batch, num_gpu, use_mmap, num_thread, kv_cache_type), as Ollama does.
The KV cache's element type (LOCALLAMA_KV_CACHE_TYPE, or a model's kv_cache_type
option) is counted in the estimate and checked before anything loads.  Two
requests that need the same model at once load it once.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from locallama.batch_exact import speed_settings
from locallama.engine.params import ContextParams
from locallama.errors import ModelTooLarge, ServerBusy
from locallama.gguf_info import GGUFInfo, estimate_memory, read_gguf_info
from locallama.kvcache import check_kv_cache, kv_cache_type
from locallama.options import Options
from locallama.units import format_bytes

if TYPE_CHECKING:
    from locallama.engine.embedding import EmbeddingModel
    from locallama.engine.model import LoadedModel

DEFAULT_MAX_LOADED = 3  # Ollama's default on a machine without a GPU
AUTO_PARALLEL = 4  # Ollama's choice when memory allows, else 1


@dataclass(eq=False)
class Entry:
    key: tuple[Path, bool]  # blob path, embedding mode
    params: ContextParams
    size: int  # the memory estimate it was admitted with
    name: str
    digest: str
    keep_alive: float | None  # seconds after the last request; None: forever
    expires_at: float | None = None  # wall clock; None while in use or kept forever
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    model: LoadedModel | EmbeddingModel | None = None  # None while loading
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    unload_when_idle: bool = False


def available_memory() -> int:
    """Memory the system can give without swapping (MemAvailable on Linux)."""
    import psutil

    return int(psutil.virtual_memory().available)


class ModelLoader:
    def __init__(self, memory: Callable[[], int] = available_memory, num_parallel: int = 0,
                 max_loaded: int = 0, flash_attention: bool | None = None, max_queue: int = 0,
                 runner: str = "process", kv_cache_type: str = "f16",
                 repack: bool | None = None, batch_padding: bool = True) -> None:
        self._memory = memory
        self.runner = runner  # "process": each model in a runner; "inprocess": in this one
        self.max_queue = max_queue  # requests that may wait per model; 0: no bound
        # flash attention and repacking: None lets batch_exact.speed_settings choose per model
        self.flash_attention = flash_attention
        self.kv_cache_type = kv_cache_type  # unless a model's kv_cache_type option says
        self.repack = repack
        self.batch_padding = batch_padding  # engine/padding.py
        self.num_parallel = num_parallel  # 0: choose from memory
        self.max_loaded = max_loaded or DEFAULT_MAX_LOADED
        self._lock = threading.Condition()
        self._loaded: dict[tuple[Path, bool], Entry] = {}
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
            digest: str = "", keep_alive: float | None = 300.0, projector: Path | None = None,
            draft: Path | None = None) -> Iterator[tuple[LoadedModel | EmbeddingModel, int]]:
        """Hold a loaded model for one request; yields it and the ns spent loading it.
        ``projector``: a vision projector GGUF loaded beside a generation model (the same
        model with another projector, or none, is another load).  ``draft``: a draft
        model's file, loaded beside it for speculative decoding."""
        entry, load_ns = self._acquire(path, options, embedding, name, digest, keep_alive,
                                       None if embedding or projector is None else str(projector),
                                       draft)
        try:
            yield entry.model, load_ns
        finally:
            self._release(entry)

    # -- acquiring ---------------------------------------------------------------

    def _acquire(self, path: Path, options: Options, embedding: bool, name: str, digest: str,
                 keep_alive: float | None, projector: str | None = None,
                 draft: Path | None = None) -> tuple[Entry, int]:
        info = self.info(path)
        key = (path, embedding)
        wanted = ContextParams.from_options(options, info, embedding)
        kv_type = wanted.kv_cache_type or self.kv_cache_type
        # an embedding model keeps both off unless set (nobody measured what they buy it)
        flash, repack = speed_settings(() if embedding else info.tensor_types,
                                       self.flash_attention, self.repack,
                                       kv_cache_type(kv_type).quantized)
        wanted = dataclasses.replace(wanted, repack=repack, draft=draft, kv_cache_type=kv_type,
                                     flash_attention=flash,
                                     batch_padding=self.batch_padding and not embedding)
        if projector:
            wanted = dataclasses.replace(wanted, projector=projector)
        if not embedding:  # refused before the same model loaded otherwise is unloaded
            check_kv_cache(info, kv_cache_type(kv_type), flash)
        freed = 0  # what unloading the same model with other parameters gave back
        with self._lock:
            while True:
                entry = self._loaded.get(key)
                if entry is None:
                    entry = self._reserve(key, info, wanted, name, digest, keep_alive, freed)
                    break
                if entry.model is not None and getattr(entry.model, "ended", bool)():
                    del self._loaded[key]  # its runner died: a fresh one, not its error
                    continue
                if _same(entry.params, wanted) and not entry.unload_when_idle:
                    if entry.model is None:
                        self._check_queue(entry)
                    entry.active += 1
                    entry.keep_alive, entry.expires_at = keep_alive, None
                    entry.last_used = time.monotonic()
                    if entry.model is None:
                        self._lock.wait_for(entry.ready.is_set)
                    if entry.error is not None:
                        entry.active -= 1
                        raise entry.error
                    return entry, 0
                # The same model with other context parameters: reload once it is idle.
                if entry.active == 0 and entry.model is not None:
                    freed += entry.size
                    self._drop(entry)
                else:
                    entry.unload_when_idle = True
                    self._lock.wait(timeout=1.0)
        return entry, self._load(entry, info)

    def _check_queue(self, entry: Entry) -> None:
        """ServerBusy when ``max_queue`` requests already wait for a model that loads
        (beyond the ones its ``num_parallel`` slots take as soon as it is loaded)."""
        waiting = entry.active - max(1, entry.params.num_parallel)
        if self.max_queue > 0 and waiting >= self.max_queue:
            raise ServerBusy(f"model '{entry.name}' is busy loading: {waiting} requests are "
                             f"already waiting (LOCALLAMA_MAX_QUEUE={self.max_queue}); "
                             "try again shortly")

    def _reserve(self, key: tuple[Path, bool], info: GGUFInfo, wanted: ContextParams,
                 name: str, digest: str, keep_alive: float | None, freed: int) -> Entry:
        """Make room for a new model (caller holds ``_lock``) and enter it as loading."""
        kind = kv_cache_type(wanted.kv_cache_type)  # checked by _acquire
        per_element = kind.bytes_per_element
        parallel = wanted.num_parallel if wanted.embedding else self.num_parallel
        if not wanted.embedding and not parallel:
            # Ollama's choice: 4 parallel sequences when they fit beside the rest, else 1.
            room = self._memory() + freed + self._idle_size()
            fits = estimate_memory(info, wanted.num_ctx, AUTO_PARALLEL,
                                   per_element).total <= room
            parallel = AUTO_PARALLEL if fits else 1
        params = dataclasses.replace(wanted, num_parallel=parallel)
        need = estimate_memory(info, params.num_ctx, params.num_parallel, per_element).total
        if params.projector:  # its weights (a little more while it encodes an image)
            need += os.path.getsize(params.projector)
        if params.draft is not None:  # the draft model and its own KV cache
            need += estimate_memory(self.info(params.draft), params.num_ctx,
                                    params.num_parallel, per_element).total
        while True:
            others = [e for e in self._loaded.values()]
            have = self._memory() + freed
            if need <= have and len(others) < self.max_loaded:
                break
            if need > have + sum(e.size for e in others):
                raise ModelTooLarge(
                    f"model requires {format_bytes(need)} of memory (weights and a KV cache "
                    f"for num_ctx {params.num_ctx} x {params.num_parallel} parallel) but only "
                    f"{format_bytes(have + sum(e.size for e in others))} is available; "
                    "try a smaller num_ctx, fewer parallel requests or a smaller quantization")
            idle = [e for e in others if e.active == 0 and e.model is not None]
            if idle:
                victim = min(idle, key=lambda e: e.last_used)
                freed += victim.size
                self._drop(victim)
            else:
                self._lock.wait(timeout=1.0)  # busy models: wait until one goes idle
        entry = Entry(key, params, need, name, digest, keep_alive, active=1)
        self._loaded[key] = entry
        return entry

    def _idle_size(self) -> int:
        return sum(e.size for e in self._loaded.values() if e.active == 0 and e.model)

    def _load(self, entry: Entry, info: GGUFInfo) -> int:
        """Load outside the lock, so other models keep serving meanwhile; the ns it
        took, all of it (a runner's start, the weights, the context), in both modes."""
        path, embedding = entry.key
        started = time.perf_counter_ns()
        try:
            if self.runner != "inprocess":
                from locallama.engine.runner_client import RunnerModel

                model = RunnerModel(path, info, entry.params, self.max_queue, entry.name,
                                    on_exit=lambda: self._runner_stopped(entry))
            elif embedding:
                from locallama.engine.embedding import EmbeddingModel

                model = EmbeddingModel(path, info, entry.params)
            else:
                from locallama.engine.draft import open_draft
                from locallama.engine.model import LoadedModel
                from locallama.engine.scheduler import Scheduler

                model = LoadedModel(path, info, entry.params)
                try:
                    model.scheduler = Scheduler(model, self.max_queue, entry.name,
                                                draft=open_draft(model))
                except BaseException:
                    model.close()
                    raise
        except BaseException as exc:
            with self._lock:
                entry.error = exc
                self._loaded.pop(entry.key, None)
                entry.ready.set()
                self._lock.notify_all()
            raise
        with self._lock:
            entry.model = model
            entry.ready.set()
            self._lock.notify_all()
        return time.perf_counter_ns() - started

    def _runner_stopped(self, entry: Entry) -> None:
        """A runner died: forget its entry, so the next request starts a fresh one (the
        requests it served have their error; they release the entry as usual)."""
        with self._lock:
            if self._loaded.get(entry.key) is entry:
                del self._loaded[entry.key]
            self._lock.notify_all()

    # -- releasing ---------------------------------------------------------------

    def _release(self, entry: Entry) -> None:
        with self._lock:
            entry.active -= 1
            entry.last_used = time.monotonic()
            self._lock.notify_all()
            if entry.active or self._loaded.get(entry.key) is not entry:
                return
            if entry.keep_alive == 0 or entry.unload_when_idle:
                self._drop(entry)
            elif entry.keep_alive is not None:
                entry.expires_at = time.time() + entry.keep_alive
                self._start_reaper()

    def _drop(self, entry: Entry) -> None:
        """Unload one idle entry (caller holds ``_lock``)."""
        if self._loaded.get(entry.key) is entry:
            del self._loaded[entry.key]
        if entry.model is not None:
            entry.model.close()
        self._lock.notify_all()

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="keep-alive", daemon=True)
            self._reaper.start()
        self._lock.notify_all()

    def _reap(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.time()
                for entry in list(self._loaded.values()):
                    if entry.active == 0 and entry.expires_at is not None \
                            and entry.expires_at <= now:
                        self._drop(entry)
                waits = [e.expires_at - now for e in self._loaded.values()
                         if e.expires_at is not None]
                if not waits:
                    return
                self._lock.wait(timeout=max(0.05, min(waits)))

    # -- looking and unloading ---------------------------------------------------

    def entries(self) -> list[Entry]:
        with self._lock:
            return [e for e in self._loaded.values() if e.model is not None]

    def loaded(self) -> list[LoadedModel | EmbeddingModel]:
        return [e.model for e in self.entries()]

    def unload(self, path: Path | None = None) -> None:
        """Unload now what is idle; what is busy unloads when its last request ends."""
        with self._lock:
            for entry in list(self._loaded.values()):
                if path is None or entry.key[0] == path:
                    if entry.active == 0 and entry.model is not None:
                        self._drop(entry)
                    else:
                        entry.unload_when_idle = True

    def close(self) -> int:
        """Unload every model not in use; returns how many are left loaded.

        In a runner, a model in use is stopped too (its requests end with
        Cancelled): the process ends, so nothing is left behind.  In-process, a model
        in use has a request thread inside llama.cpp (a long tokenization, say, at
        shutdown): freeing its weights and context under that call makes llama.cpp
        abort the process, so it is left as it is, for the process's end to reclaim,
        and unloads when its last request ends if the process lives on.
        """
        with self._lock:
            self._closed = True
            busy = 0
            for entry in list(self._loaded.values()):
                if entry.model is None:
                    continue
                if entry.active and self.runner == "inprocess":
                    entry.unload_when_idle = True
                    busy += 1
                else:
                    self._drop(entry)
            self._lock.notify_all()
            return busy


def _same(loaded: ContextParams, wanted: ContextParams) -> bool:
    """Whether a loaded context serves a request (the loader chooses num_parallel and
    flash attention, not the request; a request that names no draft model takes the
    model with or without one)."""
    if wanted.draft is not None and wanted.draft != loaded.draft:
        return False
    chosen = {"num_parallel": 0, "flash_attention": False, "draft": None}
    return dataclasses.replace(loaded, **chosen) == dataclasses.replace(wanted, **chosen)
