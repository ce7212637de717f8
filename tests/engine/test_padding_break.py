"""Trying to break batch padding (engine/padding.py and its use in the scheduler):
situations test_batch_padding.py does not cover.  Padding is forced on with a cost
model that makes every longer run look faster, so every spare slot next to a run is
padded; every answer must still be the one the request gives alone (F32 weights)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import llama_cpp
import pytest

from locallama.engine.model import LoadedModel
from locallama.engine.padding import GENERATING, OTHER, SPARE, RowCosts
from locallama.engine.params import ContextParams
from locallama.engine.scheduler import Job, Scheduler
from locallama.gguf_info import read_gguf_info
from locallama.options import resolve_options
from schedjobs import counting_padding, wait_until

TEXTS = ["The river runs under the old bridge",
         "Seven small stones lay by the water",
         "A letter came for the baker today",
         "The lamp in the window burned all night",
         "Her brother sold the red boat in spring",
         "Snow fell on the quiet town at dawn",
         "The map showed a road nobody used",
         "Two cats slept on the warm stones"]


class Eager(RowCosts):
    """Every longer run looks faster: each spare slot beside or between runs is padded."""

    def observe(self, rows: int, seconds: float) -> None:
        pass

    def estimate(self, rows: int) -> float | None:
        return 1.0 / rows


def open_model(path: Path, padding: bool = True, num_ctx: int = 256, num_parallel: int = 4,
               eager: bool = True) -> LoadedModel:
    params = ContextParams(num_ctx=num_ctx, num_batch=32, num_gpu=0, use_mmap=True, threads=2,
                           num_parallel=num_parallel, batch_padding=padding)
    model = LoadedModel(path, read_gguf_info(path), params)
    model.scheduler = Scheduler(model)
    if padding and eager:
        model.scheduler.row_costs = Eager()
    return model


def make_job(model: LoadedModel, prompt: str | list[int], **options) -> Job:
    extra = {k: options.pop(k) for k in ("grammar", "top_logprobs", "shift") if k in options}
    tokens = model.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
    return Job(tokens, resolve_options({"num_predict": 24, "temperature": 0, **options}),
               **extra)


def read_all(stream) -> tuple[str, list]:
    text, logprobs = [], []
    for piece in stream:
        text.append(piece.text)
        if piece.logprobs:
            logprobs.extend((lp.token, lp.logprob) for lp in piece.logprobs)
    return "".join(text), logprobs


def together(model: LoadedModel, jobs: list[Job], stagger: float = 0.0) -> list[tuple]:
    """Submit ``jobs`` (``stagger`` seconds apart) and read each on a thread."""
    results: list = [None] * len(jobs)
    errors: list = []
    # without a stagger, all are queued before the loop can finish any
    streams = [None if stagger else model.scheduler.submit(job) for job in jobs]

    def go(i: int) -> None:
        try:
            if stagger:
                time.sleep(stagger * i)
            results[i] = read_all(streams[i] or model.scheduler.submit(jobs[i]))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert not errors, errors
    return results


def alone(path: Path, prompt, num_ctx: int = 256, **options) -> tuple[str, list]:
    """The answer on a fresh context of its own, padding off."""
    model = open_model(path, padding=False, num_ctx=num_ctx)
    try:
        return read_all(model.scheduler.submit(make_job(model, prompt, **options)))
    finally:
        model.close()


def fill_slots(model: LoadedModel, texts: list[str], **options) -> None:
    """One request after another: slot i holds texts[i]'s conversation."""
    for text in texts:
        read_all(model.scheduler.submit(make_job(model, text, **options)))


def kv_matches(model: LoadedModel) -> None:
    """Every idle slot's KV stream ends where its cached tokens say."""
    scheduler = model.scheduler
    memory = llama_cpp.llama_get_memory(scheduler.ctx)
    for slot in scheduler.slots:
        if slot.job is None:
            assert llama_cpp.llama_memory_seq_pos_max(memory, slot.id) == len(slot.cached) - 1, \
                slot.id


