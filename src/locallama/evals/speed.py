"""Speed like llama-bench measures it, but through the Runtime and its scheduler.

Two tests per model, each a warm-up run and then ``repetitions`` timed runs
(llama-bench's method), reported as mean ± sample standard deviation of the
per-run tokens/s:

- ``ppP``: a prompt of P random token ids (drawn over the whole vocabulary, as
  llama-bench draws them) evaluated in one go with ``num_predict`` 0.  Each run
  draws a new prompt whose first token differs from every earlier one, so no
  slot's KV cache covers any of it and all P tokens are evaluated fresh.  The
  rate is the final chunk's prompt_eval_count / prompt_eval_duration.
- ``tgN``: N tokens generated one at a time (greedy) after a one-token prompt
  (BOS where the model adds one, as llama-bench starts).  The request asks for
  N + 1 tokens: the prompt's evaluation yields the first, and the N decodes that
  follow are what is timed (eval_duration), sampling included.

With ``concurrency`` C, each run is C streams submitted at once, so the
scheduler batches them; the rate is all streams' tokens over the wall time from
the first submission to the last stream's end (aggregate tokens/s), and the
mean per-stream rate is kept beside it.
"""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from locallama.errors import InvalidRequest
from locallama.evals.facts import model_facts, versions
from locallama.runtime.base import Runtime
from locallama.runtime.types import Chunk, GenerateRequest

Progress = Callable[[str, int, int], None]  # (test, runs done, runs in all)


@dataclass
class BenchTest:
    test: str  # "pp512", "tg128"
    n_prompt: int
    n_gen: int
    concurrency: int
    repetitions: int
    tokens_per_second: float  # mean over the runs (aggregate over the streams)
    stddev: float
    samples: list[float]  # each run's tokens/s
    stream_tokens_per_second: float  # the mean of each stream's own rate
    tokens: int  # tokens per run, all streams together


@dataclass
class BenchResult:
    model: str
    digest: str
    quantization: str
    size: int
    parameters: int
    memory: int | None
    threads: int  # 0: the runtime's choice (physical cores)
    concurrency: int
    tests: list[BenchTest] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def test(self, prefix: str) -> BenchTest | None:
        """The first test whose name starts with ``pp`` or ``tg``."""
        return next((t for t in self.tests if t.test.startswith(prefix)), None)


def bench_json(results: list[BenchResult], options: dict[str, Any]) -> dict[str, Any]:
    """What ``bench --json`` prints and ``--output`` writes."""
    return {"kind": "bench", "options": options, "versions": versions(),
            "results": [asdict(r) for r in results]}


def run_bench(runtime: Runtime, model: str, *, n_prompt: int = 512, n_gen: int = 128,
              repetitions: int = 5, threads: int = 0, concurrency: int = 1, seed: int = 1,
              progress: Progress | None = None) -> BenchResult:
    """Measure ``model``'s pp and tg rates (either test skipped when its size is 0)."""
    if repetitions < 1:
        raise InvalidRequest("-r must be at least 1")
    if concurrency < 1:
        raise InvalidRequest("--concurrency must be at least 1")
    if n_prompt < 0 or n_gen < 0 or n_prompt + n_gen == 0:
        raise InvalidRequest("-p and -n must not be negative, and not both 0")
    facts = model_facts(runtime, model)
    details = runtime.show(model)
    if details.context_length and n_prompt + n_gen + 2 > details.context_length:
        raise InvalidRequest(f"-p {n_prompt} -n {n_gen} do not fit the model's context "
                             f"({details.context_length} tokens)")
    bench = _Bench(runtime, model, threads, concurrency, n_prompt + n_gen + 2,
                   _vocab_size(details.model_info), _bos(runtime, model), random.Random(seed))
    result = BenchResult(facts["model"], facts["digest"], facts["quantization"],
                         facts["size"], facts["parameters"], facts["memory"], threads,
                         concurrency)
    for test, prompt, gen in ((f"pp{n_prompt}", n_prompt, 0), (f"tg{n_gen}", 0, n_gen)):
        if prompt or gen:
            result.tests.append(bench.test(test, prompt, gen, repetitions, progress))
    result.warnings = bench.warnings
    return result


@dataclass
class _Run:
    tokens: int  # tokens this stream counted
    rate: float  # its own tokens/s (from the chunk's durations)
    started: float
    ended: float


