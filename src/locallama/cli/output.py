"""Shared output helpers for the CLI: one console, ages, durations, the timing block."""

from __future__ import annotations

import io
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from locallama.runtime.types import Chunk

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def isolate_stdout() -> None:
    """Keep what native code prints off standard output.

    llama.cpp and ggml write to file descriptor 1 directly (a crash's backtrace from
    gdb, some logs), which would land in the middle of a piped answer.  Python's
    ``sys.stdout`` moves to a private duplicate of the real standard output, and
    descriptor 1 is pointed at standard error: the answer (everything the CLI prints
    through ``sys.stdout``) reaches stdout, anything else reaches stderr.  Subprocesses
    that inherit descriptor 1 write to stderr too.  Does nothing where the descriptors
    cannot be duplicated."""
    try:
        sys.stdout.flush()
        private = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):  # no descriptor 1 or 2 (an embedded interpreter)
        return
    old = sys.stdout
    sys.stdout = io.TextIOWrapper(
        io.FileIO(private, "w", closefd=True), encoding=old.encoding,
        errors=old.errors, line_buffering=old.line_buffering, write_through=True)


def transfer_bars(transient: bool = False):
    """Rich bars for bytes moving (pulls, imports): size, speed and time left."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=err_console,
                    transient=transient)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def age(when: datetime, now: datetime | None = None) -> str:
    """'2 minutes ago', as ``ollama list`` prints it."""
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 1:
        return "Less than a second ago"
    for unit, size in (("year", 31536000), ("month", 2592000), ("week", 604800),
                       ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            n = seconds // size
            if n == 1 and unit in ("hour",):
                return "About an hour ago"
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "Less than a second ago"


def duration(ns: int) -> str:
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.3f}s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.3f}ms"
    return f"{ns / 1e3:.3f}µs"


def timing_block(chunk: Chunk) -> str:
    """The block ``ollama run --verbose`` prints after an answer."""
    rows = [
        ("total duration", duration(chunk.total_duration)),
        ("load duration", duration(chunk.load_duration)),
        ("prompt eval count", f"{chunk.prompt_eval_count} token(s)"),
        ("prompt eval duration", duration(chunk.prompt_eval_duration)),
        ("prompt eval rate", f"{chunk.prompt_eval_rate:.2f} tokens/s"),
        ("eval count", f"{chunk.eval_count} token(s)"),
        ("eval duration", duration(chunk.eval_duration)),
        ("eval rate", f"{chunk.eval_rate:.2f} tokens/s"),
    ]
    return "\n".join(f"{label + ':':<22}{value}" for label, value in rows)


def columns(rows: list[tuple[str, ...]], gap: int = 4) -> str:
    """Left-aligned columns, never cut to the terminal's width (as Go's tabwriter)."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return "\n".join(
        "".join(cell.ljust(w + gap) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows)
