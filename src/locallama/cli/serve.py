"""``locallama serve``: the Ollama API and the OpenAI API on LOCALLAMA_HOST."""

from __future__ import annotations

import errno
import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING

from locallama.cli import app
from locallama.cli.models import sweep_message
from locallama.cli.output import err_console
from locallama.errors import LocallamaError
from locallama.settings import Settings

if TYPE_CHECKING:
    import uvicorn

GRACEFUL_SHUTDOWN_S = 5  # how long open answers may take to finish on Ctrl-C


@app.command()
def serve() -> None:
    """Start the server (LOCALLAMA_HOST, default 127.0.0.1:11434); Ctrl-C stops it."""
    import uvicorn

    from locallama.runtime.local import LocalRuntime
    from locallama.server.app import create_app

    settings = Settings.from_env()
    sock = bind(settings.host, settings.port)  # before loading anything: fail fast
    runtime = LocalRuntime(settings)
    if note := sweep_message(runtime.store.sweep()):  # what a killed writer left
        err_console.print(note, markup=False)
    try:
        config = uvicorn.Config(create_app(runtime, settings), log_level="info",
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        err_console.print(f"locallama is listening on {settings.base_url}", markup=False)
        _run_until_signal(uvicorn.Server(config), sock)
    finally:
        runtime.close()
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A bound socket, or one line saying why not (uvicorn's own failure is a log dump)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise LocallamaError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only, on Linux
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LocallamaError(
                f"cannot listen on {host}:{port}: the address is already in use (is a "
                "server running? set LOCALLAMA_HOST to use another port)") from None
        raise LocallamaError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _run_until_signal(server: uvicorn.Server, sock: socket.socket) -> None:
    """Serve until Ctrl-C or SIGTERM; either ends ``serve`` with status 0.

    uvicorn shuts down gracefully, restores the handlers it found and raises the
    signal again: SIGTERM's default action would then kill the process after a
    clean stop, and Ctrl-C would reach click as "Aborted!" and status 1.
    """
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)
