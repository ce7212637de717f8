"""What padding generation steps buys (engine/padding.py), in one run.

First, bare decoding with locallama's engine library: ms per step when k of
--parallel sequences generate one token each, k = 1 … --parallel (no sampling, no
HTTP), and the row count padding would pick from that table (the fastest of k … k+3
rows); and a step of sequences 0-1 plus the last three as llama.cpp splits it (two
runs, one after the other) against the same step with the gap between them padded.
Then served: waves of k concurrent streaming clients (--clients, default 5,6,7,8:
counts that are not a multiple of llama.cpp's 4-row tiles, and one that is) against
`locallama serve` with padding on and with LOCALLAMA_BATCH_PADDING=0, and against
llama-server (as bench/concurrency.py finds it) unless --no-llama-server; aggregate
generated tokens/s over each wave and the median of per-round ratios.  Rounds
alternate the servers' order so that machine noise hits each alike.

    .venv/bin/python bench/batch_padding.py [--rounds 3] [--tokens 128] [--threads 2]
        [--parallel 8] [--clients 5,6,7,8] [--llama-server PATH] [--no-llama-server]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

from concurrency import (
    MODEL,
    NUM_CTX,
    LlamaServer,
    Locallama,
    llama_server_binary,
    serve_choices,
    wave,
)
from locallama.engine.padding import MAX_PADDING
from locallama.gguf_info import read_gguf_info
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings


def step_times(model_path: str, threads: int, parallel: int, rounds: int,
               steps: int = 6) -> dict[int | str, float]:
    """Median ms of one decode step with k of ``parallel`` sequences generating (one
    token each, logits for each, as the scheduler decodes them), k = 1 … parallel; and
    under "gap", the step of every sequence but 2 … parallel-4 (0, 1 and the last
    three: two runs, which llama.cpp decodes one after the other), under "filled" the
    same with the gap padded (all ``parallel`` in one run, the gap's tokens removed
    after each step, as engine/padding.py does)."""
    import llama_cpp

    from locallama.engine.model import LoadedModel
    from locallama.engine.params import ContextParams

    info = read_gguf_info(model_path)
    flash, repack, kv_type = serve_choices(info)
    params = ContextParams(NUM_CTX, 512, 0, True, threads=threads, num_parallel=parallel,
                           flash_attention=flash, repack=repack, kv_cache_type=kv_type)
    model = LoadedModel(pathlib.Path(model_path), info, params)
    ctx = model.new_context(NUM_CTX * parallel, parallel, 512, threads, flash_attention=flash,
                            kv_cache_type=kv_type)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    prompt = model.tokenize("A short history of the printing press:")
    positions = [0] * parallel

    def decode(rows: list[tuple[int, list[int]]]) -> float:
        n = 0
        for seq, tokens in rows:
            for k, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, positions[seq], 1
                batch.seq_id[n][0], batch.logits[n] = seq, k == len(tokens) - 1
                positions[seq] += 1
                n += 1
        batch.n_tokens = n
        started = time.perf_counter()
        if llama_cpp.llama_decode(ctx, batch) != 0:
            sys.exit("llama.cpp could not evaluate a batch")
        return (time.perf_counter() - started) * 1000

    try:
        for seq in range(parallel):
            decode([(seq, prompt)])
        memory = llama_cpp.llama_get_memory(ctx)
        gap = list(range(2, parallel - 3)) if parallel >= 6 else []

        def filled() -> float:
            ms = decode([(seq, [prompt[-1]]) for seq in range(parallel)])
            for seq in gap:  # the padding rows' cells go again
                positions[seq] -= 1
                llama_cpp.llama_memory_seq_rm(memory, seq, positions[seq], -1)
            return ms

        times: dict[int | str, list[float]] = {}
        for _ in range(rounds):  # k interleaved, so that drift hits every k alike
            for k in range(1, parallel + 1):
                runs = [decode([(seq, [prompt[-1]]) for seq in range(k)])
                        for _ in range(steps)]
                times.setdefault(k, []).extend(runs[1:])
            if gap:
                runs = [decode([(seq, [prompt[-1]]) for seq in range(parallel)
                                if seq not in gap]) for _ in range(steps)]
                times.setdefault("gap", []).extend(runs[1:])
                times.setdefault("filled", []).extend([filled() for _ in range(steps)][1:])
        return {k: statistics.median(v) for k, v in times.items()}
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        model.close()


def ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of per-round ratios."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--clients", default="5,6,7,8")
    parser.add_argument("--llama-server", help="the llama-server binary (default: as "
                        "bench/concurrency.py finds it)")
    parser.add_argument("--no-llama-server", action="store_true")
    args = parser.parse_args()
    waves = [int(c) for c in args.clients.split(",")]
    if max(waves) > args.parallel:
        sys.exit("--clients may not exceed --parallel")

    runtime = LocalRuntime(Settings.from_env())
    if not runtime.store.exists(MODEL):
        runtime.pull(MODEL)
    model_path = str(runtime.store.get(MODEL).model_path)
    runtime.close()
    flash, repack, kv_type = serve_choices(read_gguf_info(model_path))
    print(f"{MODEL}, {args.threads} threads, flash attention {'on' if flash else 'off'}, "
          f"repacking {'on' if repack else 'off'}, {kv_type} KV cache")

    times = step_times(model_path, args.threads, args.parallel, args.rounds)
    print(f"\nBare decoding, one token for each of k of {args.parallel} sequences "
          f"(median ms per step)")
    print(f"{'k':>3} {'ms/step':>8} {'tok/s':>7}  {'padded to':>9} {'ms':>6}")
    for k in range(1, args.parallel + 1):
        best = min(range(k, min(k + MAX_PADDING, args.parallel) + 1), key=times.__getitem__)
        print(f"{k:>3} {times[k]:>8.1f} {k / times[k] * 1000:>7.1f}  {best:>9} "
              f"{times[best]:>6.1f}")
    if "gap" in times:
        kept = args.parallel - len(range(2, args.parallel - 3))
        print(f"{kept} sequences with a gap (0-1 and the last 3): {times['gap']:.1f} ms as "
              f"llama.cpp splits them, {times['filled']:.1f} ms with the gap padded")

    servers: list = [Locallama(args.threads, args.parallel, name="padded")]
    try:
        servers.append(Locallama(args.threads, args.parallel, name="unpadded",
                                 env={"LOCALLAMA_BATCH_PADDING": "0"}))
        if not args.no_llama_server:
            binary = llama_server_binary(args.llama_server)
            print(f"llama-server: {binary}")
            servers.append(LlamaServer(args.threads, args.parallel, model_path, binary))
        for server in servers:  # warm up: load the model, fill the page cache
            wave(server, 1, 8, -1)
        rates: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for clients in waves:
                for server in order:
                    rate, _ = wave(server, clients, args.tokens, round_)
                    rates.setdefault((server.name, clients), []).append(rate)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for server in servers:
            server.close()

    names = [s.name for s in servers]
    print(f"\nServed: k streaming clients, {args.tokens} tokens each, aggregate tok/s "
          f"(median of {args.rounds} rounds); ratios are medians of per-round ratios")
    header = "".join(f"{n:>14}" for n in names)
    others = [n for n in names if n != "padded"]
    print(f"{'k':>3}{header}" + "".join(f"{'padded/' + n:>22}" for n in others))
    for clients in waves:
        cells = "".join(f"{statistics.median(rates[(n, clients)]):>14.1f}" for n in names)
        padded = rates[("padded", clients)]
        ratios = "".join(f"{ratio(padded, rates[(n, clients)]):>21.2f}x" for n in others)
        print(f"{clients:>3}{cells}{ratios}")


if __name__ == "__main__":
    main()
