"""Where one decode step's time goes: inside llama_decode vs outside it, per step.

Streams N concurrent completions (greedy by default, raw prompt, --tokens each) of
gemma3:270m through LocalRuntime, with the model in a runner process (the default)
and in-process (LOCALLAMA_RUNNER=inprocess), and records every llama_decode call in
the process that runs the scheduler (engine/decode_trace.py, LOCALLAMA_DECODE_TRACE).
For the steps where all N streams generate, the table shows the median step, the
time inside llama_decode and the time outside it (sampling, detokenization, stop
checks, hand-offs: everything between two decodes), and the tokens/s of the wave
and, with a runner, the CPU time the calling process spent per token (reading the
runner's messages, building chunks).  No HTTP: bench/concurrency.py measures that.

First, a table of sampling alone (the step's costliest part outside llama_decode):
CPU µs per step to draw 1 and 8 rows of real logits with locallama's Sampler against
llama.cpp's own chain for the same options (penalties, greedy or top-k/top-p/dist),
on a thread pool of --threads as the scheduler ran it before.

    .venv/bin/python bench/decode_profile.py [--streams 1,8] [--tokens 128]
        [--threads 2] [--rounds 3] [--modes runner,inprocess] [--temperature 0]
        [--py-spy DIR] [--sampling-only]

Medians over rounds; modes alternate round by round so that machine noise hits both.
With --py-spy DIR (py-spy from the `bench` extra), one more 8-stream wave per mode
is recorded with `py-spy record --native` into DIR/MODE.svg (the runner's process,
or this one in-process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MODEL = "gemma3:270m"
NUM_CTX = 4096
TOPICS = ["the printing press", "the steam engine", "the telescope", "the compass",
          "paper money", "the bicycle", "the telegraph", "vaccines"]


def steady_steps(records: list[tuple[int, int, int]], streams: int) -> tuple[list[int], list[int]]:
    """(time inside, time outside) of each decode of exactly ``streams`` tokens that
    follows another such decode: the steps where every stream generates."""
    inside, outside = [], []
    for before, after in zip(records, records[1:], strict=False):
        if before[2] == after[2] == streams:
            inside.append(after[1] - after[0])
            outside.append(after[0] - before[1])
    return inside, outside


class Mode:
    """One way of running the model: a LocalRuntime with its own settings and trace file."""

    def __init__(self, name: str, streams: int, threads: int, trace: Path) -> None:
        from locallama.runtime.local import LocalRuntime
        from locallama.settings import Settings

        self.name, self.trace, self.threads = name, trace, threads
        env = dict(os.environ, LOCALLAMA_NUM_PARALLEL=str(streams), LOCALLAMA_KEEP_ALIVE="-1",
                   LOCALLAMA_DECODE_TRACE=str(trace),
                   LOCALLAMA_RUNNER="inprocess" if name == "inprocess" else "process")
        trace.touch()
        os.environ["LOCALLAMA_DECODE_TRACE"] = str(trace)  # the runner started below reads it
        if name == "inprocess":
            from locallama.engine import decode_trace

            decode_trace.install(trace)
        self.runtime = LocalRuntime(Settings.from_env(env))
        if not self.runtime.store.exists(MODEL):
            self.runtime.pull(MODEL)
        self.wave(1, 8, 0.0, -1)  # load the model (and start its runner) now, warm the caches

    def runner_pid(self) -> int | None:
        import psutil

        kids = [p for p in psutil.Process().children() if "locallama.engine.runner"
                in " ".join(p.cmdline())]
        return kids[0].pid if kids else None

    def wave(self, streams: int, tokens: int, temperature: float, round_: int
             ) -> tuple[float, float, list[tuple[int, int, int]]]:
        """(tokens/s, this process's CPU µs per token, decode records) of one wave."""
        from locallama.runtime.types import GenerateRequest

        os.truncate(self.trace, 0)
        counts = [0] * streams
        barrier = threading.Barrier(streams + 1)

        def client(i: int) -> None:
            topic = TOPICS[(i + round_) % len(TOPICS)]
            options = {"temperature": temperature, "num_predict": tokens, "num_ctx": NUM_CTX,
                       "num_thread": self.threads, "seed": i}
            request = GenerateRequest(MODEL, f"A short history of {topic}, round {round_}:",
                                      raw=True, options=options)
            barrier.wait()
            for chunk in self.runtime.generate(request):
                if chunk.done:
                    counts[i] = chunk.eval_count

        threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        barrier.wait()
        cpu, started = time.process_time(), time.perf_counter()
        for t in threads:
            t.join()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        from locallama.engine import decode_trace

        records = sorted(decode_trace.read(self.trace))
        return sum(counts) / wall, cpu * 1e6 / max(1, sum(counts)), records

    def close(self) -> None:
        self.runtime.close()


def py_spy(mode: Mode, out: Path, tokens: int, temperature: float) -> None:
    tool = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    pid = mode.runner_pid() if mode.name == "runner" else os.getpid()
    if pid is None or not os.path.exists(tool):
        print(f"py-spy: nothing to record for {mode.name}", file=sys.stderr)
        return
    target = out / f"{mode.name}.svg"
    spy = subprocess.Popen([tool, "record", "--native", "--pid", str(pid), "--rate", "200",
                            "--output", str(target), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach (a recording, not a synchronisation of the results)
    mode.wave(8, tokens, temperature, 99)
    spy.terminate()
    spy.wait()
    print(f"py-spy: {target}", file=sys.stderr)


def llama_chain(options, n_vocab: int, history: list[int]):
    """llama.cpp's chain for ``options`` with every step in C (the penalties too)."""
    import llama_cpp

    add = llama_cpp.llama_sampler_chain_add
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    penalties = llama_cpp.llama_sampler_init_penalties(
        n_vocab, options.repeat_last_n, options.repeat_penalty, 0.0, 0.0)
    for token in history[-options.repeat_last_n:]:
        llama_cpp.llama_sampler_accept(penalties, token)
    add(chain, penalties)
    if options.temperature <= 0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        add(chain, llama_cpp.llama_sampler_init_top_k(options.top_k))
        add(chain, llama_cpp.llama_sampler_init_top_p(options.top_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(options.temperature))
        add(chain, llama_cpp.llama_sampler_init_dist(options.seed))
    return chain


def sampling_table(model_path: str, threads: int, temperature: float) -> None:
    """CPU per step of drawing 1 and 8 rows: llama.cpp's chain (on a pool, as before)
    against engine/sampling.py's Sampler (as the scheduler now runs it)."""
    from concurrent.futures import ThreadPoolExecutor

    import llama_cpp

    from locallama.engine.model import LoadedModel
    from locallama.engine.params import ContextParams
    from locallama.engine.sampling import Sampler
    from locallama.gguf_info import read_gguf_info
    from locallama.options import resolve_options

    model = LoadedModel(Path(model_path), read_gguf_info(model_path),
                        ContextParams(512, 512, 0, True, threads=threads, num_parallel=8))
    ctx = model.new_context(512 * 8, 8, 512, threads)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    prompt = model.tokenize("A short history of the printing press:")
    n = 0
    for seq in range(8):
        for k, token in enumerate(prompt):
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, k, 1
            batch.seq_id[n][0], batch.logits[n] = seq, k == len(prompt) - 1
            n += 1
    batch.n_tokens = n
    assert llama_cpp.llama_decode(ctx, batch) == 0
    rows = [(seq + 1) * len(prompt) - 1 for seq in range(8)]
    options = resolve_options({"temperature": temperature, "seed": 1})
    pool = ThreadPoolExecutor(threads)
    print(f"\nSampling one step's rows, temperature {temperature} (CPU µs per step, "
          f"median of 30)\n{'rows':>4} {'llama.cpp chain':>16} {'Sampler':>9} {'ratio':>7}")
    try:
        for count in (1, 8):
            chains = [llama_chain(options, model.n_vocab, prompt) for _ in range(count)]
            ours = [Sampler(options, model.n_vocab, NUM_CTX, history=prompt)
                    for _ in range(count)]
            spent = {}
            for name in ("chain", "ours"):
                runs = []
                for _ in range(30):
                    cpu = time.process_time_ns()
                    if name == "chain" and count > 1:
                        list(pool.map(lambda d: llama_cpp.llama_sampler_sample(d[0], ctx, d[1]),
                                      zip(chains, rows, strict=False)))
                    elif name == "chain":
                        llama_cpp.llama_sampler_sample(chains[0], ctx, rows[0])
                    elif not ours[0].greedy and count > 1:
                        list(pool.map(lambda d: d[0].sample(ctx, d[1]),
                                      zip(ours, rows, strict=False)))
                    else:
                        for sampler, row in zip(ours, rows, strict=False):
                            sampler.sample(ctx, row)
                    runs.append(time.process_time_ns() - cpu)
                spent[name] = statistics.median(runs) / 1e3
            print(f"{count:>4} {spent['chain']:>16.0f} {spent['ours']:>9.0f} "
                  f"{spent['chain'] / max(spent['ours'], 1e-3):>6.1f}x")
            for chain in chains:
                llama_cpp.llama_sampler_free(chain)
            for sampler in ours:
                sampler.close()
    finally:
        pool.shutdown()
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="runner,inprocess")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--py-spy", type=Path, help="record flame graphs into this folder")
    parser.add_argument("--sampling-only", action="store_true",
                        help="only the sampling table (seconds, not minutes)")
    args = parser.parse_args()
    waves = [int(s) for s in args.streams.split(",")]
    from locallama.runtime.local import LocalRuntime
    from locallama.settings import Settings

    runtime = LocalRuntime(Settings.from_env())
    if not runtime.store.exists(MODEL):
        runtime.pull(MODEL)
    model_path = str(runtime.store.get(MODEL).model_path)
    runtime.close()
    sampling_table(model_path, args.threads, args.temperature)
    if args.sampling_only:
        return
    tmp = Path(tempfile.mkdtemp(prefix="decode-profile-"))
    modes = [Mode(name, max(waves), args.threads, tmp / f"{name}.trace")
             for name in args.modes.split(",")]
    rows: dict[tuple[str, int], list[tuple[float, float, list[int], list[int]]]] = {}
    try:
        for round_ in range(args.rounds):
            order = modes if round_ % 2 == 0 else modes[::-1]
            for streams in waves:
                for mode in order:
                    speed, cpu, records = mode.wave(streams, args.tokens, args.temperature,
                                                    round_)
                    inside, outside = steady_steps(records, streams)
                    rows.setdefault((mode.name, streams), []).append(
                        (speed, cpu, inside, outside))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        if args.py_spy:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            for mode in modes:
                py_spy(mode, args.py_spy, args.tokens, args.temperature)
    finally:
        for mode in modes:
            mode.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{MODEL}, {args.threads} threads, {args.tokens} tokens per stream, temperature "
          f"{args.temperature}, {args.rounds} rounds (medians; steps where every stream "
          f"generates)\n")
    print(f"{'mode':<10} {'streams':>7} {'tok/s':>7} {'step ms':>8} {'in decode':>10} "
          f"{'outside':>9} {'outside %':>9} {'caller CPU/token':>17}")
    for streams in waves:
        for mode in modes:
            runs = rows[(mode.name, streams)]
            inside = [x for r in runs for x in r[2]]
            outside = [x for r in runs for x in r[3]]
            if not inside:
                print(f"{mode.name:<10} {streams:>7} (no steady steps)")
                continue
            i_ms, o_ms = statistics.median(inside) / 1e6, statistics.median(outside) / 1e6
            speed = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            caller = f"{cpu:>14.0f} µs" if mode.name == "runner" else f"{'-':>17}"
            print(f"{mode.name:<10} {streams:>7} {speed:>7.1f} {i_ms + o_ms:>8.2f} "
                  f"{i_ms:>7.2f} ms {o_ms:>6.3f} ms {100 * o_ms / (i_ms + o_ms):>8.1f}% {caller}")


if __name__ == "__main__":
    main()
