"""Silencing a library's logger for a while (its warnings would break one-line errors)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Only records at ``level`` or above from logger ``name`` inside the block.

    huggingface_hub logs each retry, trafilatura and pypdf every oddity of a
    stranger's file; the caller reports what matters once, in one line."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
