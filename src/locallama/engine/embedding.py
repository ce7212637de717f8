"""An embedding model: llama.cpp's pooled sequence embeddings, normalized."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_api

import locallama.engine.model  # noqa: F401  (silences llama.cpp's log before a load here)
from locallama.engine.params import ContextParams
from locallama.engine.rerank import rank
from locallama.errors import BadModelFile, InvalidRequest, not_unicode
from locallama.gguf_info import GGUFInfo

_DEFAULTS_LOCK = threading.Lock()


@contextlib.contextmanager
def _repacking(repack: bool) -> Iterator[None]:
    """While the block runs, ``llama_cpp.Llama`` loads weights repacked or not as
    ``repack`` says: it has no argument for llama.cpp's ``use_extra_bufts`` (on by
    default), so its source of default model parameters is wrapped, one load at a
    time (the only ``Llama`` here; ``engine/model.py`` sets the flag itself)."""
    original = llama_cpp_api.llama_model_default_params

    def defaults() -> llama_cpp.llama_model_params:
        params = original()
        params.use_extra_bufts = repack
        return params

    with _DEFAULTS_LOCK:
        llama_cpp_api.llama_model_default_params = defaults
        try:
            yield
        finally:
            llama_cpp_api.llama_model_default_params = original


class EmbeddingModel:
    """One model and context in embedding mode; requests take turns on ``lock``."""

    def __init__(self, path: Path, info: GGUFInfo, params: ContextParams) -> None:
        self.path = path
        self.info = info
        self.params = params
        self.lock = threading.Lock()
        self.scheduler = None
        started = time.perf_counter_ns()
        try:
            with _repacking(params.repack):  # LOCALLAMA_REPACK; off unless set
                self.llm = self._load(path, info, params)
        except (ValueError, RuntimeError, OSError) as exc:
            raise BadModelFile(f"llama.cpp could not load {path.name}: {exc}") from None
        self.load_duration = time.perf_counter_ns() - started

    @staticmethod
    def _load(path: Path, info: GGUFInfo, params: ContextParams) -> llama_cpp.Llama:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=params.num_ctx,
            # A non-causal model sees a whole input in one micro-batch, and
            # llama-cpp-python cuts each input at n_batch tokens: both are the
            # context, so any input up to num_ctx is embedded whole.
            n_batch=params.num_ctx,
            n_ubatch=params.num_ctx,
            n_threads=params.threads,
            n_threads_batch=params.threads,
            n_gpu_layers=params.num_gpu,
            use_mmap=params.use_mmap,
            embedding=True,
            pooling_type=_pooling(info),
            verbose=False,
        )

    def embed(self, texts: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        """Normalized vectors for ``texts`` and the number of tokens embedded.

        Each text is embedded whole up to ``num_ctx`` tokens; a longer one is cut
        there (``truncate``, Ollama's default) or refused with InvalidRequest
        (``truncate=False``), and the count is what was embedded after the cut
        (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-embeddings).
        InvalidRequest (param ``input``) for a text that is not valid Unicode, and for a
        reranker (rank pooling gives a score per sequence, not a vector)."""
        if self.info.is_reranker:
            raise InvalidRequest("the model is a reranker (rank pooling): it scores documents "
                                 "against a query and gives no embeddings", "model")
        try:
            counts = [len(self.llm.tokenize(t.encode("utf-8"))) for t in texts]
        except UnicodeEncodeError:  # a lone surrogate: JSON carries one, UTF-8 cannot
            i, why = next((i, why) for i, t in enumerate(texts) if (why := not_unicode(t)))
            raise InvalidRequest(f"input[{i}] is not valid Unicode: {why}", "input") from None
        if not truncate and max(counts, default=0) > self.params.num_ctx:
            raise InvalidRequest(
                f"input of {max(counts)} tokens exceeds the context length "
                f"{self.params.num_ctx} and truncate is false", "input")
        if not texts:
            return [], 0
        with self.lock:
            vectors, embedded = self.llm.embed(texts, normalize=True, truncate=True,
                                               return_count=True)
        return [list(map(float, v)) for v in vectors], embedded

    def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        """Each document's relevance score against ``query``, in order, and the tokens
        evaluated (``engine/rerank.py``).  InvalidRequest when the model is no reranker."""
        if not self.info.is_reranker:
            raise InvalidRequest("the model has no rank pooling (pooling_type 4): it is "
                                 "not a reranker", "model")
        with self.lock:
            return rank(self.llm, self.info, query, documents, self.params.num_ctx)

    def close(self) -> None:
        with self.lock:
            self.llm.close()


def _pooling(info: GGUFInfo) -> int:
    """The GGUF's pooling type, or mean pooling for models that set none."""
    value = info.metadata.get(f"{info.architecture}.pooling_type")
    if isinstance(value, int) and value > 0:
        return value
    return llama_cpp.LLAMA_POOLING_TYPE_MEAN
