"""What this machine has for running models: RAM, cores, GPUs, memory bandwidth.

``locallama fit`` compares a model's needs with these numbers.  Everything here
degrades quietly: a machine without ``nvidia-smi`` (or one where it fails) simply
has no GPU, and psutil's numbers are used as they come.  Memory bandwidth is
measured, not looked up, because token generation is bound by it and no API
reports it: a short multi-threaded numpy copy gives a figure close to what
llama.cpp's matrix-vector kernels can stream.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from locallama.units import MIB

BENCH_BYTES = 128 * MIB  # per array: well past any CPU cache, cheap to fault in
BENCH_SECONDS = 0.4  # stop repeating the copy once this much time has gone
NVIDIA_SMI_TIMEOUT = 5.0
_QUERY = ["--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class GPU:
    """One GPU as nvidia-smi reports it; memory in bytes."""

    name: str
    memory_total: int
    memory_free: int


@dataclass(frozen=True)
class Machine:
    """This machine's memory, cores and bandwidth (bytes and bytes per second)."""

    ram_total: int
    ram_available: int
    cpu_cores: int  # physical where psutil knows them
    bandwidth: float  # bytes/s that one pass over memory can stream (read + write)
    bandwidth_measured: bool  # False: given by the user (``--bandwidth``)
    gpus: tuple[GPU, ...] = field(default_factory=tuple)

    @property
    def gpu_memory_free(self) -> int:
        """Free memory over all GPUs: llama.cpp splits layers across them."""
        return sum(g.memory_free for g in self.gpus)


def detect(bandwidth: float | None = None) -> Machine:
    """Describe this machine; ``bandwidth`` (bytes/s) skips the measurement."""
    import psutil

    memory = psutil.virtual_memory()
    measured = bandwidth is None
    if bandwidth is None:
        bandwidth = measure_bandwidth(min(BENCH_BYTES, max(MIB, int(memory.available) // 8)))
    return Machine(
        ram_total=int(memory.total),
        ram_available=int(memory.available),
        cpu_cores=cpu_cores(),
        bandwidth=float(bandwidth),
        bandwidth_measured=measured,
        gpus=detect_gpus(),
    )


def cpu_cores() -> int:
    """Physical cores (llama.cpp's default thread count), else logical ones."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except Exception:  # psutil can fail in odd containers
        cores = None
    return max(1, cores or os.cpu_count() or 1)


def detect_gpus(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run
                ) -> tuple[GPU, ...]:
    """NVIDIA GPUs from ``nvidia-smi``; none when it is missing, fails or hangs."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return ()
    try:
        done = run([binary, *_QUERY], capture_output=True, text=True,
                   timeout=NVIDIA_SMI_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return ()
    if done.returncode != 0:
        return ()
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> tuple[GPU, ...]:
    """Parse ``name, total MiB, free MiB`` lines; a line that does not parse (a GPU
    that reports "[N/A]" for its memory, say) is left out rather than guessed."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]  # names may hold commas
        if len(parts) != 3 or not parts[0]:
            continue
        try:
            total, free = float(parts[1]), float(parts[2])
        except ValueError:
            continue
        if total <= 0 or free < 0:
            continue
        gpus.append(GPU(parts[0], int(total * MIB), int(free * MIB)))
    return tuple(gpus)


def measure_bandwidth(size: int = BENCH_BYTES, threads: int | None = None,
                      seconds: float = BENCH_SECONDS) -> float:
    """Bytes per second one copy of ``size`` bytes moves, counting read and write
    (STREAM's "copy" convention); the best of a few runs, split over the cores.

    One thread cannot saturate a desktop's memory controllers, and llama.cpp uses
    every core, so the copy is split across threads (numpy releases the GIL while
    copying).  Both arrays are written before timing so page faults stay out of it.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    start = time.perf_counter()
    n = max(1, size // 8)
    src = np.empty(n, dtype=np.float64)
    src.fill(1.0)
    dst = np.empty_like(src)
    dst.fill(0.0)
    threads = max(1, min(threads or cpu_cores(), 16))
    bounds = [n * i // threads for i in range(threads + 1)]
    slices = [(dst[a:b], src[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]

    def copy(pair: tuple[np.ndarray, np.ndarray]) -> None:
        np.copyto(*pair)

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for i in range(8):
            t = time.perf_counter()
            list(pool.map(copy, slices))
            best = min(best, time.perf_counter() - t)
            if i >= 1 and time.perf_counter() - start > seconds:
                break
    return 2 * n * 8 / max(best, 1e-9)
