"""Speculative decoding: n-gram drafts, their verification in the scheduler, the counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest

from locallama.api.openai_objects import Usage
from locallama.engine import decode_trace
from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.engine.scheduler import Job, Scheduler
from locallama.engine.speculative import PromptLookup, draft_room, fresh_step_difference
from locallama.errors import InvalidRequest
from locallama.gguf_info import read_gguf_info
from locallama.options import parse_parameters, resolve_options
from locallama.runtime.types import Chunk
from schedjobs import wait_until

#: a prompt the tiny model's greedy answer partly repeats (so drafts get accepted)
REPETITIVE = "the cat sat on the mat. " * 12


def open_model(path: Path, num_ctx: int = 512, num_batch: int = 64,
               num_parallel: int = 2) -> LoadedModel:
    params = ContextParams(num_ctx=num_ctx, num_batch=num_batch, num_gpu=0, use_mmap=True,
                           threads=2, num_parallel=num_parallel)
    model = LoadedModel(path, read_gguf_info(path), params)
    model.scheduler = Scheduler(model)
    return model


@pytest.fixture
def q8(make_gguf) -> Iterator[LoadedModel]:
    """A model whose batched logits equal its single steps' bit for bit (Q8_0 weights)."""
    model = open_model(make_gguf(file_type=gguf.LlamaFileType.MOSTLY_Q8_0))
    yield model
    model.close()


def run(model: LoadedModel, prompt: str = REPETITIVE, grammar: str | None = None,
        stops: tuple[str, ...] = (), **options) -> tuple[str, Job]:
    job = Job(model.tokenize(prompt), resolve_options({"temperature": 0, **options}),
              stops, grammar=grammar)
    return "".join(piece.text for piece in model.scheduler.submit(job)), job



# -- drafting -----------------------------------------------------------------------


def test_prompt_lookup_drafts_what_followed_the_latest_match():
    lookup = PromptLookup([5, 1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 4, 1, 2], size_n=3)
    assert lookup.draft(3) == [3, 7, 8]  # "1 2" last seen before "3 7 8", not "3 9 9"
    lookup.extend([3])
    assert lookup.draft(2) == [7, 8]  # the 3-gram "1 2 3" now matches
    assert lookup.draft(0) == []


def test_prompt_lookup_without_a_match_drafts_nothing():
    lookup = PromptLookup([1, 2, 3, 4, 5], size_n=3, min_n=2)
    assert lookup.draft(4) == []  # "4 5" and "5 ..." pairs never seen before the end
    lookup.extend([1])
    assert lookup.draft(4) == []  # a single token is below min_n
    lookup.extend([2])
    assert lookup.draft(4) == [3, 4, 5, 1]


def test_the_draft_never_runs_past_num_predict_the_context_or_the_batch():
    options = resolve_options({"draft_max": 16, "num_predict": 10})
    assert draft_room(options, generated=4, cached=50, num_ctx=512, num_batch=64) == 5
    assert draft_room(options, generated=9, cached=50, num_ctx=512, num_batch=64) == 0
    endless = resolve_options({"draft_max": 16})
    assert draft_room(endless, generated=0, cached=505, num_ctx=512, num_batch=64) == 4
    assert draft_room(endless, generated=0, cached=0, num_ctx=512, num_batch=8) == 7


def test_draft_options_use_llama_cpp_names_and_are_checked():
    assert resolve_options({"draft_num_predict": 5}).draft_max == 5  # the Modelfile alias
    assert parse_parameters([("draft_num_predict", "6")]) == {"draft_num_predict": 6}
    with pytest.raises(InvalidRequest, match="draft_max"):
        resolve_options({"draft_max": 1000})
    with pytest.raises(InvalidRequest, match="spec_ngram_size_n"):
        resolve_options({"spec_ngram_size_n": 0})
    # the draft model's name is the model's, not a generation option
    assert parse_parameters([("draft_model", "small")]) == {"draft_model": "small"}
    assert resolve_options({"draft_model": "small"}, strict=True).draft_max == -1


# -- verification in the scheduler ------------------------------------------------


@pytest.mark.parametrize("options", [{"temperature": 0}, {"temperature": 0.1, "seed": 3}],
                         ids=["greedy", "seeded"])
def test_output_is_identical_with_and_without_speculation(q8, options):
    plain, off = run(q8, num_predict=120, draft_max=0, **options)
    fast, on = run(q8, num_predict=120, draft_max=8, **options)
    assert fast == plain
    assert off.stats.draft_n == 0
    assert on.stats.draft_n_accepted > 0  # drafts were taken, not only tried
    assert on.stats.eval_count == off.stats.eval_count


def test_drafted_and_accepted_counts_are_reported(q8):
    _, job = run(q8, num_predict=120, draft_max=8)
    stats = job.stats
    assert 0 < stats.draft_n_accepted <= stats.draft_n
    # every step yields one token of its own, plus the drafts it accepted
    assert stats.eval_count <= 120


