"""Keeps loaded models so that consecutive requests do not reload them.

A model is reloaded when a request needs different context parameters
(num_ctx, num_batch, num_gpu, use_mmap), as Ollama does.  Keep-alive timers,
several models and the memory budget belong to the scheduler (a later step);
for now one generation model and one embedding model stay loaded.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from locallama.engine.params import ContextParams
from locallama.gguf_info import GGUFInfo, read_gguf_info
from locallama.options import Options

if TYPE_CHECKING:
    from locallama.engine.model import LoadedModel


class ModelLoader:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[bool, LoadedModel] = {}  # keyed by embedding mode
        self._info: dict[Path, GGUFInfo] = {}

    def info(self, path: Path) -> GGUFInfo:
        """GGUF info, validated once per blob (blobs never change under a digest)."""
        if path not in self._info:
            self._info[path] = read_gguf_info(path)
        return self._info[path]

    def get(self, path: Path, options: Options, embedding: bool = False
            ) -> tuple[LoadedModel, int]:
        """Return the loaded model and the nanoseconds spent loading it now (0 if cached)."""
        info = self.info(path)
        params = ContextParams.from_options(options, info, embedding)
        with self._lock:
            current = self._loaded.get(embedding)
            if current is not None and current.path == path and current.params == params:
                return current, 0
            if current is not None:
                with current.lock:  # wait for a generation in flight to finish
                    current.close()
                del self._loaded[embedding]
            from locallama.engine.model import LoadedModel  # llama.cpp loads on first use

            model = LoadedModel(path, info, params, options.threads)
            self._loaded[embedding] = model
            return model, model.load_duration

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def unload(self, path: Path | None = None) -> None:
        with self._lock:
            for key, model in list(self._loaded.items()):
                if path is None or model.path == path:
                    with model.lock:
                        model.close()
                    del self._loaded[key]

    def close(self) -> None:
        self.unload()
