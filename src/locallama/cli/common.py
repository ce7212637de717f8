"""What every command needs: the settings and a Runtime."""

from __future__ import annotations

from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings


def get_runtime() -> LocalRuntime:
    """The Runtime for this invocation (in-process; the HTTP one arrives with the server)."""
    return LocalRuntime(Settings.from_env())
