"""The Runtime interface and its in-process implementation."""

from locallama.runtime.base import (
    ChatRequest,
    Chunk,
    Embeddings,
    GenerateRequest,
    ModelDetails,
    Runtime,
)

__all__ = ["ChatRequest", "Chunk", "Embeddings", "GenerateRequest", "ModelDetails", "Runtime"]