def probe(model: LoadedModel) -> float:
    return fresh_step_difference(model, threads=2)


def test_the_probe_tells_exact_batches_from_inexact_ones_traced_or_not(
        q8, tiny_gguf, tmp_path, monkeypatch):
    import llama_cpp

    assert probe(q8) == 0.0
    f32 = open_model(tiny_gguf)
    try:
        assert 0.0 < probe(f32) < 1.0  # rounding, not a failed decode (inf)
    finally:
        f32.close()
    # with LOCALLAMA_DECODE_TRACE's wrapper installed, the probe calls the real decode
    # and leaves the trace empty
    monkeypatch.setattr(llama_cpp, "llama_decode", llama_cpp.llama_decode)  # put back after
    decode_trace.install(tmp_path / "trace")
    assert probe(q8) == 0.0
    assert decode_trace.read(tmp_path / "trace") == []


def test_auto_speculates_sampled_requests_only(q8):
    # draft_max -1 leaves greedy requests alone even where 12 probe tokens batch
    # exactly (Q8_0 here): other tokens at other positions can still round otherwise
    # (test_speculation_break.py has such a case), and a greedy answer must stay the
    # model's own; a sampled answer keeps its distribution, so it is drafted
    assert fresh_step_difference(q8, threads=2) == 0.0
    _, greedy = run(q8, num_predict=60)
    assert greedy.stats.draft_n == 0
    _, sampled = run(q8, num_predict=60, temperature=0.1, seed=3)
    assert sampled.stats.draft_n > 0
    _, off = run(q8, num_predict=60, temperature=0.1, seed=3, draft_max=0)
    assert off.stats.draft_n == 0
    _, forced = run(q8, num_predict=60, draft_max=8)  # asked for: greedy drafts too
    assert forced.stats.draft_n > 0


@pytest.mark.parametrize("limit", [1, 2, 7, 33])
def test_num_predict_is_exact(q8, limit):
    whole, _ = run(q8, num_predict=80, draft_max=0)
    text, job = run(q8, num_predict=limit, draft_max=8)
    assert job.stats.eval_count == limit
    assert job.stats.done_reason == "length"
    assert whole.startswith(text)


def test_a_stop_sequence_inside_an_accepted_draft_cuts_there(q8):
    whole, job = run(q8, num_predict=150, draft_max=8)
    assert job.stats.draft_n_accepted > 0
    stop = whole[100:104]
    assert stop.strip()
    text, stopped = run(q8, num_predict=150, draft_max=8, stops=(stop,))
    assert text == whole[:whole.index(stop)]
    assert stopped.stats.stop_sequence == stop
    assert stopped.stats.done_reason == "stop"


def test_a_grammar_sees_the_accepted_tokens_in_order(q8):
    grammar = 'root ::= [a-z ]+ "."'
    plain, _ = run(q8, "aaa bbb aaa bbb aaa bbb aaa", grammar=grammar, num_predict=60,
                   draft_max=0)
    fast, job = run(q8, "aaa bbb aaa bbb aaa bbb aaa", grammar=grammar, num_predict=60,
                    draft_max=8)
    assert fast == plain
    assert set(fast) <= set("abcdefghijklmnopqrstuvwxyz .")


def test_cancelling_mid_draft_frees_the_slot(q8):
    scheduler = q8.scheduler
    job = Job(q8.tokenize(REPETITIVE), resolve_options({"num_predict": 100_000,
                                                         "temperature": 0, "draft_max": 8}),
              grammar="root ::= [a-z ] root")
    pieces = scheduler.submit(job)
    next(pieces)
    assert wait_until(lambda: job.stats.draft_n > 0)
    pieces.close()
    assert wait_until(lambda: scheduler.active() == 0)
    text, after = run(q8, num_predict=20, draft_max=8)
    assert after.stats.eval_count == 20 and text


def test_the_context_shift_keeps_working_with_drafts(make_gguf):
    model = open_model(make_gguf(file_type=gguf.LlamaFileType.MOSTLY_Q8_0), num_ctx=128,
                       num_parallel=1)
    try:
        _, job = run(model, "the cat sat on the mat. " * 4, num_predict=300, draft_max=8)
        assert job.stats.eval_count == 300  # past num_ctx: the context shifted
        assert job.stats.draft_n > 0
        slot = model.scheduler.slots[0]
        assert len(slot.cached) < 128
    finally:
        model.close()


def test_openai_usage_counts_predictions_only_where_drafted():
    usage = Usage()
    usage.add(Chunk(done=True, eval_count=10, prompt_tokens=5))
    assert "completion_tokens_details" not in usage.json()
    usage.add(Chunk(done=True, eval_count=10, prompt_tokens=5, draft_n=8, draft_n_accepted=6),
              prompt_index=1)
    assert usage.json()["completion_tokens_details"] == {
        "accepted_prediction_tokens": 6, "rejected_prediction_tokens": 2}
