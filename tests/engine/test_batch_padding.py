"""Padding generation steps with spare rows where a larger batch is measured faster
(engine/padding.py): the choice follows measured step times, and a padded step
changes nothing a request or a cached prefix holds."""

from __future__ import annotations

import threading
from pathlib import Path

import llama_cpp
import pytest

from locallama.engine.model import LoadedModel
from locallama.engine.padding import (
    MAX_PADDING,
    RETRY_STEPS,
    SAMPLES,
    WINDOW,
    RowCosts,
    kinds_of,
)
from locallama.engine.params import ContextParams
from locallama.engine.scheduler import Job, Scheduler
from locallama.engine.slots import Slot
from locallama.errors import InvalidRequest
from locallama.gguf_info import read_gguf_info
from locallama.options import resolve_options
from locallama.settings import Settings
from schedjobs import counting_padding, text_of

PROMPTS = ["The river runs", "Seven small stones", "A letter came"]
SHELF = "The old library keeps its maps on the third shelf, by the window"


def open_padded(path: Path, padding: bool = True) -> LoadedModel:
    params = ContextParams(num_ctx=256, num_batch=32, num_gpu=0, use_mmap=True, threads=2,
                           num_parallel=4, batch_padding=padding)
    model = LoadedModel(path, read_gguf_info(path), params)
    model.scheduler = Scheduler(model)
    return model


def greedy(model: LoadedModel, prompt: str | list[int]) -> Job:
    tokens = model.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
    return Job(tokens, resolve_options({"num_predict": 24, "temperature": 0}))


def alone(path: Path, prompt: str | list[int]) -> str:
    """The greedy answer on a fresh context of its own, padding off."""
    model = open_padded(path, padding=False)
    try:
        return text_of(model, greedy(model, prompt))
    finally:
        model.close()


# -- the plan --------------------------------------------------------------------------

# bench/batch_padding.py's table on gemma3:270m, 2 threads (seconds per run length)
MEASURED = {1: 0.011, 2: 0.021, 3: 0.027, 4: 0.031, 5: 0.044, 6: 0.048, 7: 0.053, 8: 0.037}


@pytest.mark.parametrize(("kinds", "runs"), [
    ("gsss", [(0, 0)]),  # one stream: never padded
    ("ggsss", [(0, 1)]),  # two: padding to 3 or 4 only costs
    ("gggggsss", [(0, 7)]),  # five padded to eight
    ("ggsssggg", [(0, 7)]),  # the gap filled: one decode of 8, not 2 + 3
    ("gssssssg", [(0, 0), (7, 7)]),  # not filled: 2 × 11 ms beat 37
    ("ggg.gggg", [(0, 2), (4, 7)]),  # a slot busy with its prompt cannot be padded
    ("gggggggg", [(0, 7)]),
    ("gsgs", [(0, 0), (2, 2)]),
    ("ggsgs", [(0, 3)]),
    ("....", []),
])
def test_the_plan_takes_the_fastest_runs(kinds, runs):
    assert RowCosts(MEASURED).plan(kinds) == runs


def test_which_slots_may_be_padded():
    slots = [Slot(0, [1] * 10), Slot(1, [1] * 10, job=object()), Slot(2, [1] * 300),
             Slot(3, []), Slot(4, [1] * 255)]
    assert kinds_of(slots, {1}, num_ctx=4096) == "sg.ss"  # 300: past the generating reach
    slots[1].cached = [1] * 400
    assert kinds_of(slots, {1}, num_ctx=4096) == "sgsss"
    assert kinds_of(slots, {1}, num_ctx=256) == "sg.s."  # no room for one more token
    # a sliding window of 256: one more token in slot 2 would move its window
    assert kinds_of(slots, {1}, num_ctx=4096, n_swa=256) == "sg.ss"
    assert kinds_of(slots, set(), num_ctx=4096) == "s..ss"  # busy: its prompt, say


def test_a_long_idle_conversation_is_not_padded_beside_short_ones():
    """llama.cpp's attention spans a micro-batch's longest KV stream: an idle slot of
    3,000 tokens padded beside 20-token sequences would make every row attend over
    3,000 cells."""
    slots = [Slot(0, [1] * 20, job=object()), Slot(1, [1] * 3000), Slot(2, [1] * 200),
             Slot(3, [1] * 20, job=object())]
    assert kinds_of(slots, {0, 3}, num_ctx=4096) == "g.sg"
    slots[0].cached = [1] * 2900  # a long one generating: the idle one is in reach
    assert kinds_of(slots, {0, 3}, num_ctx=4096) == "gssg"


def measure(costs: RowCosts, kinds: str, seconds: dict[int, float]) -> list[int]:
    """One step: the run lengths planned, each observed at ``seconds``."""
    lengths = [last - first + 1 for first, last in costs.plan(kinds)]
    for length in lengths:
        costs.observe(length, seconds[length])
    return lengths


