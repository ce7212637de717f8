"""``locallama serve``: the Ollama API and the OpenAI API on LOCALLAMA_HOST.

Logs go to stderr: uvicorn's own lines and one line per request (logger
``locallama.access``, written by the server's guard), as text or, with
``--log-format json``, one JSON object per line.  Prompts stay out of the log
unless ``--log-prompts`` is given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer

from locallama.cli.app import app
from locallama.cli.models import sweep_message
from locallama.cli.output import err_console
from locallama.settings import Settings

if TYPE_CHECKING:
    import uvicorn

    from locallama.runtime.local import LocalRuntime

GRACEFUL_SHUTDOWN_S = 5  # how long open answers may take to finish on Ctrl-C
FORCED_EXIT_AFTER_S = 3  # after that, how long before the process ends whatever runs


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def serve(
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format",
                                         help="text, or json: one JSON object per line."),
    log_prompts: bool = typer.Option(False, "--log-prompts",
                                     help="Also log each request's prompt or messages."),
    on_ray: bool = typer.Option(False, "--ray", help="Serve on a Ray cluster: the API on "
                                "Ray Serve, each model's replicas on the nodes (docs/scale.md)."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", metavar="ADDRESS",
        help="With --ray: an existing cluster ('auto', HOST:PORT, ray://HOST:PORT); "
             "default RAY_ADDRESS, else a local cluster started here."),
) -> None:
    """Start the server (LOCALLAMA_HOST, default 127.0.0.1:11434); Ctrl-C stops it."""
    if on_ray or ray_address:
        from locallama.cluster.start import serve_forever
        from locallama.server.guard import is_loopback_host

        settings = Settings.from_env()
        if not is_loopback_host(settings.host) and not settings.api_key:
            err_console.print(exposed_warning(settings), markup=False, soft_wrap=True)
        serve_forever(ray_address, lambda text: err_console.print(text, markup=False))
        return
    import uvicorn

    from locallama.runtime.local import LocalRuntime
    from locallama.server.app import UVICORN_OPTIONS, create_app
    from locallama.server.guard import is_loopback_host
    from locallama.server.listen import bind

    settings = Settings.from_env()
    sock = bind(settings.host, settings.port)  # before loading anything: fail fast
    if not is_loopback_host(settings.host) and not settings.api_key:
        err_console.print(exposed_warning(settings), markup=False, soft_wrap=True)
    runtime = LocalRuntime(settings)
    if note := sweep_message(runtime.store.sweep()):  # what a killed writer left
        err_console.print(note, markup=False)
    try:
        config = uvicorn.Config(create_app(runtime, settings, log_prompts=log_prompts),
                                log_config=log_config(log_format.value), access_log=False,
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                                **UVICORN_OPTIONS)
        server = uvicorn.Server(config)
        _on_stop(server, runtime)
        _run_until_signal(server, sock, f"locallama is listening on {settings.base_url}\n"
                                        f"The chat page: {page_url(settings)}")
    finally:
        runtime.close()
        sock.close()


def page_url(settings: Settings) -> str:
    """The chat page's address for a browser on this machine (an unspecified bind,
    0.0.0.0 or ::, is reached at loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(settings.host)
    base = f"http://{host}:{settings.port}" if host else settings.base_url
    return base + "/ui/"


def exposed_warning(settings: Settings) -> str:
    """What a bind other machines can reach, without LOCALLAMA_API_KEY, gives away."""
    return (f"Warning: {settings.base_url} can be reached from other machines and no API key "
            "is set. Anyone who can reach this address can use every model and the store's "
            "write routes (pull, create, copy, delete, blob uploads). Set LOCALLAMA_API_KEY="
            "<a long random secret> to require 'Authorization: Bearer <key>', or listen on "
            "127.0.0.1 (LOCALLAMA_HOST).")


def log_config(log_format: str) -> dict[str, Any]:
    """logging.config.dictConfig for uvicorn and locallama: stderr, ``text`` or ``json``."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "locallama": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


class TextFormatter(logging.Formatter):
    """``LEVEL: message``; a request as ``client - "METHOD path" status seconds model``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = getattr(record, "request", None)
        if entry is None:
            return f"{record.levelname + ':':<9} {super().format(record)}"
        line = (f"{record.levelname + ':':<9} {entry['client']} - \"{entry['method']} "
                f"{entry['path']}\" {entry['status']} {entry['duration_s']:.3f}s")
        if entry.get("model"):
            line += f" model={entry['model']}"
        extra = {k: v for k, v in entry.items() if k in ("system", "prompt", "suffix",
                                                          "messages", "input")}
        return line + (" " + json.dumps(extra, ensure_ascii=False) if extra else "")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: a request's fields (time, method, route, path, status,
    duration_s, model, client, bytes_in, bytes_out), or time/level/logger/message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = getattr(record, "request", None)
        if entry is None:
            when = datetime.fromtimestamp(record.created, UTC)
            entry = {"time": when.isoformat(timespec="milliseconds"),
                     "level": record.levelname.lower(), "logger": record.name,
                     "message": record.getMessage()}
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _run_until_signal(server: uvicorn.Server, sock: socket.socket, banner: str) -> None:
    """Serve until Ctrl-C or SIGTERM; either ends ``serve`` with status 0.

    From before the banner to the end, both signals only ask uvicorn to stop
    (``server.handle_exit`` sets a flag its loop checks, before and after start-up),
    so a signal at any moment gives a clean stop: no exception is ever raised at an
    arbitrary point of start-up or shutdown.  uvicorn installs the same handler while
    it runs, restores ours after, and raises the signals it caught again: they find
    the flag already set.
    """
    stop = server.handle_exit
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        err_console.print(banner, markup=False)  # after the handlers: a signal now is clean
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _on_stop(server: uvicorn.Server, runtime: LocalRuntime) -> None:
    """What SIGTERM or Ctrl-C does besides asking uvicorn to stop.

    Chat-template renders in flight are killed, so their requests end at once.  A
    request thread inside one long llama.cpp call (tokenizing a huge prompt) cannot
    be interrupted, and Python would wait for it at exit; so a watchdog ends the
    process ``FORCED_EXIT_AFTER_S`` after the graceful period, whatever still runs
    (status 0: the stop was asked for).
    """
    handle_exit = server.handle_exit
    armed = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        handle_exit(signum, frame)
        runtime.renderer.close()
        if not armed.is_set():
            armed.set()
            threading.Thread(target=_exit_after, name="locallama-exit", daemon=True,
                             args=(GRACEFUL_SHUTDOWN_S + FORCED_EXIT_AFTER_S,)).start()

    server.handle_exit = handle  # type: ignore[method-assign]


def _exit_after(seconds: float) -> None:
    time.sleep(seconds)
    logging.getLogger("locallama.server").warning(
        "stopping now: a request was still inside llama.cpp %.0f s after the stop", seconds)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
