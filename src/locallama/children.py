"""A long job in a child process that the parent watches: the quantizer
(``engine/quantize.py``) and llama.cpp's safetensors converter (``store/hf_convert.py``).

The child runs in a session of its own with its output in a log file; the parent
polls it every quarter second and hands the size of the file it writes to ``watch``
(a progress bar, a check that the client is still there).  When ``watch`` raises, or
the parent is interrupted, the child's whole process group is killed and the partial
output removed before the error goes on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

POLL_S = 0.25  # seconds between looks at the child and its output


def run_watched(argv: list[str], log: IO[bytes], watch: Callable[[int], None], target: Path,
                env: Mapping[str, str], cwd: Path | None = None) -> int:
    """Run ``argv`` (stdin closed, stdout and stderr into ``log``) under ``env`` in
    ``cwd``; ``watch`` gets ``target``'s size in bytes (0 while it is missing) at every
    poll.  Returns the child's return code (negative: the signal that ended it)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=cwd, env=dict(env), start_new_session=True)
    try:
        while True:
            try:
                return proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            try:
                done = target.stat().st_size
            except OSError:
                done = 0
            watch(done)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # its group: the child is its leader
            proc.wait()
            target.unlink(missing_ok=True)
