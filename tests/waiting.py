"""Waiting with a deadline, not a sleep: for tests that watch processes and servers.

``poll(condition, what)`` returns once ``condition()`` is true and fails naming
``what`` after ``timeout`` seconds; ``dead(pid)`` and ``gone(pid)`` tell a process
that has ended (a zombie counts) from one that has also been reaped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

DEADLINE_S = 20.0  # generous: a loaded 2-core machine


def poll(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    """Wait until ``condition()`` is true; AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def dead(pid: int) -> bool:
    """The process has ended: gone, or a zombie (its parent not yet told)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def gone(pid: int) -> bool:
    """The process has ended and been reaped: no zombie left behind."""
    return not psutil.pid_exists(pid)
