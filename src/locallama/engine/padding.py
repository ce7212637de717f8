"""The generating sequences' step, planned: runs of adjacent sequences, padded where a
larger batch is faster.

Two facts about llama.cpp on the CPU shape this.  With a KV stream per sequence
(``kv_unified`` off, as the scheduler runs it), a batch is cut into micro-batches of
*consecutive* sequence ids, taken in the batch's order (``split_equal``, "accept only
increasing sequence ids"): one token for each of sequences 0, 1, 5, 6, 7 is two
decodes, of 0-1 and of 5-7, each a full pass over the weights.  And its matrix
kernels take a micro-batch's rows in tiles of 4; rows past the last whole tile cost
a further pass each.  On gemma3:270m (a Q8_0 output matrix of 262,144 × 640) with 2
threads, one token for each of k consecutive sequences took, in ms
(``bench/batch_padding.py``)::

    k     1     2     3     4     5     6     7     8
    ms  11.1  21.2  27.2  30.9  44.0  48.4  53.4  37.4

so seven streams take 53 ms a step where eight take 37, and 0-1 + 5-7 take 21 + 27.
A padding row is one token in a slot with no job, at that slot's next position,
evaluated with the others and then removed from the KV cache (the slot's cached
prefix stays as it was, for the next job that shares it; a sliding-window model's
slot is padded only while its window has not begun to slide).  Padding the slots
between two runs joins them; padding beside a run lengthens it to a faster size.

Which run lengths are faster depends on the CPU, the weights' types and the
threads, so nothing is assumed: each run is its own ``llama_decode`` (what llama.cpp
would do with it anyway), timed, and :class:`RowCosts` keeps each length's recent
times and plans the step with the least estimated time (a dynamic program over the
slots in id order).  A length not measured yet (up to the generating count plus
``MAX_PADDING``) counts as free, so it is tried; each is measured again once in a
while, since one measurement may have come from a busy moment.

Padding changes a step's row count, and with it the low-order bits of its logits
where llama.cpp picks another kernel for more rows (F32 included).  The answers stay
those of each request alone where batching keeps them (``batch_exact.py``: measured
by text).  Where it does not, they vary with the batch as they already did, and
padding can join requests that llama.cpp would have decoded apart (slots 0 and 2,
say), so which runs were measured faster can change them: ``LOCALLAMA_BATCH_PADDING=0``
keeps llama.cpp's split.  A request generating alone is never padded, so its answer
never depends on timing.  Recurrent and hybrid models, whose state a token changes
for good, are never padded (:func:`can_pad`).
"""

from __future__ import annotations

import collections
import math
import statistics

MAX_PADDING = 3  # unmeasured run lengths are tried up to the generating count plus this
SAMPLES = 3  # steps measured of a run length before it is trusted
WINDOW = 9  # a run length's estimate: the median of its last WINDOW decodes
RETRY_STEPS = 2048  # plans after which a run length's estimate is measured again
REPLAN_STEPS = 16  # plans after which the same slots are planned afresh

GENERATING, SPARE, OTHER = "g", "s", "."  # a slot's kind, in plan()'s ``kinds``


