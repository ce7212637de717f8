"""Progress of long work (pull, create, quantize), in Ollama's /api/pull shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


Progress = Callable[[ProgressEvent], None]


def silent(_event: ProgressEvent) -> None:
    """The progress callback that shows nothing."""