def test_the_unpadded_step_is_measured_first_then_each_candidate_a_few_times():
    costs = RowCosts()
    chosen = [measure(costs, "ggssssss", MEASURED) for _ in range(4 * SAMPLES + 3)]
    # up to two generating rows + MAX_PADDING: 6 to 8 are never tried for two streams
    assert chosen == ([[2]] * SAMPLES + [[3]] * SAMPLES + [[4]] * SAMPLES
                      + [[5]] * SAMPLES + [[2]] * 3)
    assert MAX_PADDING == 3


def test_a_request_generating_alone_is_never_padded():
    costs = RowCosts({1: 1.0, 2: 0.001, 3: 0.001, 4: 0.001})
    assert [costs.plan("gsss") for _ in range(5)] == [[(0, 0)]] * 5
    assert RowCosts().plan("ssgs") == [(2, 2)]  # not even to measure


def test_one_slow_step_does_not_flip_the_choice():
    """A step slowed by something else (a request arriving, another program) is one of
    the estimate's steps, not the estimate."""
    costs = RowCosts(MEASURED)
    costs.observe(8, 0.400)
    assert [measure(costs, "gggggggs", MEASURED) for _ in range(20)] == [[8]] * 20


def test_a_length_not_decoded_for_a_while_is_measured_again():
    costs = RowCosts({7: 0.053, 8: 0.200})  # 8 looked slow while the machine was busy
    chosen = [measure(costs, "gggggggs", MEASURED)[0]
              for _ in range(RETRY_STEPS * (WINDOW // 2 + 1) + 2)]
    assert chosen[:RETRY_STEPS] == [7] * RETRY_STEPS
    assert chosen[-1] == 8  # its new steps outnumber the old ones: padded from then on


def test_the_setting_turns_it_off_and_refuses_a_wrong_value(tiny_gguf):
    assert Settings.from_env({}).batch_padding is True
    assert Settings.from_env({"LOCALLAMA_BATCH_PADDING": "0"}).batch_padding is False
    with pytest.raises(InvalidRequest, match="LOCALLAMA_BATCH_PADDING"):
        Settings.from_env({"LOCALLAMA_BATCH_PADDING": "sometimes"})
    model = open_padded(tiny_gguf, padding=False)
    try:
        assert model.scheduler.row_costs is None
    finally:
        model.close()


# -- padded steps -----------------------------------------------------------------------


def test_a_padded_gap_changes_no_answer_and_no_cached_prefix(tiny_gguf, monkeypatch):
    """Slots 0-2 hold three conversations; the first and the third go on, and a new one
    takes slot 3, all at once: slot 1 lies between them, and the measured costs say
    one decode of four rows beats two decodes.  Each answer is the one it gives alone
    (F32 weights, whose rows do not depend on the batch), and slot 1's conversation is
    still cached, reused by its next turn."""
    firsts = [SHELF, "Seven small stones lay by the river", "A letter came for the baker"]
    model = open_padded(tiny_gguf)
    try:
        scheduler = model.scheduler
        for text in firsts:
            text_of(model, greedy(model, text))
        assert [slot.cached != [] for slot in scheduler.slots] == [True, True, True, False]
        holder = scheduler.slots[1]
        held = list(holder.cached)
        more = held[1:3]  # two more tokens for a conversation's next turn
        follow = [scheduler.slots[0].cached + more, scheduler.slots[2].cached + more,
                  model.tokenize("The river runs")]
        for _ in range(SAMPLES):  # one run of four looks faster than anything else
            for rows in (1, 2, 3):
                scheduler.row_costs.observe(rows, 1.0)
            scheduler.row_costs.observe(4, 0.0)
        padded = counting_padding(monkeypatch)
        jobs = [greedy(model, text) for text in follow]
        streams = [scheduler.submit(job) for job in jobs]  # queued together
        answers: list[str | None] = [None] * len(jobs)

        def read(i: int) -> None:
            answers[i] = "".join(piece.text for piece in streams[i])

        threads = [threading.Thread(target=read, args=(i,)) for i in range(len(jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [job.slot.id for job in jobs] == [0, 2, 3]
        assert padded and set(padded) == {1}
        assert holder.job is None and holder.cached == held
        memory = llama_cpp.llama_get_memory(scheduler.ctx)
        assert llama_cpp.llama_memory_seq_pos_max(memory, holder.id) == len(held) - 1
        again = greedy(model, held + more)
        answer = text_of(model, again)
        assert again.slot is holder
        assert again.stats.prompt_eval_count == len(more)  # the rest came from its cache
    finally:
        model.close()
    assert answers == [alone(tiny_gguf, prompt) for prompt in follow]
    assert answer == alone(tiny_gguf, held + more)
