"""Fixtures of the everyday-work tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from askdocs import write_docs


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """The ``ask`` tests' documents (tests/askdocs.py) in ``tmp_path/docs``."""
    return write_docs(tmp_path / "docs")
