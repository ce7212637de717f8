"""Several models under a memory budget: LRU unloading, the loaded-model cap, load once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from locallama.engine.loader import ModelLoader
from locallama.engine.runner_client import RunnerModel
from locallama.errors import ModelTooLarge
from locallama.gguf_info import estimate_memory, read_gguf_info
from locallama.options import resolve_options

OPTIONS = resolve_options({"num_ctx": 256})


def need(path: Path, num_parallel: int = 1) -> int:
    return estimate_memory(read_gguf_info(path), 256, num_parallel).total


class Machine:
    """Free memory that shrinks as the loader loads (what psutil would report)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.loader: ModelLoader | None = None

    def __call__(self) -> int:
        used = sum(e.size for e in self.loader._loaded.values()) if self.loader else 0
        return self.total - used


def loaded_paths(loader: ModelLoader) -> set[Path]:
    return {e.key[0] for e in loader.entries()}


def use(loader: ModelLoader, path: Path) -> None:
    with loader.use(path, OPTIONS):
        pass


@pytest.fixture
def three(make_gguf) -> list[Path]:
    return [make_gguf(seed=i) for i in range(3)]


def test_idle_models_are_unloaded_least_recently_used_first_to_make_room(three):
    a, b, c = three
    machine = Machine(int(2.5 * need(a)))
    loader = machine.loader = ModelLoader(machine, num_parallel=1)
    try:
        use(loader, a), use(loader, b)
        assert loaded_paths(loader) == {a, b}  # two fit side by side
        use(loader, a)  # a is now the more recently used
        use(loader, c)
        assert loaded_paths(loader) == {a, c}
    finally:
        loader.close()


def test_the_loaded_model_cap_unloads_the_least_recently_used(three):
    a, b, c = three
    loader = ModelLoader(lambda: 10**12, num_parallel=1, max_loaded=2)
    try:
        use(loader, a), use(loader, b), use(loader, c)
        assert loaded_paths(loader) == {b, c}
    finally:
        loader.close()


def test_a_model_that_cannot_fit_even_alone_is_refused_and_others_stay(three):
    a, b, _ = three
    machine = Machine(int(1.5 * need(a)))
    loader = machine.loader = ModelLoader(machine, num_parallel=1)
    try:
        use(loader, a)
        big = resolve_options({"num_ctx": 2048})
        with pytest.raises(ModelTooLarge, match=r"requires [\d.]+ MB .* only [\d.]+ MB"), \
                loader.use(b, big):
            pass
        assert loaded_paths(loader) == {a}
    finally:
        loader.close()


def test_a_busy_model_is_not_unloaded_under_its_request(three):
    a, b, _ = three
    loader = ModelLoader(lambda: 10**12, num_parallel=1, max_loaded=1)
    try:
        events: list[str] = []
        holding = threading.Event()

        def hold_a() -> None:
            with loader.use(a, OPTIONS):
                holding.set()
                time.sleep(0.3)
                events.append("a done")

        worker = threading.Thread(target=hold_a)
        worker.start()
        holding.wait()
        use(loader, b)
        events.append("b loaded")
        worker.join()
        assert events == ["a done", "b loaded"] and loaded_paths(loader) == {b}
    finally:
        loader.close()


def test_two_requests_for_one_model_load_it_once(three, monkeypatch):
    a = three[0]
    loads: list[Path] = []
    real_init = RunnerModel.__init__

    def counting_init(self, path, *args, **kwargs):
        loads.append(path)
        time.sleep(0.2)  # a slow load, so the second request arrives during it
        real_init(self, path, *args, **kwargs)

    monkeypatch.setattr(RunnerModel, "__init__", counting_init)
    loader = ModelLoader(lambda: 10**12, num_parallel=1)
    try:
        threads = [threading.Thread(target=use, args=(loader, a)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert loads == [a] and loaded_paths(loader) == {a}
    finally:
        loader.close()


def test_num_parallel_is_chosen_from_memory(three):
    a = three[0]
    for total, expected in ((10**12, 4), (need(a) + 1000, 1)):
        loader = ModelLoader(lambda total=total: total)
        try:
            with loader.use(a, OPTIONS) as (loaded, _):
                assert loaded.params.num_parallel == expected
        finally:
            loader.close()
