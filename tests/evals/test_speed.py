"""bench: llama-bench's tests through the scheduler, fields and concurrent streams."""

import threading
from dataclasses import asdict
from pathlib import Path

import pytest

from locallama.errors import InvalidRequest
from locallama.evals.speed import _vocab_size, bench_json, run_bench
from locallama.runtime.local import LocalRuntime
from runtimes import local_runtime


class Watched:
    """A runtime that records each request's prompt and how many streams ran at once."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.prompts: list[list[int]] = []
        self.active = self.most = 0
        self.lock = threading.Lock()

    def generate(self, request):
        self.prompts.append(list(request.context))
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            yield from self.runtime.generate(request)
        finally:
            with self.lock:
                self.active -= 1

    def __getattr__(self, name):
        return getattr(self.runtime, name)


@pytest.fixture
def tiny_runtime(tmp_path: Path, tiny_gguf: Path):
    rt = local_runtime(tmp_path, ("tiny", tiny_gguf), num_parallel=2)
    yield rt
    rt.close()


def test_one_stream_pp_and_tg(tiny_runtime):
    watched = Watched(tiny_runtime)
    seen = []
    result = run_bench(watched, "tiny", n_prompt=32, n_gen=8, repetitions=3, threads=1,
                       progress=lambda test, done, total: seen.append((test, done, total)))
    pp, tg = result.tests
    assert (pp.test, pp.n_prompt, pp.n_gen, pp.tokens) == ("pp32", 32, 0, 32)
    assert (tg.test, tg.n_prompt, tg.n_gen, tg.tokens) == ("tg8", 0, 8, 8)
    for test in (pp, tg):
        assert test.repetitions == 3 and len(test.samples) == 3
        assert all(s > 0 for s in test.samples) and test.stddev >= 0
        assert test.tokens_per_second == pytest.approx(sum(test.samples) / 3)
        assert test.stream_tokens_per_second == pytest.approx(test.tokens_per_second)
    assert result.warnings == []  # every pp run evaluated all 32 tokens fresh
    # a warm-up and 3 runs per test; each pp prompt new from its first token on
    pp_prompts = [p for p in watched.prompts if len(p) == 32]
    assert len(pp_prompts) == 4 and len({p[0] for p in pp_prompts}) == 4
    assert [p for p in watched.prompts if len(p) == 1] == [[1]] * 4  # tg starts at BOS
    assert seen[0] == ("pp32", 0, 4) and seen[-1] == ("tg8", 4, 4)
    assert watched.most == 1
    assert (result.model, result.quantization, result.threads) == ("tiny:latest", "F32", 1)
    assert result.digest.startswith("sha256:") and result.memory > result.size > 0


def test_concurrency_runs_n_streams_at_once(tiny_runtime):
    watched = Watched(tiny_runtime)
    result = run_bench(watched, "tiny", n_prompt=16, n_gen=6, repetitions=2, concurrency=2)
    pp, tg = result.tests
    assert watched.most == 2
    assert pp.concurrency == tg.concurrency == result.concurrency == 2
    assert pp.tokens == 2 * 16 and tg.tokens == 2 * 6
    assert all(s > 0 for s in pp.samples + tg.samples) and len(tg.samples) == 2
    data = bench_json([result], {"concurrency": 2})
    assert data["kind"] == "bench" and data["results"][0] == asdict(result)
    assert set(data["results"][0]["tests"][0]) >= {
        "test", "tokens_per_second", "stddev", "samples", "stream_tokens_per_second"}


def test_one_test_can_be_left_out(tiny_runtime):
    result = run_bench(tiny_runtime, "tiny", n_prompt=0, n_gen=4, repetitions=1)
    assert [t.test for t in result.tests] == ["tg4"] and result.tests[0].stddev == 0.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"repetitions": 0}, "-r"), ({"concurrency": 0}, "concurrency"),
    ({"n_prompt": 0, "n_gen": 0}, "not both"), ({"n_prompt": 4000}, "do not fit"),
])
def test_bad_arguments(tiny_runtime, kwargs, message):
    with pytest.raises(InvalidRequest, match=message):
        run_bench(tiny_runtime, "tiny", **kwargs)


def test_vocab_size_from_metadata():
    assert _vocab_size({"llama.vocab_size": 320}) == 320
    assert _vocab_size({"tokenizer.ggml.tokens": "[262144 items]"}) == 262144
    with pytest.raises(InvalidRequest):
        _vocab_size({})
