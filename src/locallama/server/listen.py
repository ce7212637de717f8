"""The listening socket ``serve`` (and ``serve --ray``'s pre-flight check) binds."""

from __future__ import annotations

import errno
import socket

from locallama.errors import LocallamaError


def bind(host: str, port: int) -> socket.socket:
    """A bound, listening socket, or one line saying why not (uvicorn's own failure is a
    log dump)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise LocallamaError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only, on Linux
    try:
        sock.bind((host, port))
        # Listening now, not when uvicorn's loop starts: the banner says "is listening",
        # and a client that connects right after it must be queued, not refused.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LocallamaError(
                f"cannot listen on {host}:{port}: the address is already in use (is a "
                "server running? set LOCALLAMA_HOST to use another port)") from None
        raise LocallamaError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