class _Bench:
    """One model's runs: the random prompts and the streams at once."""

    def __init__(self, runtime: Runtime, model: str, threads: int, concurrency: int,
                 num_ctx: int, n_vocab: int, bos: int | None, rng: random.Random) -> None:
        self.runtime, self.model, self.concurrency = runtime, model, concurrency
        self.n_vocab, self.bos, self.rng = n_vocab, bos, rng
        self.options: dict[str, Any] = {"num_ctx": num_ctx, "temperature": 0, "stop": [],
                                        **({"num_thread": threads} if threads > 0 else {})}
        self.firsts: set[int] = set()  # first tokens used so far: no prefix is ever reused
        self.warnings: list[str] = []

    def test(self, name: str, n_prompt: int, n_gen: int, repetitions: int,
             progress: Progress | None) -> BenchTest:
        total = repetitions + 1
        if progress:
            progress(name, 0, total)
        self.wave(n_prompt, 1 if n_gen else 0, 1)  # the warm-up, as llama-bench does
        if progress:
            progress(name, 1, total)
        samples, streams, tokens = [], [], 0
        for i in range(repetitions):
            runs = self.wave(n_prompt, n_gen, self.concurrency)
            tokens = sum(r.tokens for r in runs)
            if self.concurrency == 1:
                samples.append(runs[0].rate)
            else:
                wall = max(r.ended for r in runs) - min(r.started for r in runs)
                samples.append(tokens / wall if wall > 0 else 0.0)
            streams.extend(r.rate for r in runs)
            if progress:
                progress(name, i + 2, total)
        if n_gen and tokens < n_gen * self.concurrency:
            self.warnings.append(f"{name}: a stream met the end-of-text token early "
                                 f"({tokens} of {n_gen * self.concurrency} tokens)")
        return BenchTest(
            test=name, n_prompt=n_prompt, n_gen=n_gen, concurrency=self.concurrency,
            repetitions=repetitions, tokens_per_second=statistics.fmean(samples),
            stddev=statistics.stdev(samples) if len(samples) > 1 else 0.0, samples=samples,
            stream_tokens_per_second=statistics.fmean(streams), tokens=tokens)

    def wave(self, n_prompt: int, n_gen: int, streams: int) -> list[_Run]:
        """``streams`` requests at once; each stream's own measurement."""
        prompts = [self.prompt(n_prompt) if n_prompt else self.start() for _ in range(streams)]
        if streams == 1:
            return [self.one(prompts[0], n_gen)]
        runs: list[_Run | None] = [None] * streams
        errors: list[BaseException] = []
        gate = threading.Barrier(streams)

        def stream(i: int) -> None:
            try:
                gate.wait()
                runs[i] = self.one(prompts[i], n_gen)
            except BaseException as exc:  # noqa: BLE001 - raised again below
                errors.append(exc)

        workers = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[0]
        return [r for r in runs if r is not None]

    def one(self, prompt: list[int], n_gen: int) -> _Run:
        # tg asks for one token more: the prompt's own evaluation yields the first.
        options = {**self.options, "num_predict": n_gen + 1 if n_gen else 0}
        started = time.perf_counter()
        final = _last(self.runtime.generate(GenerateRequest(
            self.model, "", raw=True, context=prompt, options=options)))
        ended = time.perf_counter()
        if not n_gen:
            if final.prompt_eval_count != len(prompt):
                self.warnings.append(f"a prompt of {len(prompt)} tokens evaluated only "
                                     f"{final.prompt_eval_count} (cache reuse)")
            return _Run(final.prompt_eval_count, final.prompt_eval_rate, started, ended)
        # Decodes timed: the last sampled token is never evaluated, unless it ended the text.
        decodes = final.eval_count - (0 if final.done_reason == "stop" else 1)
        seconds = final.eval_duration / 1e9
        return _Run(decodes, decodes / seconds if seconds > 0 else 0.0, started, ended)

    def prompt(self, n: int) -> list[int]:
        """``n`` random ids whose first has never begun a prompt here before."""
        first = self.rng.randrange(self.n_vocab)
        while first in self.firsts or first == self.bos:
            first = self.rng.randrange(self.n_vocab)
        self.firsts.add(first)
        return [first, *(self.rng.randrange(self.n_vocab) for _ in range(n - 1))]

    def start(self) -> list[int]:
        """tg's one-token prompt: BOS, as llama-bench begins, else a random token."""
        return [self.bos] if self.bos is not None else [self.rng.randrange(self.n_vocab)]


def _last(chunks) -> Chunk:
    final = None
    for chunk in chunks:
        final = chunk
    if final is None or not final.done:
        raise InvalidRequest("the generation ended without its final chunk")
    return final


def _bos(runtime: Runtime, model: str) -> int | None:
    tokens = runtime.tokenize(model, "")
    return tokens[0] if tokens else None


def _vocab_size(model_info: dict[str, Any]) -> int:
    """The vocabulary size from the GGUF metadata ("[262144 items]" for the token list)."""
    for key, value in model_info.items():
        if key.endswith(".vocab_size") and isinstance(value, int) and value > 0:
            return value
    match = re.fullmatch(r"\[(\d+) items\]", str(model_info.get("tokenizer.ggml.tokens", "")))
    if match:
        return int(match.group(1))
    tokens = model_info.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list) and tokens:
        return len(tokens)
    raise InvalidRequest("the model does not say how large its vocabulary is")
