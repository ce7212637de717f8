"""A record of every ``llama_decode`` call, for ``bench/decode_profile.py``.

With ``LOCALLAMA_DECODE_TRACE=FILE`` set, the runner (or, in-process, whoever calls
:func:`install`) wraps ``llama_cpp.llama_decode`` so that each call appends one
record to FILE: its start and end (``time.perf_counter_ns``, nanoseconds, this
process's clock) and the batch's token count.  The time between one call's end and
the next one's start is what the process spent outside llama.cpp between steps
(sampling, detokenization, stop checks, hand-offs).  A debugging aid: off unless
set, and one ``write`` per step when on.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

RECORD = struct.Struct("<qqi")  # start ns, end ns, tokens in the batch
ENV = "LOCALLAMA_DECODE_TRACE"


def install(path: str | os.PathLike) -> None:
    """Wrap ``llama_cpp.llama_decode`` (once per process) to append records to ``path``."""
    import llama_cpp

    if getattr(llama_cpp.llama_decode, "_traced", False):
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    decode, clock, pack, write = llama_cpp.llama_decode, time.perf_counter_ns, RECORD.pack, os.write

    def traced(ctx, batch):
        start = clock()
        code = decode(ctx, batch)
        end = clock()
        write(fd, pack(start, end, batch.n_tokens))
        return code

    traced._traced = True  # type: ignore[attr-defined]
    # what untraced work calls: not __wrapped__, which llama_cpp's own functions already
    # carry (their ctypes decorator wraps a Python stub whose body is `...`)
    traced.untraced = decode  # type: ignore[attr-defined]
    llama_cpp.llama_decode = traced


def install_from_env() -> None:
    """:func:`install` when ``LOCALLAMA_DECODE_TRACE`` names a file."""
    path = os.environ.get(ENV)
    if path:
        install(path)


def read(path: str | os.PathLike) -> list[tuple[int, int, int]]:
    """The records in ``path``: (start ns, end ns, tokens), in call order."""
    data = Path(path).read_bytes()
    usable = len(data) - len(data) % RECORD.size
    return [RECORD.unpack_from(data, i) for i in range(0, usable, RECORD.size)]
