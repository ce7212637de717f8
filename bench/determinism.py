"""What the determinism settings cost: flash attention and weight repacking, on and off.

locallama keeps a sequence's output independent of the others in its batch by
default: flash attention off (LOCALLAMA_FLASH_ATTENTION) and llama.cpp's repacked
weight layouts off (LOCALLAMA_REPACK).  For each of the four combinations, one
LocalRuntime (num_parallel 8, a runner per model) on the same store, in one run:

- tok/s at 1 stream and at 8 concurrent streams (bench/runner.py's ``wave``: raw
  prompts new to the model, greedy, seeded, --tokens tokens; all tokens over the
  wave's wall time), rounds rotating which combination goes first;
- perplexity (``locallama perplexity``'s ``measure_perplexity``) over
  bench/data/prose.txt at --ppl-ctx;
- whether batching changes outputs: 8 prompts answered one at a time, each on a
  freshly loaded model (so nothing is reused from the cache), then the same 8
  together, also on a fresh one; "text"
  says whether every answer is the same text, "logprobs" whether every generated
  token's log-probability is the same float, bit for bit.

Ratios are against the default (both off), medians of per-round ratios.

    .venv/bin/python bench/determinism.py [--rounds 3] [--threads 2] [--tokens 128]
                                          [--check-tokens 48] [--ppl-ctx 128] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import threading
from pathlib import Path
from typing import Any

from bench_compare import wait_quiet
from locallama.evals.perplexity import measure_perplexity
from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings
from runner import TOPICS, options, wave

MODEL = "gemma3:270m"
PROSE = Path(__file__).parent / "data" / "prose.txt"
CONFIGS = [(False, False), (True, False), (False, True), (True, True)]  # (FA, repack)


def label(config: tuple[bool, bool]) -> str:
    fa, repack = config
    return f"FA {'on' if fa else 'off'}, repack {'on' if repack else 'off'}"


def answer(runtime: LocalRuntime, model: str, prompt: str, opts: dict[str, Any]
           ) -> list[tuple[str, float]]:
    """One raw completion: each generated token with its log-probability."""
    out: list[tuple[str, float]] = []
    for chunk in runtime.generate(GenerateRequest(model, prompt, raw=True, options=opts,
                                                  logprobs=True)):
        out += [(lp.token, lp.logprob) for lp in chunk.logprobs or ()]
    return out


def batching_check(runtime: LocalRuntime, model: str, streams: int, opts: dict[str, Any]
                   ) -> dict[str, bool]:
    """{"text": same text alone and batched, "logprobs": same floats too, "same": how
    many of the ``streams`` answers have the same text}."""
    prompts = [f"Tell me about {TOPICS[i % len(TOPICS)]}." for i in range(streams)]
    alone = []
    for prompt in prompts:  # each on a fresh context: nothing reused, no company
        runtime.unload(model)
        alone.append(answer(runtime, model, prompt, opts))
    runtime.unload(model)
    together: list[list[tuple[str, float]] | None] = [None] * streams
    barrier = threading.Barrier(streams)

    def client(i: int) -> None:
        barrier.wait()
        together[i] = answer(runtime, model, prompts[i], opts)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(t is None for t in together):
        raise RuntimeError("a batched answer failed")
    same = sum([t for t, _ in a] == [t for t, _ in b]
               for a, b in zip(alone, together, strict=True))
    return {"text": same == streams, "same": same,
            "logprobs": all(a == b for a, b in zip(alone, together, strict=True))}


def run(store: Path, model: str, rounds: int, threads: int, tokens: int, ctx: int,
        check_tokens: int, ppl_ctx: int, text: str, streams: int = 8, quiet: float = 2.0,
        ppl_chunks: int | None = None, log=print) -> dict[str, Any]:
    """Every figure, by combination label: {"rounds": [{label: {"1": wave, "8": wave}}],
    "perplexity": {label: ppl}, "batching": {label: {"text", "logprobs"}}}."""
    base = Settings.from_env()
    runtimes = {label(c): LocalRuntime(dataclasses.replace(
        base, models_dir=store, num_parallel=streams, flash_attention=c[0], repack=c[1]))
        for c in CONFIGS}
    opts = options(tokens, threads, ctx)
    out: dict[str, Any] = {"rounds": [], "perplexity": {}, "batching": {}}
    try:
        for runtime in runtimes.values():  # load each once, outside the timing
            wave(runtime, model, 1, {**opts, "num_predict": 1}, -1)
        for r in range(rounds):
            figures: dict[str, Any] = {}
            order = list(runtimes)[r % len(runtimes):] + list(runtimes)[:r % len(runtimes)]
            for name in order:
                figures[name] = {}
                for n in (1, streams):
                    wait_quiet(quiet)
                    figures[name][str(n)] = wave(runtimes[name], model, n, opts, r)
                log(f"round {r + 1}: {name}: " + ", ".join(
                    f"{n} streams {figures[name][str(n)]['tok_s']:.1f} tok/s "
                    f"({figures[name][str(n)]['cpu_ms_per_token']:.0f} CPU ms/tok)"
                    for n in (1, streams)), flush=True)
            out["rounds"].append(figures)
        check = {**opts, "num_predict": check_tokens}
        for name, runtime in runtimes.items():
            out["batching"][name] = batching_check(runtime, model, streams, check)
            runtime.unload(model)
            out["perplexity"][name] = measure_perplexity(
                runtime, model, text, ctx=ppl_ctx, chunks=ppl_chunks, threads=threads).perplexity
            runtime.unload(model)
            log(f"{name}: batching {out['batching'][name]}, "
                f"perplexity {out['perplexity'][name]:.4f}", flush=True)
    finally:
        for runtime in runtimes.values():
            runtime.close()
    return out


def table(out: dict[str, Any], streams: int = 8) -> str:
    """The figures side by side: medians over rounds, ratios to the first combination
    (tok/s: higher is faster; CPU ms per token: lower is cheaper)."""
    names = list(out["perplexity"])
    base = names[0]
    rows = [f"{'':<22}" + "".join(f"{f'{n} stream tok/s':>16}{'ratio':>7}{'CPU ms/tok':>11}"
                                  f"{'ratio':>7}" for n in (1, streams))
            + f"{'perplexity':>12}{'vs off':>8}{'batching: text':>16}{'logprobs':>10}"]
    for name in names:
        cells = f"{name:<22}"
        for n in ("1", str(streams)):
            for key, width in (("tok_s", 16), ("cpu_ms_per_token", 11)):
                value = statistics.median(r[name][n][key] for r in out["rounds"])
                ratio = statistics.median(r[name][n][key] / (r[base][n][key] or math.nan)
                                          for r in out["rounds"])
                cells += f"{value:>{width}.1f}{ratio:>7.3f}"
        ppl = out["perplexity"][name]
        same = out["batching"][name]
        cells += (f"{ppl:>12.4f}{ppl / out['perplexity'][base] - 1:>+8.2%}"
                  f"{'same' if same['text'] else 'DIFFERS':>16}"
                  f"{'same' if same['logprobs'] else 'DIFFER':>10}")
        rows.append(cells)
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--ctx", type=int, default=1024, help="num_ctx of each sequence")
    parser.add_argument("--check-tokens", type=int, default=48)
    parser.add_argument("--ppl-ctx", type=int, default=128)
    parser.add_argument("--ppl-chunks", type=int, default=None, help="default: all of them")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--quiet-wait", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    settings = Settings.from_env()
    setup = LocalRuntime(settings)
    try:
        if not setup.store.exists(args.model):
            setup.pull(args.model)
    finally:
        setup.close()
    out = run(settings.models_dir, args.model, args.rounds, args.threads, args.tokens,
              args.ctx, args.check_tokens, args.ppl_ctx, PROSE.read_text(encoding="utf-8"),
              quiet=args.quiet_wait, ppl_chunks=args.ppl_chunks)
    print(f"\n{args.model}, {args.threads} threads, {args.tokens} tokens per stream, "
          f"{args.rounds} rounds; perplexity of {PROSE.name} at ctx {args.ppl_ctx}")
    print(table(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
