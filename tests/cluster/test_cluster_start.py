"""serve --ray without the extra, and the environment the replicas get (no Ray needed)."""

from __future__ import annotations

import sys

import pytest

from locallama.cluster.start import locallama_env, require_ray
from locallama.errors import LocallamaError


def test_without_ray_serve_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(LocallamaError, match=r"pip install 'locallama\[cluster\]'"):
        require_ray()


def test_replicas_get_the_locallama_settings_only():
    env = {"LOCALLAMA_HOME": "/h", "LOCALLAMA_API_KEY": "k", "HOME": "/root", "PATH": "/bin"}
    assert locallama_env(env) == {"LOCALLAMA_HOME": "/h", "LOCALLAMA_API_KEY": "k"}
