"""Compile and render chat templates in worker processes, under a time limit, an
output-size limit and a memory cap.

A chat template is a stranger's program, and a Python thread cannot be stopped: a
template that loops for hours, or builds a string of gigabytes, would hold a
thread, the GIL and the server's memory for as long as it likes.  So templates
render in a small pool of long-lived worker processes (``python -m
locallama.engine.render_worker``, started lazily, reused across renders, each keeping
compiled templates by source).  The caller's thread waits for the answer with a
deadline; when the time limit passes, the client goes away (``CLIENT_GONE``, set
by the server) or the renderer is closed, the worker is killed (SIGKILL) and a
fresh one replaces it on the next render.  Nothing of the render survives in this
process.  Compiling is a stranger's work too (a few megabytes of nested blocks take
seconds and gigabytes to compile), so it happens in the workers under the same
limits: ``Renderer.check`` compiles without rendering, and a worker compiles each
source once and keeps it.  A template nested too deeply for the compiler or the
renderer (RecursionError) is a TemplateError like any other broken template.

Inside a worker (``render_worker``): the output is produced with
``Template.generate`` and counted as it grows, so writing past ``max_bytes`` stops at
once; ``*`` and ``**`` are checked before they run (``'a' * 300000000`` is refused
without being built); and the process's address space is capped (RLIMIT_AS, its size
after start-up plus 256 MiB plus 4 x ``max_bytes``), so any other way of growing a
huge value ends in MemoryError, reported as the memory limit, and the worker is
replaced.

The worker answers with bytes only (never a pickle), at most ``max_bytes`` of
prompt, so a worker cannot make this process run code or grow either.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from locallama.cancel import CLIENT_GONE
from locallama.errors import Cancelled, TemplateError, TemplateLimitExceeded
from locallama.units import MIB

DEFAULT_WORKERS = 2
_POLL_S = 0.05  # how often a waiting render looks at the client and the renderer

class _Worker:
    """One renderer process and the parent's end of its socket."""

    def __init__(self, max_bytes: int) -> None:
        parent, child = socket.socketpair()
        package = str(Path(__file__).resolve().parents[2])  # the locallama this process runs
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "locallama.engine.render_worker", str(child.fileno()),
                 str(max_bytes)],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, env=env)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        self.killed = False

    def kill(self, close: bool = True) -> None:
        """Stop the process now and reap it (no zombie is left); ``close``: close the
        socket too (not while a render thread may be waiting on it: that thread sees
        the end of the stream and closes it when it releases the worker)."""
        self.killed = True
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if close:
            self.conn.close()


