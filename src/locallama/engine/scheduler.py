"""The scheduler: the one place that evaluates tokens on a llama.cpp context.

Every request to a loaded model becomes a :class:`Job`.  One thread per model
runs the decode loop: each step is a single ``llama_decode`` of one batch that
holds the next token of every generating sequence plus chunks of the prompts
still being evaluated, so concurrent requests advance together and a long
prompt cannot freeze the other streams.  Each job has its own sequence id (a
slot with its own KV stream), its own sampler chain, seed and stop sequences.

A slot keeps its KV cache after its job ends; a new job goes to the free slot
whose cached tokens share the longest prefix with its prompt and evaluates
only the rest; a longer prefix held (or being evaluated) in another slot is
copied instead (``engine/prefill.py``).  A cancelled job (closed stream, dropped
connection) leaves its slot before the next step.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import llama_cpp

from locallama.engine.context_window import fit_prompt, shift_context
from locallama.engine.job import Job, Piece, PieceStream, stream_pieces
from locallama.engine.model import LoadedModel
from locallama.engine.padding import RowCosts, can_pad, kinds_of, remove_padding
from locallama.engine.params import PromptCounts
from locallama.engine.prefill import MIN_SHARED, PrefixShare, can_reuse
from locallama.engine.sampling import Sampler, sample_rows
from locallama.engine.slots import Slot, choose_slot, common_prefix
from locallama.engine.speculative import Speculator, verify
from locallama.engine.vision import decode_image, image_at, prepare, reuse_limit, text_run
from locallama.errors import Cancelled, InvalidRequest, LocallamaError, ServerBusy
from locallama.runtime.types import TokenLogprob

_SCORE_ROWS = 64  # logits rows per step when scoring a prompt (a row is vocabulary-sized)


class Scheduler:
    """Owns one llama.cpp context with ``num_parallel`` sequences of ``num_ctx`` tokens."""

    def __init__(self, model: LoadedModel, max_queue: int = 0, name: str = "",
                 draft=None) -> None:
        params = model.params
        self.model = model
        self.max_queue = max_queue  # jobs that may wait for a slot; 0: no bound
        self.name = name or model.path.name
        self.num_ctx = params.num_ctx
        self.num_batch = max(params.num_batch, params.num_parallel)
        self.ctx = model.new_context(params.num_ctx * params.num_parallel, params.num_parallel,
                                     self.num_batch, params.threads, params.flash_attention,
                                     params.kv_cache_type or "f16")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.num_batch, 0, 1)
        self.slots = [Slot(i) for i in range(params.num_parallel)]
        self.sharing = PrefixShare(self)  # prefixes copied across slots (engine/prefill.py)
        self.prompt_counts = PromptCounts()  # prompt tokens evaluated / reused, for ps
        # Prompt chunks of several sequences in one llama_decode: llama.cpp then splits
        # the batch into equal-length pieces per sequence, which changes a prompt's
        # logits (bench/prefill_equality.py), so only where batching already does
        # (flash attention on: LOCALLAMA_FLASH_ATTENTION).
        self.prompts_together = params.flash_attention
        self.spec = Speculator(draft)  # speculative decoding: drafts and their checks
        # steps of the generating sequences padded where a larger batch is faster
        self.row_costs = RowCosts() if params.batch_padding and can_pad(model.model) else None
        self._waiting: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._pool = ThreadPoolExecutor(max(1, params.threads), thread_name_prefix="sampler")
        self._thread = threading.Thread(target=self._loop, name=f"scheduler-{model.path.name}",
                                        daemon=True)
        self._thread.start()

    # -- the request side --------------------------------------------------------

    def submit(self, job: Job) -> PieceStream:
        """Queue ``job`` and yield its pieces; closing the iterator (read or not) cancels it.

        Bad prompts fail here, before anything is queued.  The job's ``stats`` and
        ``prompt_scores`` are complete when the iterator ends.  When ``max_queue``
        jobs already wait for a slot, raises ServerBusy (Ollama's OLLAMA_MAX_QUEUE).
        """
        self._check_queue()
        if not job.prompt:
            raise InvalidRequest("the prompt is empty")
        if job.images:
            prepare(self, job)  # checks the ids and room, puts the embeddings on the job
        else:
            self.model.check_tokens(job.prompt)
        job.prompt = fit_prompt(job, self.num_ctx)
        job.stats.prompt_tokens = len(job.prompt)
        if job.score_top is not None:
            job.spelled = self.model.spelling(job.prompt)
            job.prompt_scores = []
            if job.score_from <= 0:
                first = job.spelled[0]  # nothing comes before it: no logprob
                job.prompt_scores.append(TokenLogprob(first.decode("utf-8", "replace"),
                                                      float("nan"), list(first)))
        # The sampler is built here so a grammar that does not compile fails the request.
        job.sampler = Sampler(job.options, self.model.n_vocab, self.num_ctx,
                              history=job.prompt, grammar=job.grammar, vocab=self.model.vocab)
        job.started = time.perf_counter_ns()
        with self._cond:
            if self._closed:
                job.sampler.close()
                raise Cancelled("the model was unloaded")
            try:
                self._check_queue()
            except ServerBusy:
                job.sampler.close()
                raise
            self._waiting.append(job)
            self._cond.notify_all()
        return PieceStream(stream_pieces(job, self.cancel), lambda: self.cancel(job))

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancelled = True
            if job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, None)
            self._cond.notify_all()

    def active(self) -> int:
        """Sequences generating or evaluating their prompt now."""
        with self._cond:
            return sum(1 for s in self.slots if s.job is not None)

    def _check_queue(self) -> None:
        """ServerBusy when ``max_queue`` jobs wait beyond the free slots."""
        with self._cond:
            free = sum(1 for s in self.slots if s.job is None)
            queued = len(self._waiting) - free
            if self.max_queue > 0 and queued >= self.max_queue:
                raise ServerBusy(
                    f"model '{self.name}' is busy: {queued} requests are already waiting "
                    f"(LOCALLAMA_MAX_QUEUE={self.max_queue}); try again shortly")

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    # -- the loop ------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._drop_cancelled()
                while not self._closed and not self._waiting and not self._running():
                    self._cond.wait()
                    self._drop_cancelled()
                if self._closed:
                    break
                self._admit()
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the jobs hear of it, the loop goes on
                with self._cond:
                    for slot in self.slots:
                        if slot.job is not None:
                            self._clear(slot)
                            self._finish(slot.job, exc if isinstance(exc, LocallamaError)
                                         else LocallamaError(f"generation failed: {exc}"))
                            slot.job = None
        with self._cond:
            for job in list(self._waiting) + [s.job for s in self.slots if s.job]:
                self._finish(job, Cancelled("the model was unloaded"))
            self._waiting.clear()
        self._pool.shutdown()
        self.spec.close()
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)

    def _running(self) -> list[Job]:
        return [s.job for s in self.slots if s.job is not None]

    def _drop_cancelled(self) -> None:
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                self._release(slot)

    def _admit(self) -> None:
        """Give waiting jobs, oldest first, the free slot that already holds most of
        their prompt."""
        while self._waiting:
            free = [s for s in self.slots if s.job is None]
            if not free:
                return
            job = self._waiting.popleft()
            slot = choose_slot(free, job.prompt, MIN_SHARED)
            reuse = min(common_prefix(slot.cached, job.prompt), job.logits_from)
            if job.images:
                reuse = reuse_limit(job, reuse)  # never into the middle of an image
            if reuse and not can_reuse(self.model, self.memory, slot, reuse):
                reuse = 0
            llama_cpp.llama_memory_seq_rm(self.memory, slot.id, reuse, -1)
            del slot.cached[reuse:]
            job.slot, job.done_prompt, slot.job = slot, reuse, job
            job.stats.prompt_eval_count = len(job.prompt) - reuse
            self.sharing.admitted(job)

    def _step(self) -> None:
        """One step: the next token of every generating sequence in one batch, then
        prompt chunks, each in a batch of its own (all in one with
        ``prompts_together``), up to num_batch prompt tokens.

        Keeping a prompt chunk out of the generating sequences' batch is what makes
        batching invisible in the output: llama.cpp splits a mixed batch into
        micro-batches by sequence, which would evaluate a prompt in pieces that
        depend on who else is running, and a prompt evaluated in other pieces gives
        (slightly) other logits.  Each sequence's own tokens in a batch of
        single-token steps give the same logits as the sequence alone.
        """
        running = self._running()
        generating = [j for j in running if j.next_token is not None]
        if generating:
            entries, drafted = [], []
            for job in generating:
                draft = self.spec.plan(job, job.next_token, job.slot.cached, self.num_ctx,
                                       self.num_batch)
                (drafted if draft else entries).append((job, [job.next_token, *draft], None))
                job.next_token = None
            if entries:
                self._decode_generating(entries)
            for entry in drafted:  # alone: a batch never mixes one sequence's several tokens
                self._decode([entry])
        budget, together = self.num_batch, []
        for job in sorted((j for j in running if j.done_prompt < len(j.prompt)
                           and not j.cancelled), key=lambda j: j.started):
            if budget <= 0:
                break
            if not self.sharing.ready(job):
                continue  # its prefix is being evaluated in another slot
            start = job.done_prompt
            if job.images and (image := image_at(job, start)) is not None:
                budget -= decode_image(self, job, image)  # a batch of its own
                continue
            size = self.num_batch if not job.images else min(self.num_batch,
                                                              text_run(job, start))
            if job.score_top is not None and start + size > job.logits_from:
                # Rows of logits are vocabulary-sized: a few at a time where they are kept.
                size = min(self.num_batch, max(job.logits_from - start, _SCORE_ROWS))
            if self.prompts_together:
                size = min(size, budget)  # one batch of at most num_batch tokens
            chunk = job.prompt[start:start + size]
            if not job.prompt_started:
                job.prompt_started = time.perf_counter_ns()
            job.done_prompt += len(chunk)
            budget -= len(chunk)
            if self.prompts_together:
                together.append((job, chunk, start))
            else:
                self._decode([(job, chunk, start)])
        if together:
            self._decode(together)

    def _decode_generating(self, entries: list[tuple[Job, list[int], None]]) -> None:
        """The generating sequences' next tokens: one decode, or the padded runs that
        ``row_costs`` plans, a decode each (``engine/padding.py``)."""
        if self.row_costs is None:
            self._decode(entries)
            return
        by_slot = {entry[0].slot.id: entry for entry in entries}
        token = entries[0][1][0]  # what a padding row evaluates
        kinds = kinds_of(self.slots, set(by_slot), self.num_ctx, self.model.n_swa)
        for first, last in self.row_costs.plan(kinds):
            self._decode([by_slot.get(i) or (None, [token], self.slots[i])
                          for i in range(first, last + 1)], timed=True)

    def _decode(self, entries: list[tuple[Job | None, list[int], Any]],
                timed: bool = False) -> None:
        """Evaluate ``entries`` (job, tokens, prompt position of the first or None for a
        generated token) in one llama_decode, then use the logits they asked for.  An
        entry without a job is a padding row (``engine/padding.py``) in the slot given,
        removed after.  ``timed``: a run of generating slots; ``row_costs`` records it."""
        batch, rows, n, padded = self.batch, [], 0, []
        for job, tokens, start in entries:
            slot = job.slot if job is not None else start
            for k, token in enumerate(tokens):
                position = None if job is None or start is None else start + k
                # a padding row's logits too: the output matrix sees the padded count
                logits = job is None or position is None or position >= job.logits_from
                batch.token[n] = token
                batch.pos[n] = len(slot.cached)
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.id
                batch.logits[n] = logits
                if job is None:
                    padded.append(slot)
                else:
                    slot.cached.append(token)
                    if logits:
                        rows.append((job, n, position))
                n += 1
        batch.n_tokens = n
        started = time.perf_counter()
        try:
            code = llama_cpp.llama_decode(self.ctx, batch)
        finally:
            remove_padding(self.memory, padded)
        if timed and code == 0:
            self.row_costs.observe(n, time.perf_counter() - started)
        if code != 0:
            raise LocallamaError(f"llama.cpp could not evaluate the batch (code {code})")
        if entries[0][2] is None and len(entries[0][1]) > 1:
            self._verify(entries[0][0], entries[0][1][1:])
            return
        now = time.perf_counter_ns()
        with self._cond:
            rows = [r for r in rows if r[0].slot is not None and not r[0].cancelled]
        tokens = sample_rows(self._pool, self.ctx, [(job.sampler, row) for job, row, position
                                                    in rows if self._samples(job, position)])
        with self._cond:
            for job, row, position in rows:
                if job.slot is None or job.cancelled or job.finished:
                    continue
                if position is not None:
                    self._prompt_row(job, row, position, now)
                if row in tokens:
                    self._sampled(job, tokens[row], row, now)

    def _verify(self, job: Job, draft: list[int]) -> None:
        """After ``[last, *draft]`` of ``job`` was evaluated: keep what the target's own
        sampling accepts (``speculative.verify``), remove the rejected tokens' KV cells
        and hand each kept token on as a sampled one, in order."""
        with self._cond:
            if job.slot is None or job.cancelled or job.finished:
                return
        drawn = verify(job.sampler, self.ctx, draft)
        now = time.perf_counter_ns()
        with self._cond:
            if job.slot is None or job.cancelled or job.finished:
                return
            slot, rejected = job.slot, len(draft) - (len(drawn) - 1)
            self.spec.checked(job, len(draft), len(drawn) - 1)
            if rejected:
                llama_cpp.llama_memory_seq_rm(self.memory, slot.id, len(slot.cached) - rejected,
                                              -1)
                del slot.cached[-rejected:]
            for row, token in enumerate(drawn):
                self._sampled(job, token, row, now)
                if job.finished:
                    break

    @staticmethod
    def _samples(job: Job, position: int | None) -> bool:
        """Whether this output row is sampled: a generated token's, or the prompt's last."""
        if position is None:
            return True
        return position == len(job.prompt) - 1 and job.options.num_predict != 0

    def _prompt_row(self, job: Job, row: int, position: int, now: int) -> None:
        """Logits of a prompt token: score the next one; at the prompt's end, start."""
        last = len(job.prompt) - 1
        if job.score_top is not None and position < last:
            self._score(job, row, position)
        if position < last:
            return
        job.stats.prompt_eval_duration = now - job.prompt_started
        job.eval_started = now
        if job.options.num_predict == 0:
            self._complete(job, "length")

    def _score(self, job: Job, row: int, position: int) -> None:
        model, token = self.model, job.prompt[position + 1]
        record = model.logprob(self.ctx, row, token, job.score_top or 0)
        text = job.spelled[position + 1]
        record.token, record.bytes = text.decode("utf-8", "replace"), list(text)
        job.prompt_scores.append(record)

    def _sampled(self, job: Job, token: int, row: int, now: int) -> None:
        stats, options = job.stats, job.options
        if self.model.is_end(token):
            if job.top_logprobs is not None:  # kept, spelling nothing (as llama-server)
                end = self.model.logprob(self.ctx, row, token, job.top_logprobs)
                end.token, end.bytes = "", []
                job.pending_logprobs.append(end)
            self._complete(job, "stop")
            return
        if job.top_logprobs is not None:
            job.pending_logprobs.append(self.model.logprob(self.ctx, row, token,
                                                           job.top_logprobs))
        job.generated.append(token)
        stats.eval_count = len(job.generated)
        stats.eval_duration = now - job.eval_started
        result = job.matcher.feed(job.utf8.feed(self.model.piece(token, token in job.special)))
        if result.text or (job.pending_logprobs and result.stopped):
            job.events.put(("piece", Piece(result.text, job.pending_logprobs or None)))
            job.pending_logprobs = []
        if result.stopped:
            stats.stop_sequence = result.stop
            self._complete(job, "stop", flush=False)
            return
        limit = options.num_predict
        full = len(job.slot.cached) + 1 >= self.num_ctx
        shifted = full and job.shift and shift_context(self.memory, job.slot, options.num_keep)
        if 0 <= limit <= len(job.generated) or (full and not shifted):
            self._complete(job, "length")
            return
        job.next_token = token

    def _complete(self, job: Job, reason: str, flush: bool = True) -> None:
        """End ``job`` normally: release held-back text and the final stats."""
        if flush:
            tail = job.matcher.feed(job.utf8.flush())
            text = tail.text if tail.stopped else tail.text + job.matcher.flush()
            if tail.stopped:
                job.stats.stop_sequence = tail.stop
            if text or job.pending_logprobs:
                job.events.put(("piece", Piece(text, job.pending_logprobs or None)))
        job.stats.done_reason = reason
        self._release(job.slot)

    def _release(self, slot: Slot) -> None:
        """Free ``slot``; its KV cache stays for the next job that shares the prefix."""
        job = slot.job
        slot.job, slot.last_used = None, time.monotonic()
        if job is None:
            return
        self._finish(job, None)

    def _clear(self, slot: Slot) -> None:
        llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
        slot.cached.clear()

    def _finish(self, job: Job, error: Exception | None) -> None:
        if job.finished:
            return
        job.finished = True
        stats = job.stats
        stats.tokens = (*job.prompt, *job.generated)
        if job.slot is not None:
            self.prompt_counts.add(stats)
        if job.eval_started:
            stats.eval_duration = time.perf_counter_ns() - job.eval_started
        if job.sampler is not None:
            job.sampler.close()
        job.events.put(("error", error) if error is not None else ("done", None))

    def close(self) -> None:
        """Stop the loop (jobs still running end with Cancelled) and free the context."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()