# -- the plan ---------------------------------------------------------------------------


@pytest.mark.parametrize("kinds", ["gsg", "g.g", "gs.sg", "sgsgs", "g..sg", "ggss.g",
                                   "s.g.s.g.s", "gsgsgsgs", "ggggssss"])
def test_break_plan_covers_every_generating_slot_once_and_pads_only_spares(kinds):
    for costs in (Eager(), RowCosts(), RowCosts({1: 0.5, 2: 0.1, 3: 0.1, 4: 0.1, 8: 0.1})):
        for _ in range(3):
            runs = costs.plan(kinds)
            covered = [i for first, last in runs for i in range(first, last + 1)]
            assert len(covered) == len(set(covered))
            assert sorted(i for i, k in enumerate(kinds) if k == GENERATING) == \
                [i for i in covered if kinds[i] == GENERATING]
            assert all(kinds[i] in (GENERATING, SPARE) for i in covered)
            assert all(any(kinds[i] == GENERATING for i in range(a, b + 1)) for a, b in runs)
            assert runs == sorted(runs)
            for first, last in runs:
                costs.observe(last - first + 1, 0.01 * (last - first + 1))
    assert OTHER == "."


def test_break_plan_changes_when_kinds_change():
    """The cached plan belongs to its kinds: a slot turning busy is never padded."""
    costs = Eager()
    assert costs.plan("ggss") == [(0, 3)]
    assert costs.plan("gg.s") == [(0, 1)]
    assert costs.plan("ggss") == [(0, 3)]
    assert costs.plan("gsss") == [(0, 0)]  # alone now: never padded


# -- padded steps, end to end -----------------------------------------------------------


