"""ClusterRuntime stands where LocalRuntime stands: every Runtime method is there (no
Ray needed to check)."""

from __future__ import annotations

import inspect

from locallama.cluster.runtime import ClusterRuntime
from locallama.runtime.base import Runtime


def test_every_runtime_method_is_there_with_its_parameters():
    for name, method in inspect.getmembers(Runtime, inspect.isfunction):
        if name.startswith("_"):
            continue
        mine = getattr(ClusterRuntime, name, None)
        assert callable(mine), f"ClusterRuntime lacks {name}"
        assert list(inspect.signature(mine).parameters) == \
            list(inspect.signature(method).parameters), name
