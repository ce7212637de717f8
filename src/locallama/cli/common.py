"""What every command needs: the settings and a Runtime."""

from __future__ import annotations

import http.client

from locallama.runtime.base import Runtime
from locallama.settings import Settings

#: what GET / answers on a locallama server, and on Ollama's
GREETINGS = ("locallama is running", "Ollama is running")
PROBE_TIMEOUT = 0.3  # seconds: a server on this machine answers in well under that


def get_runtime() -> Runtime:
    """The Runtime for this invocation (DESIGN.md rule 2).

    When a locallama (or Ollama) server answers at LOCALLAMA_HOST, commands go
    through it: it already has the models loaded, and a model a command loads
    stays loaded for the next.  Otherwise the engine runs in this process.  The
    probe is one ``GET /`` with a short timeout, so a missing server costs a
    refused connection and nothing more.
    """
    settings = Settings.from_env()
    if server_answers(settings.host, settings.port):
        from locallama.client import RemoteRuntime

        return RemoteRuntime(settings)
    import dataclasses

    from locallama.runtime.local import LocalRuntime

    if not settings.num_parallel:
        # One user in one process: one sequence, not the server's KV cache for four.
        settings = dataclasses.replace(settings, num_parallel=1)
    return LocalRuntime(settings)


def server_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when GET / at host:port greets like locallama or Ollama.

    The standard library's http.client keeps this probe from importing httpx
    when no server is there.
    """
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        text = response.read(256).decode("utf-8", "replace").strip()
        return response.status == 200 and text in GREETINGS
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
