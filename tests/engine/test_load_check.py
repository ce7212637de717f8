"""A model file llama.cpp cannot load is refused at create, before it is stored."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from locallama.engine import load_check
from locallama.errors import InvalidModelFile
from locallama.gguf_info import read_gguf_info
from locallama.runtime.local import LocalRuntime
from runtimes import add_model, local_runtime


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[LocalRuntime]:
    """An empty store, and no verdicts remembered from other tests."""
    load_check._passed.clear()
    rt = local_runtime(tmp_path / "home")
    yield rt
    rt.close()


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every child the check starts (it still runs)."""
    seen: list[list[str]] = []
    real = load_check.launcher

    def counting(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
        seen.append(argv)
        return real(argv, env, timeout)

    monkeypatch.setattr(load_check, "launcher", counting)
    return seen


def _files(rt: LocalRuntime) -> set[Path]:
    root = rt.settings.models_dir
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("metadata", "cause"), [
    ({"tokenizer.ggml.model": "bogus"}, "unknown tokenizer: 'bogus'"),
    ({"llama.feed_forward_length": 7}, "has wrong shape"),
])
def test_a_file_llama_cpp_refuses_is_not_stored(fresh: LocalRuntime,
                                               make_gguf: Callable[..., Path],
                                               metadata: dict, cause: str) -> None:
    bad = make_gguf(extra_metadata=metadata)
    read_gguf_info(bad)  # the header checks pass it: only a load finds the fault
    before = _files(fresh)
    with pytest.raises(InvalidModelFile) as caught:
        add_model(fresh, "bad", bad)
    message = str(caught.value)
    assert message.startswith("llama.cpp cannot load this model file: ")
    assert cause in message
    assert "\n" not in message
    assert _files(fresh) == before  # no manifest, no blob
    assert fresh.list() == []


def test_a_valid_model_is_checked_once_per_blob(fresh: LocalRuntime, tiny_gguf: Path,
                                                starts: list[list[str]]) -> None:
    add_model(fresh, "one", tiny_gguf)
    assert len(starts) == 1
    add_model(fresh, "two", tiny_gguf)  # the same bytes: the verdict is remembered
    assert len(starts) == 1
    assert sorted(m.name.display for m in fresh.list()) == ["one:latest", "two:latest"]


def test_a_refusal_is_not_remembered(fresh: LocalRuntime, make_gguf: Callable[..., Path],
                                     starts: list[list[str]]) -> None:
    bad = make_gguf(extra_metadata={"tokenizer.ggml.model": "bogus"})
    for _ in range(2):
        with pytest.raises(InvalidModelFile):
            add_model(fresh, "bad", bad)
    assert len(starts) == 2


def _fake_child(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """The check starts ``python -c code`` instead of the real load."""
    def launch(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
        return load_check._launch([sys.executable, "-c", code], env, timeout)

    monkeypatch.setattr(load_check, "launcher", launch)


def test_a_load_past_the_time_limit_is_a_refusal(tmp_path: Path, tiny_gguf: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    load_check._passed.clear()
    _fake_child(monkeypatch, "import time; time.sleep(30)")
    rt = local_runtime(tmp_path, load_check_timeout=0.5)
    try:
        before = _files(rt)
        with pytest.raises(InvalidModelFile, match=r"ran past 0\.5 s \(LOCALLAMA_LOAD_CHECK_"):
            add_model(rt, "slow", tiny_gguf)
        assert _files(rt) == before
    finally:
        rt.close()


def test_an_abort_is_a_refusal_naming_the_signal(fresh: LocalRuntime, tiny_gguf: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_child(monkeypatch, "import os, sys; sys.stderr.write('GGML_ASSERT failed\\n'); "
                             "os.abort()")
    with pytest.raises(InvalidModelFile, match="it stopped with SIGABRT"):
        add_model(fresh, "aborts", tiny_gguf)
    assert fresh.list() == []
