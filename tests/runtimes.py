"""Runtimes over tiny models, built one way for the whole suite.

``local_runtime(home, ("tiny", tiny_gguf))`` is a LocalRuntime whose store is
``home/models`` holding those models; ``add_model`` makes a model from a GGUF file
(plus further Modelfile lines); ``create`` is every test's way to ``Runtime.create``.
So the call into ``Runtime.create`` is written once, here: when its signature
changes, this file changes and the tests do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from locallama.runtime.base import Runtime
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from locallama.store.modelfile import parse_modelfile

#: (name, GGUF path) or (name, GGUF path, further Modelfile lines)
ModelSpec = tuple[str, Path] | tuple[str, Path, str]


def local_runtime(home: Path, *models: ModelSpec, **settings: Any) -> LocalRuntime:
    """A LocalRuntime over ``home/models`` (history in ``home/history``) holding
    ``models``; ``settings`` are further Settings fields (registry, num_parallel, …).
    The caller closes it."""
    settings = {"models_dir": home / "models", "history_file": home / "history", **settings}
    runtime = LocalRuntime(Settings(**settings))
    try:
        for name, gguf, *lines in models:
            add_model(runtime, name, gguf, *lines)
    except BaseException:
        runtime.close()
        raise
    return runtime


def add_model(runtime: Runtime, name: str, gguf: Path, lines: str = "", **kwargs: Any) -> None:
    """Make ``name`` FROM the GGUF file at ``gguf`` with Modelfile ``lines`` after the
    FROM line (PARAMETER, SYSTEM, TEMPLATE …); ``kwargs`` go to ``Runtime.create``
    (progress, quantize, imatrix)."""
    create(runtime, name, f"FROM {gguf}\n{lines}", gguf.parent, **kwargs)


def create(runtime: Runtime, name: str, modelfile: str, base_dir: Path,
           progress: Any = None, quantize: str | None = None,
           imatrix: Path | None = None) -> None:
    """``Runtime.create`` from Modelfile text (relative FROM paths from ``base_dir``)."""
    runtime.create(name, parse_modelfile(modelfile), base_dir, progress, quantize, imatrix)
