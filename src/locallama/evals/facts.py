"""What a measurement records about the model it measured, so results compare later.

Bench and perplexity results carry the model's digest (what the report groups
by), its quantization, file size, parameter count and a memory estimate, plus
the versions that produced the numbers.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from locallama.gguf_info import GGUFInfo, estimate_memory, read_gguf_info
from locallama.runtime.base import Runtime
from locallama.store import Store

#: the context the memory column is estimated at (Ollama's default num_ctx), one sequence
MEMORY_CTX = 4096


def model_facts(runtime: Runtime, model: str) -> dict[str, Any]:
    """Name, digest, quantization, size, parameters, memory and training context."""
    details = runtime.show(model)
    return {"model": details.name, "digest": details.digest,
            "quantization": details.quantization, "size": details.size,
            "parameters": details.parameter_count, "memory": _local_memory(runtime, model),
            "context_length": details.context_length}


def memory_of(info: GGUFInfo) -> int:
    """The loader's estimate (weights + KV cache + compute) at MEMORY_CTX, one sequence."""
    ctx = min(MEMORY_CTX, info.context_length or MEMORY_CTX)
    return estimate_memory(info, ctx).total


def memory_for_digest(store: Store, digest: str) -> int | None:
    """The estimate for a stored model with this digest, when this machine has one."""
    for entry in store.list():
        if entry.digest == digest and not entry.broken:
            return memory_of(read_gguf_info(store.get(entry.name).model_path))
    return None


def versions() -> dict[str, str]:
    """The versions behind a number: locallama and the llama.cpp binding."""
    found = {}
    for name in ("locallama", "llama_cpp_python"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "unknown"
    return found


def _local_memory(runtime: Runtime, model: str) -> int | None:
    """In-process, the GGUF header is at hand (MEMORY_CTX, one sequence, capped at the
    training context); through a server it is not (None)."""
    return runtime.estimate(model, MEMORY_CTX)
