"""Ctrl-C that always stops an answer, wherever the engine runs.

A KeyboardInterrupt alone is not enough to stop an answer reliably:

- a process started with SIGINT ignored (a background job of a script, ``nohup``)
  inherits the ignoring, and Python then installs no handler at all;
- Python runs the handler in the main thread only, at its next bytecode: the
  KeyboardInterrupt can land in a finalizer (``__del__``, a weakref callback),
  where it is printed as "Exception ignored" and lost, or wait behind a blocking
  call that the signal did not interrupt because another thread took it.

So during an answer :func:`ctrl_c_stops` installs a handler of its own that sets an
Event before it raises KeyboardInterrupt, and puts that Event in ``CLIENT_GONE``:
the waits below (the scheduler's, a runner's, the template renderer's) poll it and
end the request with Cancelled within ``_GONE_POLL_S`` even when the exception was
lost; a remote answer's loop checks it after every chunk.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from locallama.cancel import CLIENT_GONE


@contextlib.contextmanager
def ctrl_c_stops() -> Iterator[threading.Event]:
    """For the ``with`` block: Ctrl-C (SIGINT) sets the yielded Event and raises
    KeyboardInterrupt once (a second press only sets the Event, so it cannot break the
    cancelling that the first one started).  ``CLIENT_GONE`` holds the Event.  The
    previous SIGINT handler and ``CLIENT_GONE`` come back when the block ends.  Call
    from the main thread only (signal handlers live there)."""
    stop = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            return
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    token = CLIENT_GONE.set(stop)
    try:
        yield stop
    finally:
        CLIENT_GONE.reset(token)
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