class RowCosts:
    """Measured seconds per decode by run length (rows), and the step's plan.

    :meth:`plan` takes each slot's kind and returns the runs to decode;
    :meth:`observe` records a run's decode time."""

    def __init__(self, measured: dict[int, float] | None = None) -> None:
        """``measured``: run lengths taken as measured at these seconds (tests)."""
        self.times: dict[int, collections.deque[float]] = {}
        self._seen: dict[int, int] = {}  # run length -> plan count when last observed
        self._plans = 0
        self._cached: tuple[str, int, list[tuple[int, int]]] | None = None
        for rows, seconds in (measured or {}).items():
            for _ in range(SAMPLES):
                self.observe(rows, seconds)

    def observe(self, rows: int, seconds: float) -> None:
        """One decode of a run of ``rows`` rows took ``seconds``."""
        self.times.setdefault(rows, collections.deque(maxlen=WINDOW)).append(seconds)
        self._seen[rows] = self._plans

    def estimate(self, rows: int) -> float | None:
        """Seconds a run of ``rows`` takes: the median of its recent decodes; None while
        it has fewer than ``SAMPLES`` or its last is more than ``RETRY_STEPS`` plans old."""
        times = self.times.get(rows)
        if (times is None or len(times) < SAMPLES
                or self._plans - self._seen[rows] > RETRY_STEPS):
            return None
        return statistics.median(times)

    def plan(self, kinds: str) -> list[tuple[int, int]]:
        """The runs to decode this step, as (first, last) slot ids, inclusive, in order.

        ``kinds`` has one character per slot in id order: ``GENERATING`` (a job's next
        token), ``SPARE`` (no job, room for a token: may be padded) or ``OTHER``.  Every
        generating slot is in exactly one run, every run holds at least one, and the
        spare slots inside a run are its padding.  The plan minimizes the summed
        estimates (unmeasured lengths up to the generating count + ``MAX_PADDING``
        count as 0, so they get measured; longer ones are not considered), then the
        padding rows; the same ``kinds`` keep their plan for ``REPLAN_STEPS`` plans
        unless it tries an unmeasured length.  A lone generating slot is never padded:
        its rows, and so its logits to the last bit, never depend on timing."""
        self._plans += 1
        cached = self._cached
        if cached is not None and cached[0] == kinds and self._plans - cached[1] < REPLAN_STEPS:
            return cached[2]
        if SPARE not in kinds or kinds.count(GENERATING) < 2:
            runs, exploring = _maximal_runs(kinds), False
        else:
            runs, exploring = self._best(kinds)
        self._cached = None if exploring else (kinds, self._plans, runs)
        return runs

    def _best(self, kinds: str) -> tuple[list[tuple[int, int]], bool]:
        """The dynamic program of :meth:`plan`; also whether it tries an unmeasured
        length.  A state is the open run (its start, or -1, and whether it holds a
        generating slot); its value (seconds, padding rows, runs closed so far)."""
        limit = kinds.count(GENERATING) + MAX_PADDING
        cost: dict[int, float] = {}
        unmeasured: set[int] = set()

        def run_cost(length: int) -> float:
            if length not in cost:
                known = self.estimate(length)
                if known is None:
                    unmeasured.add(length)
                cost[length] = (known if known is not None
                                else 0.0 if length <= limit else math.inf)
            return cost[length]

        states: dict[tuple[int, bool], _Value] = {(-1, False): (0.0, 0, ())}
        for i, kind in enumerate(kinds + OTHER):  # a last OTHER closes the open run
            following: dict[tuple[int, bool], _Value] = {}
            for (start, held), (seconds, padding, runs) in states.items():
                if kind == GENERATING:
                    _keep(following, (i if start < 0 else start, True), (seconds, padding, runs))
                    continue
                if start < 0:
                    _keep(following, (-1, False), (seconds, padding, runs))
                elif held:  # close the run here
                    _keep(following, (-1, False), (seconds + run_cost(i - start), padding,
                                                   (*runs, (start, i - 1))))
                if kind == SPARE:  # pad it, opening or lengthening a run
                    _keep(following, (i if start < 0 else start, held),
                          (seconds, padding + 1, runs))
            states = following
        _, _, runs = states[(-1, False)]
        return list(runs), any(last - first + 1 in unmeasured for first, last in runs)


_Value = tuple[float, int, tuple[tuple[int, int], ...]]  # seconds, padding rows, runs


def _keep(states: dict[tuple[int, bool], _Value], state: tuple[int, bool],
          value: _Value) -> None:
    """Keep ``value`` for ``state`` unless one as fast with as little padding is kept."""
    if state not in states or value[:2] < states[state][:2]:
        states[state] = value


def _maximal_runs(kinds: str) -> list[tuple[int, int]]:
    """The runs of consecutive generating slots, nothing padded."""
    runs, start = [], -1
    for i, kind in enumerate(kinds + OTHER):
        if kind == GENERATING and start < 0:
            start = i
        elif kind != GENERATING and start >= 0:
            runs.append((start, i - 1))
            start = -1
    return runs


KV_BUCKET = 256  # cells: a padding row may reach this far past the generating slots


def kinds_of(slots: list, generating: set[int], num_ctx: int, n_swa: int = 0) -> str:
    """:meth:`RowCosts.plan`'s ``kinds`` for ``slots`` (in id order), ``generating``
    the ids of the slots whose job decodes one token this step.  A slot with no job is
    spare while it has room for one more token, holds no more tokens than the longest
    generating slot rounded up to ``KV_BUCKET`` (llama.cpp sizes a micro-batch's
    attention by its longest KV stream, so a long idle conversation beside short
    ones would cost every row of the run), and, for a sliding-window model (``n_swa``
    > 0 tokens), fewer than ``n_swa``: one token more would move its window, and
    llama.cpp may then drop the window's oldest cell for good, so that the
    conversation's next turn could no longer reuse the cache."""
    longest = max((len(slot.cached) for slot in slots if slot.id in generating), default=0)
    reach = max(KV_BUCKET, -(-(longest + 1) // KV_BUCKET) * KV_BUCKET)
    return "".join(GENERATING if slot.id in generating
                   else SPARE if slot.job is None and len(slot.cached) + 1 < num_ctx
                   and len(slot.cached) < reach and (n_swa <= 0 or len(slot.cached) < n_swa)
                   else OTHER for slot in slots)


def remove_padding(memory, padded: list) -> None:
    """Remove the padding rows' KV cells: each padded slot holds its cached tokens again.
    A slot whose cell llama.cpp cannot remove (it never should: :func:`can_pad`) is
    emptied, so that nothing reuses a cache that no longer matches its tokens."""
    import llama_cpp

    for slot in padded:
        if not llama_cpp.llama_memory_seq_rm(memory, slot.id, len(slot.cached), -1):
            llama_cpp.llama_memory_seq_rm(memory, slot.id, -1, -1)
            slot.cached.clear()


def can_pad(model) -> bool:
    """Whether a padding row can be taken back out of ``model``'s memory (a llama_model
    pointer): not from a recurrent state (Mamba, RWKV, hybrids), which a token changes
    for good, so those models are never padded."""
    import llama_cpp

    return not (llama_cpp.llama_model_is_recurrent(model)
                or llama_cpp.llama_model_is_hybrid(model))
