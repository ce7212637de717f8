import os
import subprocess
import sys
from pathlib import Path

import pytest

LOCALLAMA = str(Path(sys.executable).with_name("locallama"))


@pytest.fixture
def cli_env(tmp_path: Path, closed_port: int) -> dict[str, str]:
    """The environment of a ``locallama`` command: its own store and home, no server at
    LOCALLAMA_HOST (commands run in-process) and no registry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAMA_")}
    env.update(LOCALLAMA_MODELS=str(tmp_path / "models"), LOCALLAMA_HOME=str(tmp_path / "home"),
               LOCALLAMA_HOST=f"127.0.0.1:{closed_port}",
               LOCALLAMA_REGISTRY=f"http://127.0.0.1:{closed_port}")
    return env


@pytest.fixture
def cli(cli_env, tmp_path):
    """Run the real ``locallama`` command; returns the CompletedProcess."""

    def run(*args: str, input: str | None = None, check: bool = False):
        return subprocess.run(
            [LOCALLAMA, *args], env=cli_env, cwd=tmp_path, input=input or "",
            capture_output=True, text=True, timeout=120, check=check,
        )

    return run
