"""The scheduler: batching, queueing, prefix reuse, chunked prompts, cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gguf
import pytest

from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.engine.scheduler import Job, Scheduler
from locallama.errors import InvalidRequest, ServerBusy
from locallama.gguf_info import read_gguf_info
from locallama.options import resolve_options
from schedjobs import endless, job, text_of, wait_until

PROMPTS = [f"story {i} " * (1 + 3 * i) for i in range(8)]


def open_model(path: Path, num_parallel: int = 4, num_ctx: int = 256,
               num_batch: int = 32, flash_attention: bool = False) -> LoadedModel:
    params = ContextParams(num_ctx=num_ctx, num_batch=num_batch, num_gpu=0, use_mmap=True,
                           threads=2, num_parallel=num_parallel,
                           flash_attention=flash_attention)
    model = LoadedModel(path, read_gguf_info(path), params)
    model.scheduler = Scheduler(model)
    return model


@pytest.fixture
def model(tiny_gguf: Path) -> Iterator[LoadedModel]:
    loaded = open_model(tiny_gguf)
    yield loaded
    loaded.close()






@pytest.mark.parametrize("file_type", [gguf.LlamaFileType.ALL_F32,
                                       gguf.LlamaFileType.MOSTLY_Q8_0])
@pytest.mark.parametrize("options", [{"temperature": 0}, {"seed": 7, "temperature": 0.9}],
                         ids=["greedy", "seeded"])
def test_eight_concurrent_requests_return_what_each_returns_alone(make_gguf, file_type,
                                                                  options):
    path = make_gguf(file_type=file_type)
    alone = []
    for prompt in PROMPTS:  # each on a fresh context: no cache, no company
        model = open_model(path, num_parallel=8)
        alone.append(text_of(model, job(model, prompt, num_predict=40, **options)))
        model.close()
    assert len(set(alone)) > 1  # the prompts lead to different answers

    model = open_model(path, num_parallel=8)
    together: list[str | None] = [None] * 8
    jobs = [job(model, p, num_predict=40, **options) for p in PROMPTS]
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, text_of(model, jobs[i])))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    model.close()
    assert together == alone


def test_sequences_advance_together_in_one_batch(model):
    """Four requests run at once: the loop holds all four, none waits."""
    jobs = [endless(model, p) for p in PROMPTS[:4]]
    streams = [model.scheduler.submit(j) for j in jobs]
    for stream in streams:
        next(stream)
    assert model.scheduler.active() == 4 and model.scheduler.waiting() == 0
    before = [j.stats.eval_count for j in jobs]
    assert wait_until(lambda: all(j.stats.eval_count > b + 5
                                  for j, b in zip(jobs, before, strict=True)))
    for stream in streams:
        stream.close()


def test_requests_beyond_num_parallel_queue_until_a_slot_frees(tiny_gguf):
    model = open_model(tiny_gguf, num_parallel=2)
    try:
        first, second = (model.scheduler.submit(endless(model, p)) for p in PROMPTS[:2])
        next(first), next(second)
        third_job = job(model, PROMPTS[2], num_predict=5)
        third = model.scheduler.submit(third_job)
        time.sleep(0.2)
        assert model.scheduler.waiting() == 1 and third_job.stats.eval_count == 0
        first.close()  # a client goes away: its slot is the third's
        assert "".join(p.text for p in third) and third_job.stats.eval_count == 5
        second.close()
        assert wait_until(lambda: model.scheduler.active() == 0)
    finally:
        model.close()


def test_a_closed_stream_frees_its_sequence_within_a_step(model):
    running = endless(model, PROMPTS[1])
    stream = model.scheduler.submit(running)
    next(stream), next(stream)
    stream.close()
    assert wait_until(lambda: model.scheduler.active() == 0, timeout=1.0)
    stopped_at = running.stats.eval_count
    time.sleep(0.1)
    assert running.stats.eval_count == stopped_at


def test_a_stream_closed_before_its_first_piece_cancels_its_job(model):
    # a caller that fails between submit and its first read (closing(...) around it)
    running = endless(model, PROMPTS[1])
    model.scheduler.submit(running).close()
    assert wait_until(lambda: model.scheduler.active() == 0 and running.finished,
                      timeout=1.0)
    stopped_at = running.stats.eval_count
    time.sleep(0.1)
    assert running.stats.eval_count == stopped_at
    # and one that never got a slot leaves the queue
    holder = endless(model, PROMPTS[0])
    held = [model.scheduler.submit(endless(model, f"{PROMPTS[0]} {i}")) for i in range(4)]
    for stream in held:
        next(stream)
    queued = model.scheduler.submit(holder)
    assert model.scheduler.waiting() == 1
    queued.close()
    assert model.scheduler.waiting() == 0 and holder.finished and holder.stats.eval_count == 0
    for stream in held:
        stream.close()


def test_a_long_prompt_does_not_freeze_the_other_streams(model):
    """num_batch is 32: a long prompt takes a step per 32 tokens, and the running
    stream gets a token in each of them.  (The 300-token prompt is cut to the 255 that
    num_ctx 256 leaves room for: 8 steps.  Counting the steps from what was evaluated,
    not assuming ten, keeps the check exact; the running stream's tokens before the
    long prompt is admitted only add to its count.)"""
    running = endless(model, PROMPTS[0])
    stream = model.scheduler.submit(running)
    next(stream)
    long = job(model, "the cat sat on the mat " * 50, num_predict=1)
    assert len(long.prompt) > 300
    before = running.stats.eval_count
    assert text_of(model, long) is not None
    steps = -(-long.stats.prompt_eval_count // 32)
    assert steps >= 8, long.stats
    assert running.stats.eval_count - before >= steps
    stream.close()


def test_each_conversation_keeps_its_cache_in_its_own_slot(model):
    """Two conversations interleaved: each second turn evaluates only its new tokens."""
    first_a, first_b = job(model, PROMPTS[3]), job(model, PROMPTS[5])
    text_of(model, first_a), text_of(model, first_b)
    for first in (first_a, first_b):
        extra = model.tokenize(" and then what happened", add_bos=False)
        second = Job([*first.stats.tokens, *extra], resolve_options({"num_predict": 4}))
        text_of(model, second)
        # the last generated token was never evaluated, so it comes with the new ones
        assert second.stats.prompt_eval_count == len(extra) + 1
        assert second.stats.prompt_tokens == len(first.stats.tokens) + len(extra)


def test_scored_continuations_share_the_context(model, tiny_gguf):
    context = model.tokenize("Question: what sat on the mat? Answer:")
    choices = [model.tokenize(c, add_bos=False) for c in (" the cat", " a very small dog")]

    def score(on: LoadedModel, choice: list[int]) -> Job:
        scored = Job([*context, *choice], resolve_options({"num_predict": 0}), score_top=0,
                     score_from=len(context))
        text_of(on, scored)
        return scored

    first, second = (score(model, c) for c in choices)
    assert first.stats.prompt_eval_count == len(context) + len(choices[0])
    assert second.stats.prompt_eval_count == len(choices[1]) + 1  # the context is reused
    assert [len(j.prompt_scores) for j in (first, second)] == [len(c) for c in choices]

    fresh = open_model(tiny_gguf)
    try:
        alone = score(fresh, choices[1])
    finally:
        fresh.close()
    assert [s.logprob for s in second.prompt_scores] == pytest.approx(
        [s.logprob for s in alone.prompt_scores], abs=1e-4)


def test_the_context_shifts_when_full_unless_told_not_to(tiny_gguf):
    model = open_model(tiny_gguf, num_ctx=64)
    try:
        shifted = job(model, PROMPTS[1], num_predict=150, temperature=0.8, seed=1)
        text_of(model, shifted)
        assert shifted.stats.eval_count == 150 and shifted.stats.done_reason == "length"
        stopped = job(model, PROMPTS[1], num_predict=150, temperature=0.8, seed=1)
        stopped.shift = False
        text_of(model, stopped)
        assert stopped.stats.eval_count < 64 and stopped.stats.done_reason == "length"
    finally:
        model.close()


def test_a_prompt_longer_than_the_context(tiny_gguf):
    model = open_model(tiny_gguf, num_ctx=64)
    try:
        strict = job(model, "word " * 200)
        strict.truncate = False
        with pytest.raises(InvalidRequest, match="longer than the context"):
            model.scheduler.submit(strict)
        assert model.scheduler.waiting() == 0 and model.scheduler.active() == 0
        lenient = job(model, "word " * 200, num_predict=4)
        text_of(model, lenient)
        assert lenient.stats.truncated and lenient.stats.prompt_tokens <= 64
    finally:
        model.close()


def test_flash_attention_is_a_setting_and_generates(tiny_gguf):
    from locallama.settings import Settings

    assert Settings.from_env({"LOCALLAMA_FLASH_ATTENTION": "1"}).flash_attention
    assert not Settings.from_env({}).flash_attention
    model = open_model(tiny_gguf, flash_attention=True)
    try:
        greedy = job(model, PROMPTS[2], temperature=0)
        assert text_of(model, greedy) and greedy.stats.eval_count > 0
    finally:
        model.close()


def test_scoring_a_long_prompt_in_small_batches(tiny_gguf):
    """num_batch 16 is below the rows kept per scoring chunk: chunks still fit the batch."""
    model = open_model(tiny_gguf, num_batch=16)
    fresh = open_model(tiny_gguf, num_batch=128)
    try:
        tokens = model.tokenize("the cat sat on the mat and the dog sat on the log " * 8)
        scored = [Job(list(tokens), resolve_options({"num_predict": 0}), score_top=0,
                      score_from=0) for _ in range(2)]
        text_of(model, scored[0]), text_of(fresh, scored[1])
        assert len(scored[0].prompt_scores) == len(tokens) > 90
        assert [s.logprob for s in scored[0].prompt_scores[1:]] == pytest.approx(
            [s.logprob for s in scored[1].prompt_scores[1:]], abs=1e-3)
    finally:
        model.close()
        fresh.close()


def test_past_max_queue_a_job_is_refused_at_once_and_the_queued_one_still_runs(tiny_gguf):
    model = open_model(tiny_gguf, num_parallel=1)
    scheduler = model.scheduler
    scheduler.max_queue, scheduler.name = 1, "tiny:latest"
    try:
        running = scheduler.submit(endless(model, "one"))
        next(running)  # in the slot, generating
        queued = scheduler.submit(job(model, "two", num_predict=3))
        assert scheduler.waiting() == 1
        with pytest.raises(ServerBusy) as caught:
            scheduler.submit(job(model, "three"))
        assert caught.value.retry_after >= 1
        assert str(caught.value) == ("model 'tiny:latest' is busy: 1 requests are already "
                                     "waiting (LOCALLAMA_MAX_QUEUE=1); try again shortly")
        assert scheduler.waiting() == 1  # the refused one left nothing behind
        running.close()
        assert len(list(queued)) >= 1
        assert text_of(model, job(model, "four", num_predict=2))  # room again
    finally:
        model.close()


def test_free_slots_do_not_count_as_a_queue(tiny_gguf):
    model = open_model(tiny_gguf, num_parallel=2)
    model.scheduler.max_queue = 1
    try:
        streams = [model.scheduler.submit(endless(model, f"s{i}")) for i in range(2)]
        for stream in streams:
            next(stream)  # both slots generating
        queued = model.scheduler.submit(job(model, "three", num_predict=2))  # the one waiting
        with pytest.raises(ServerBusy):
            model.scheduler.submit(job(model, "four"))
        for stream in streams:
            stream.close()
        assert len(list(queued)) >= 1
    finally:
        model.close()


def test_past_max_queue_a_request_waiting_for_a_load_is_refused(tiny_gguf, monkeypatch):
    """While a model loads, every request for it waits; past the slots it will have and
    max_queue more, the next is refused at once instead of joining them."""
    from locallama.engine.loader import ModelLoader
    from locallama.engine.runner_client import RunnerModel

    release, loading = threading.Event(), threading.Event()
    real_init = RunnerModel.__init__

    def slow_init(self, *args, **kwargs):
        loading.set()
        release.wait(30)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(RunnerModel, "__init__", slow_init)
    loader = ModelLoader(lambda: 10**12, num_parallel=1, max_queue=1)
    options = resolve_options({"num_ctx": 256})

    def use() -> None:
        with loader.use(tiny_gguf, options, name="tiny:latest"):
            pass

    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(use)  # loads, then takes the one slot
            assert loading.wait(10)
            second = pool.submit(use)  # the one allowed to wait
            assert wait_until(lambda: loader._loaded[(tiny_gguf, False)].active == 2)
            with pytest.raises(ServerBusy, match="LOCALLAMA_MAX_QUEUE=1"):
                use()
            release.set()
            first.result(timeout=30), second.result(timeout=30)
        use()  # loaded and idle: no queue
    finally:
        release.set()
        loader.close()