class Renderer:
    """Renders Jinja sources out of process under ``timeout`` seconds and ``max_bytes``.

    ``timeout``: seconds one render may take (LOCALLAMA_TEMPLATE_TIMEOUT); ``max_bytes``:
    the UTF-8 bytes one render may write (LOCALLAMA_TEMPLATE_MAX_BYTES); ``workers``:
    processes kept for renders at once (a render waits for a free one).  Thread-safe.
    """

    def __init__(self, timeout: float = 5.0, max_bytes: int = 32 * MIB,
                 workers: int = DEFAULT_WORKERS) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.workers = max(1, workers)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        weakref.finalize(self, _kill_all, self._all)  # runs at exit too

    def render(self, source: str, contexts: list[dict[str, Any]], *, model: str = "") -> str:
        """Render the Jinja ``source`` once per context and join the outputs.

        ``contexts`` must be plain data (what JSON gives).  Raises TemplateError when
        the template fails (as rendering in-process would), TemplateLimitExceeded
        naming ``model`` and the limit when it runs past ``timeout`` or writes past
        ``max_bytes`` (or grows past its memory cap), and Cancelled when the client
        goes away (``CLIENT_GONE``) or the renderer is closed meanwhile.
        """
        gone = CLIENT_GONE.get()
        worker = self._acquire(gone)
        keep = False
        try:
            try:
                worker.conn.send((source, contexts, self.max_bytes))
                deadline = time.monotonic() + self.timeout
                while not worker.conn.poll(min(_POLL_S, max(0.0, deadline - time.monotonic()))):
                    if gone is not None and gone.is_set():
                        raise Cancelled("the client went away")
                    if time.monotonic() >= deadline:
                        raise TemplateLimitExceeded(self._limit(
                            model, f"ran past its {self.timeout:g} s time limit "
                            "(LOCALLAMA_TEMPLATE_TIMEOUT)"))
                answer = worker.conn.recv_bytes(self.max_bytes + 64 * 1024)
            except (EOFError, OSError):
                if worker.killed:
                    raise Cancelled("template rendering was stopped") from None
                raise TemplateError(self._limit(
                    model, "renderer process ended unexpectedly")) from None
            kind, body = answer[:1], answer[1:]
            if kind == b"o":
                keep = True
                return body.decode("utf-8")
            error = json.loads(body)
            keep = error["kind"] == "template"
            if error["kind"] == "template":
                raise TemplateError(error["message"])
            if error["kind"] == "bytes":
                raise TemplateLimitExceeded(self._limit(
                    model, f"wrote past its {_size(self.max_bytes)} output limit "
                    "(LOCALLAMA_TEMPLATE_MAX_BYTES)"))
            raise TemplateLimitExceeded(self._limit(
                model, f"ran past its memory limit ({error['message']}; "
                "LOCALLAMA_TEMPLATE_MAX_BYTES sets it)"))
        finally:
            self._release(worker, keep)

    def check(self, source: str, *, model: str = "") -> None:
        """Compile the Jinja ``source`` in a worker, under the same limits as ``render``
        (the worker keeps the compiled template for later renders).  Returns None;
        raises TemplateError when it does not compile (a syntax error, nesting too
        deep), TemplateLimitExceeded naming ``model`` when compiling runs past the time
        limit or the memory cap, and Cancelled as ``render`` does."""
        self.render(source, [], model=model)

    def close(self) -> None:
        """Kill every worker now; renders in flight raise Cancelled.  A later render
        starts a fresh worker (closing is for shutdown, but is not fatal)."""
        with self._cond:
            idle = set(self._idle)
            workers = list(self._all)
            self._idle.clear()
            self._all.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.kill(close=worker in idle)

    def pids(self) -> list[int]:
        """Process ids of the live workers (busy or idle)."""
        with self._cond:
            return sorted(w.proc.pid for w in self._all if w.proc.poll() is None)

    def busy(self) -> int:
        """Workers rendering now."""
        with self._cond:
            return len(self._all) - len(self._idle)

    # -- the pool ------------------------------------------------------------------------

    def _acquire(self, gone: threading.Event | None) -> _Worker:
        with self._cond:
            while True:
                if gone is not None and gone.is_set():
                    raise Cancelled("the client went away")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.proc.poll() is None:
                        return worker
                    self._all.discard(worker)
                    worker.kill()
                if len(self._all) + self._starting < self.workers:
                    self._starting += 1
                    break
                self._cond.wait(_POLL_S)
        try:
            worker = _Worker(self.max_bytes)
        finally:
            with self._cond:
                self._starting -= 1
        with self._cond:
            self._all.add(worker)
        return worker

    def _release(self, worker: _Worker, keep: bool) -> None:
        with self._cond:
            if keep and worker in self._all and not worker.killed:
                self._idle.append(worker)
                self._cond.notify()
                return
            self._all.discard(worker)
            self._cond.notify()
        worker.kill()

    @staticmethod
    def _limit(model: str, what: str) -> str:
        return f"model '{model}': chat template {what}" if model else f"chat template {what}"


def _kill_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.kill(close=False)
    workers.clear()


def _size(n: int) -> str:
    return f"{n / MIB:g} MiB" if n >= MIB else f"{n} bytes"


_default: Renderer | None = None
_default_lock = threading.Lock()


def default_renderer() -> Renderer:
    """The process-wide renderer with the default limits (5 s, 32 MiB), for template
    renders that were not handed one (LocalRuntime hands its own, from Settings)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Renderer()
            atexit.register(_default.close)
        return _default
