"""Runners tried the ways their first tests did not: many load/unload cycles (what
each runner leaves open in the parent), and a runner killed from outside while it
loads (the OOM killer's SIGKILL is not llama.cpp refusing the file).
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from locallama.errors import BadModelFile, RunnerStopped
from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import GenerateRequest
from runtimes import local_runtime
from waiting import poll

SHORT = {"num_predict": 2, "temperature": 0}




@pytest.fixture
def rt(tmp_path: Path, tiny_gguf: Path) -> Iterator[LocalRuntime]:
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf))
    yield runtime
    runtime.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _runners() -> set[int]:
    return {p.pid for p in psutil.Process().children()
            if "locallama.engine.runner" in " ".join(p.cmdline())}


def test_load_and_unload_cycles_leave_no_descriptors_open(rt: LocalRuntime) -> None:
    """Each runner's log pipe is closed when the runner ends, not whenever a garbage
    collection happens to find the Popen (a server with few allocations may hold
    hundreds of dead runners' pipes: LOCALLAMA_MAX_LOADED_MODELS=1, two models
    alternating)."""
    list(rt.generate(GenerateRequest("tiny", "hi", keep_alive=0, options=SHORT)))
    poll(lambda: not _runners(), "the first runner ended")
    gc.collect()
    gc.disable()
    def cycles(n: int) -> None:
        for _ in range(n):
            list(rt.generate(GenerateRequest("tiny", "hi", keep_alive=0, options=SHORT)))
            poll(lambda: not _runners(), "the runner ended")

    try:
        # A descriptor something opens once, on first use, is no leak (CI saw one appear
        # after the first cycle): count after a few cycles, then look for growth.
        cycles(3)
        before = _open_fds()
        cycles(8)
        poll(lambda: _open_fds() <= before, f"8 runners later, open descriptors are back "
              f"to {before} (now {_open_fds()})", timeout=5.0)
    finally:
        gc.enable()


def test_a_runner_killed_from_outside_while_loading_is_not_a_bad_model_file(
        rt: LocalRuntime) -> None:
    """SIGKILL comes from outside (the kernel's OOM killer, a user), never from
    llama.cpp refusing a file: the answer names the stop, and does not tell the user the
    stored model is broken."""
    before = _runners()
    killed: list[int] = []
    stop = threading.Event()

    def kill_new_runner() -> None:
        while not stop.is_set() and not killed:
            for pid in _runners() - before:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.001)

    killer = threading.Thread(target=kill_new_runner, daemon=True)
    killer.start()
    try:
        with pytest.raises(RunnerStopped) as caught:
            list(rt.generate(GenerateRequest("tiny", "hi", options=SHORT)))
    finally:
        stop.set()
        killer.join(timeout=5)
    assert killed, "the runner was not seen starting"
    assert not isinstance(caught.value, BadModelFile)
    assert "model runner for tiny:latest stopped: SIGKILL" in str(caught.value)
    assert rt.ps() == []
    chunks = list(rt.generate(GenerateRequest("tiny", "hi", options=SHORT)))
    assert chunks[-1].done