def test_break_churn_with_forced_padding_every_answer_as_alone(tiny_gguf, monkeypatch):
    """Jobs of several lengths arrive and leave continuously, four slots, padding forced:
    no error, no hang, each answer the one it gives alone, caches consistent."""
    rng = random.Random(5)
    model = open_model(tiny_gguf, num_parallel=6)
    padded = counting_padding(monkeypatch)
    specs = [(TEXTS[i % len(TEXTS)] + " and" * (i // len(TEXTS)), rng.randint(3, 60))
             for i in range(16)]
    try:
        results = together(model, [make_job(model, p, num_predict=n) for p, n in specs],
                           stagger=0.004)
        kv_matches(model)
    finally:
        model.close()
    assert padded, "nothing was padded: the test tests nothing"
    assert [r[0] for r in results] == [alone(tiny_gguf, p, num_predict=n)[0] for p, n in specs]


def test_break_cancelled_neighbour_becomes_padding_and_its_cache_is_reusable(
        tiny_gguf, monkeypatch):
    """Three endless requests; the middle one is cancelled mid-stream, its slot then lies
    between two generating ones and is padded.  A bounded request beside them answers
    as alone, and the cancelled conversation's cache gives a fresh context's answer."""
    model = open_model(tiny_gguf)
    scheduler = model.scheduler
    padded = counting_padding(monkeypatch)
    grammar = "root ::= [a-z ] root"
    try:
        jobs = [make_job(model, TEXTS[i], num_predict=100_000, grammar=grammar)
                for i in range(3)]
        streams = [scheduler.submit(j) for j in jobs]
        got = [[], [], []]

        def reader(i: int, limit: int | None) -> None:
            for piece in streams[i]:
                got[i].append(piece.text)
                if limit is not None and len(got[i]) >= limit:
                    streams[i].close()
                    return

        threads = [threading.Thread(target=reader, args=(i, None if i != 1 else 6))
                   for i in range(3)]
        for t in threads:
            t.start()
        threads[1].join(30)
        assert wait_until(lambda: scheduler.slots[1].job is None)
        bounded = make_job(model, TEXTS[5], num_predict=20)
        answer = read_all(scheduler.submit(bounded))[0]
        assert bounded.slot.id == 3
        assert 1 in padded
        for i in (0, 2):
            streams[i].close()
            scheduler.cancel(jobs[i])
        for t in threads:
            t.join(30)
        assert wait_until(lambda: all(s.job is None for s in scheduler.slots))
        kv_matches(model)
        held = list(scheduler.slots[1].cached)
        follow = make_job(model, held + held[1:4], num_predict=16)
        again = read_all(scheduler.submit(follow))[0]
        assert follow.slot.id == 1
        assert follow.stats.prompt_eval_count == 3
    finally:
        model.close()
    assert answer == alone(tiny_gguf, TEXTS[5], num_predict=20)[0]
    assert again == alone(tiny_gguf, held + held[1:4], num_predict=16)[0]


def test_break_seeded_sampling_with_padding_equals_alone(tiny_gguf, monkeypatch):
    model = open_model(tiny_gguf)
    padded = counting_padding(monkeypatch)
    opts = [dict(temperature=0.9, seed=11 + i, top_k=40, top_p=0.95, num_predict=24)
            for i in range(3)]
    try:
        results = together(model, [make_job(model, TEXTS[i], **opts[i]) for i in range(3)])
    finally:
        model.close()
    assert padded
    assert [r[0] for r in results] == [alone(tiny_gguf, TEXTS[i], **opts[i])[0]
                                       for i in range(3)]


def test_break_logprobs_padded_equal_unpadded_batch_and_text_as_alone(tiny_gguf, monkeypatch):
    """Logprobs of two requests together, padded, are those of the same two unpadded
    (batching alone already moves their low bits, padding must add nothing), and the
    text is the one each gives alone."""
    answers = {}
    for padding in (True, False):
        model = open_model(tiny_gguf, padding=padding)
        padded = counting_padding(monkeypatch)
        try:
            answers[padding] = together(model, [make_job(model, TEXTS[i], top_logprobs=3,
                                                         num_predict=12) for i in range(2)])
        finally:
            model.close()
        assert bool(padded) == padding
    assert answers[True] == answers[False]
    assert [r[0] for r in answers[True]] == [alone(tiny_gguf, TEXTS[i], top_logprobs=3,
                                                   num_predict=12)[0] for i in range(2)]


def test_break_grammar_with_padding_equals_alone(tiny_gguf, monkeypatch):
    grammar = 'root ::= "{" [a-z]+ ":" [0-9]+ "}"'
    model = open_model(tiny_gguf)
    padded = counting_padding(monkeypatch)
    try:
        results = together(model, [make_job(model, TEXTS[i], grammar=grammar, num_predict=30)
                                   for i in range(3)])
    finally:
        model.close()
    assert padded
    assert [r[0] for r in results] == [alone(tiny_gguf, TEXTS[i], grammar=grammar,
                                             num_predict=30)[0] for i in range(3)]


def test_break_context_shift_beside_padding_equals_alone(tiny_gguf, monkeypatch):
    """num_ctx 48: both requests shift their context several times while the two spare
    slots are padded each step."""
    model = open_model(tiny_gguf, num_ctx=48)
    padded = counting_padding(monkeypatch)
    try:
        jobs = [make_job(model, TEXTS[i], num_predict=110, num_keep=4) for i in range(2)]
        results = together(model, jobs)
        kv_matches(model)
    finally:
        model.close()
    assert padded
    assert all(len(j.generated) == 110 for j in jobs)
    assert [r[0] for r in results] == [alone(tiny_gguf, TEXTS[i], num_ctx=48, num_predict=110,
                                             num_keep=4)[0] for i in range(2)]


def test_break_nearly_full_idle_slot_is_padded_and_reused(tiny_gguf, monkeypatch):
    """An idle slot holding num_ctx - 2 tokens is padded at its last cell; its next turn
    still reuses it and answers as on a fresh context."""
    num_ctx = 64
    model = open_model(tiny_gguf, num_ctx=num_ctx)
    scheduler = model.scheduler
    try:
        long_prompt = (model.tokenize(TEXTS[0] + " " + TEXTS[1] + " " + TEXTS[2]) * 3)[:40]
        first = make_job(model, long_prompt, num_predict=num_ctx - 2 - 40 + 1)
        read_all(scheduler.submit(first))
        held = list(scheduler.slots[0].cached)
        assert len(held) == num_ctx - 2, len(held)
        padded = counting_padding(monkeypatch)
        # slot 0 idle and nearly full, slots 1 and 2 generate: slot 0 is padded
        results = together(model, [make_job(model, TEXTS[3 + i], num_predict=10)
                                   for i in range(2)])
        assert 0 in padded
        kv_matches(model)
        assert scheduler.slots[0].cached == held
        follow = make_job(model, held[:-1] + [held[5]], num_predict=1)
        again = read_all(scheduler.submit(follow))[0]
        assert follow.slot.id == 0
    finally:
        model.close()
    assert [r[0] for r in results] == [alone(tiny_gguf, TEXTS[3 + i], num_predict=10)[0]
                                       for i in range(2)]
    assert again == alone(tiny_gguf, held[:-1] + [held[5]], num_ctx=num_ctx, num_predict=1)[0]


def test_break_speculation_mixed_with_padding_equals_alone(tiny_gguf, monkeypatch):
    """Repetitive prompts make prompt-lookup drafts: drafted sequences decode alone after
    the padded runs of the others, step after step."""
    prompts = [" ".join([TEXTS[i]] * 4) for i in range(3)]
    model = open_model(tiny_gguf)
    padded = counting_padding(monkeypatch)
    try:
        results = together(model, [make_job(model, prompts[i], draft_max=6, num_predict=40)
                                   for i in range(3)])
    finally:
        model.close()
    assert padded
    assert [r[0] for r in results] == [alone(tiny_gguf, prompts[i], draft_max=6,
                                             num_predict=40)[0] for i in range(3)]


def test_break_prefix_copied_from_an_idle_donor_being_padded(tiny_gguf, monkeypatch):
    """Slot 0 idles with a long conversation; a new request shares its first 40+ tokens
    and copies them into an empty slot while slot 0 is padded in the same steps."""
    model = open_model(tiny_gguf)
    scheduler = model.scheduler
    try:
        shared = (model.tokenize(" ".join(TEXTS)) * 2)[:48]
        tail = (model.tokenize(TEXTS[7] + " " + TEXTS[6]) * 3)[:40]
        read_all(scheduler.submit(make_job(model, shared + tail, num_predict=4)))
        assert len(scheduler.slots[0].cached) >= 88
        padded = counting_padding(monkeypatch)
        gen = [make_job(model, TEXTS[4], num_predict=40), make_job(model, TEXTS[5],
                                                                    num_predict=40)]
        streams = [scheduler.submit(j) for j in gen]
        assert wait_until(lambda: all(j.generated for j in gen))
        sharer = make_job(model, shared + model.tokenize(TEXTS[3]), num_predict=16)
        answer = read_all(scheduler.submit(sharer))[0]
        rest = [read_all(s)[0] for s in streams]
        assert sharer.stats.prompt_shared_count >= 40
        assert 0 in padded
        kv_matches(model)
    finally:
        model.close()
    assert answer == alone(tiny_gguf, shared + model_tokens(tiny_gguf, TEXTS[3]),
                           num_predict=16)[0]
    assert rest == [alone(tiny_gguf, TEXTS[4 + i], num_predict=40)[0] for i in range(2)]


def model_tokens(path: Path, text: str) -> list[int]:
    model = open_model(path, padding=False)
    try:
        return model.tokenize(text)
    finally:
        model.close()


@pytest.mark.parametrize("num_parallel", [1, 2])
def test_break_few_slots_with_padding_on(tiny_gguf, num_parallel):
    model = open_model(tiny_gguf, num_parallel=num_parallel, eager=False)
    try:
        results = together(model, [make_job(model, TEXTS[i], num_predict=16) for i in range(3)])
    finally:
        model.close()
    assert [r[0] for r in results] == [alone(tiny_gguf, TEXTS[i], num_predict=16)[0]
                                       for i in range(3)]


def test_break_real_cost_model_churn_equals_alone(tiny_gguf):
    """The real RowCosts, measuring: it explores padded lengths as it goes."""
    model = open_model(tiny_gguf, eager=False)
    specs = [(TEXTS[i % len(TEXTS)], 6 + 3 * (i % 5)) for i in range(10)]
    try:
        results = together(model, [make_job(model, p, num_predict=n) for p, n in specs],
                           stagger=0.02)
        kv_matches(model)
        assert model.scheduler.row_costs.times  # something was measured
    finally:
        model.close()
    assert [r[0] for r in results] == [alone(tiny_gguf, p, num_predict=n)[0] for p, n in specs]


def test_break_runner_process_padding_on_and_off_give_the_same_answers(tmp_path, tiny_gguf):
    """Through the runtime (a runner process each): four concurrent streams, padding on
    (the default) and off (LOCALLAMA_BATCH_PADDING=0), the same texts."""
    from locallama.runtime.types import GenerateRequest
    from runtimes import local_runtime

    def answers(runtime) -> list[str]:
        out: list = [None] * 3

        def go(i: int) -> None:
            out[i] = "".join(c.text for c in runtime.generate(GenerateRequest(
                "tiny", TEXTS[i], raw=True, options={"temperature": 0, "num_predict": 40,
                                                     "seed": 1})))

        threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return out

    on = local_runtime(tmp_path / "on", ("tiny", tiny_gguf), num_parallel=4)
    off = local_runtime(tmp_path / "off", ("tiny", tiny_gguf), num_parallel=4,
                        batch_padding=False)
    inproc = local_runtime(tmp_path / "in", ("tiny", tiny_gguf), num_parallel=4,
                           runner="inprocess")
    try:
        expected = answers(off)
        assert all(expected)
        assert answers(on) == expected
        assert answers(inproc) == expected
        [entry] = inproc.loader.entries()
        assert entry.model.scheduler.row_costs is not None
    finally:
        on.close()
        off.close()
        inproc.close()


@pytest.mark.parametrize("seed", [17, 18, 19])
def test_break_mixed_options_cancels_and_churn_with_forced_padding(tiny_gguf, monkeypatch, seed):
    """Eight slots, thirty requests arriving at random moments with every kind of option
    (greedy, seeded sampling, grammar, logprobs, drafts, stop sequences, tiny and long
    num_predict); every fourth is cancelled after a few pieces.  No error, no hang, each
    finished answer is the one it gives alone, and every idle slot's cache is intact."""
    rng = random.Random(seed)
    kinds = [dict(), dict(temperature=0.8, seed=3, top_k=20),
             dict(grammar="root ::= [a-z ]+"), dict(top_logprobs=2),
             dict(draft_max=4), dict(num_predict=1), dict(stop=["e"]),
             dict(temperature=1.2, seed=99, repeat_penalty=1.3)]
    specs = []
    for i in range(30):
        opts = dict(kinds[i % len(kinds)])
        opts.setdefault("num_predict", rng.randint(2, 40))
        prompt = TEXTS[rng.randrange(len(TEXTS))] + " " + TEXTS[i % len(TEXTS)]
        specs.append((prompt, opts, i % 4 == 3))
    model = open_model(tiny_gguf, num_parallel=8)
    scheduler = model.scheduler
    padded = counting_padding(monkeypatch)
    results: list = [None] * len(specs)
    errors: list = []

    def go(i: int) -> None:
        prompt, opts, cancel = specs[i]
        try:
            time.sleep(rng_delays[i])
            stream = scheduler.submit(make_job(model, prompt, **dict(opts)))
            if cancel:
                for k, _ in enumerate(stream):
                    if k >= 2:
                        break
                stream.close()
            else:
                results[i] = read_all(stream)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    rng_delays = [rng.uniform(0, 0.15) for _ in specs]
    try:
        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(specs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a request hung"
        assert not errors, errors
        assert wait_until(lambda: scheduler.active() == 0)
        kv_matches(model)
    finally:
        model.close()
    assert padded
    for i, (prompt, opts, cancel) in enumerate(specs):
        if not cancel:
            assert results[i][0] == alone(tiny_gguf, prompt, **dict(opts))[0], (i, opts)


def test_break_no_shift_at_context_end_beside_padding(tiny_gguf, monkeypatch):
    """shift off: requests stop at num_ctx ('length') while spare slots are padded; the
    slots they leave are full (never padded) and their caches intact."""
    model = open_model(tiny_gguf, num_ctx=40)
    padded = counting_padding(monkeypatch)
    try:
        jobs = [make_job(model, TEXTS[i], num_predict=-1, shift=False) for i in range(2)]
        results = together(model, jobs)
        kv_matches(model)
        assert all(j.stats.done_reason == "length" for j in jobs)
        assert all(len(model.scheduler.slots[j.slot.id if j.slot else 0].cached) <= 40
                   for j in jobs)
    finally:
        model.close()
    assert padded
    assert [r[0] for r in results] == [alone(tiny_gguf, TEXTS[i], num_ctx=40, num_predict=-1,
                                             shift=False)[0] for i in range(2)]


def test_break_flash_attention_padded_as_unpadded(tiny_gguf, monkeypatch):
    """Flash attention on: padded rows write into the spare slots' cells and are
    removed; the answers are those of the same requests batched unpadded, and every
    idle cache is intact.  (A quantized KV cache needs head dims the tiny model lacks.)"""
    kv_type = "f16"
    def run(padding: bool) -> list:
        params = ContextParams(num_ctx=128, num_batch=32, num_gpu=0, use_mmap=True,
                               threads=2, num_parallel=4, batch_padding=padding,
                               flash_attention=True, kv_cache_type=kv_type)
        model = LoadedModel(tiny_gguf, read_gguf_info(tiny_gguf), params)
        model.scheduler = Scheduler(model)
        if padding:
            model.scheduler.row_costs = Eager()
        try:
            fill_slots(model, [TEXTS[6], TEXTS[7]], num_predict=3)
            out = together(model, [make_job(model, TEXTS[i], num_predict=30, top_logprobs=1)
                                   for i in range(2)])
            kv_matches(model)
            return out
        finally:
            model.close()

    padded = counting_padding(monkeypatch)
    on = run(True)
    assert padded
    assert on == run(False)


def test_break_f16_non_adjacent_requests_answer_as_alone_with_padding_off(make_gguf):
    """F16 weights (as F16/BF16 and K-quant models: batching changes their logits).
    Two requests in slots 0 and 2: llama.cpp splits their step into two micro-batches of
    one row each, so each answer (seeded sampling, logprobs) is the one it gives alone.
    Padding may join them into one run, and then their answers vary with the batch, as
    any batched answer on such weights does (README, *Determinism and its price*):
    LOCALLAMA_BATCH_PADDING=0 keeps llama.cpp's split."""
    from tinymodel import F16

    path = make_gguf(file_type=F16)
    opts = dict(num_predict=60, temperature=0.9, seed=5, top_logprobs=1)
    model = open_model(path, padding=False)
    try:
        fill_slots(model, [TEXTS[6], TEXTS[7]], num_predict=2)  # slots 0 and 1 cached
        held = list(model.scheduler.slots[0].cached)
        jobs = [make_job(model, held + held[1:3], **opts), make_job(model, TEXTS[0], **opts)]
        out = together(model, jobs)
        assert [j.slot.id for j in jobs] == [0, 2]
    finally:
        model.close()
    assert out[0] == alone(path, held + held[1:3], **opts)
    assert out[1] == alone(path, TEXTS[0], **opts)
