"""A quantized KV cache against f16: memory and speed at num_ctx 32768, in one run.

For each cache (f16 with flash attention off, the default; f16 with it on; q8_0 and
q4_0, which need it), a child process loads the model in-process with one sequence
of --ctx tokens (LOCALLAMA_KV_CACHE_TYPE, LOCALLAMA_FLASH_ATTENTION,
LOCALLAMA_RUNNER=inprocess), evaluates a prompt of about --prompt-tokens tokens
(bench/data/prose.txt, repeated) and generates --tokens tokens greedily.  It
reports:

- KV: the size llama.cpp itself reports for the cache ("llama_kv_cache: size = ...",
  from its log; both caches of a sliding-window model) and locallama's estimate
  (what `fit` and the memory budget count);
- RSS: the child's resident memory once loaded and once the answer is done (the
  weights are memory-mapped: their pages count once read);
- prompt tok/s and generation tok/s, from the engine's own counts.

Rounds rotate the order of the caches; figures are medians over rounds, ratios
against f16 (flash attention off).

    .venv/bin/python bench/kv_cache.py [--rounds 2] [--ctx 32768] [--threads 2]
                                       [--tokens 64] [--prompt-tokens 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

MODEL = "gemma3:270m"
PROSE = Path(__file__).parent / "data" / "prose.txt"
CACHES = [("f16", False), ("f16", True), ("q8_0", True), ("q4_0", True)]
MIB = 1024 * 1024


def label(cache: tuple[str, bool]) -> str:
    return f"{cache[0]} (FA {'on' if cache[1] else 'off'})"


def child(kind: str, flash: bool, args: argparse.Namespace) -> None:
    """In the child: load, answer once, print the figures as one JSON line."""
    import psutil

    from locallama.gguf_info import estimate_memory
    from locallama.kvcache import kv_cache_type
    from locallama.runtime.local import LocalRuntime
    from locallama.runtime.types import GenerateRequest
    from locallama.settings import Settings

    runtime = LocalRuntime(Settings.from_env())
    try:
        process = psutil.Process()
        before = process.memory_info().rss
        words = PROSE.read_text(encoding="utf-8").split()
        prompt = " ".join(words * (1 + args.prompt_tokens // max(1, len(words))))
        tokens = runtime.tokenize(MODEL, prompt)[: args.prompt_tokens]
        prompt = runtime.detokenize(MODEL, tokens)
        options = {"num_ctx": args.ctx, "num_thread": args.threads, "temperature": 0,
                   "seed": 1, "num_predict": 1}
        print("--- loading ---", file=sys.stderr, flush=True)  # llama.cpp's log follows
        runtime.load(MODEL, options=options)
        loaded = process.memory_info().rss
        final = None
        for chunk in runtime.generate(GenerateRequest(
                MODEL, prompt, raw=True, options={**options, "num_predict": args.tokens})):
            if chunk.done:
                final = chunk
        assert final is not None
        info = runtime.loader.info(runtime.store.get(MODEL).model_path)
        estimate = estimate_memory(info, args.ctx, 1,
                                   kv_cache_type(kind).bytes_per_element).kv_cache
        print(json.dumps({
            "rss_before": before, "rss_loaded": loaded, "rss_done": process.memory_info().rss,
            "kv_estimate": estimate, "prompt_tokens": final.prompt_eval_count,
            "prompt_tok_s": final.prompt_eval_count / (final.prompt_eval_duration / 1e9),
            "tok_s": final.eval_count / (final.eval_duration / 1e9)}), flush=True)
    finally:
        runtime.close()


def measure(kind: str, flash: bool, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "LOCALLAMA_KV_CACHE_TYPE": kind, "LOCALLAMA_RUNNER": "inprocess",
           "LOCALLAMA_FLASH_ATTENTION": "1" if flash else "0", "LOCALLAMA_DEBUG": "1",
           "LOCALLAMA_NUM_PARALLEL": "1"}
    command = [sys.executable, __file__, "--child", kind, *(["--flash"] if flash else []),
               "--ctx", str(args.ctx), "--threads", str(args.threads),
               "--tokens", str(args.tokens), "--prompt-tokens", str(args.prompt_tokens)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{label((kind, flash))} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    # every cache of the context loaded last (a sliding-window model has two)
    log = done.stderr.rpartition("--- loading ---")[2]
    sizes = re.findall(r"llama_kv_cache: size = +([\d.]+) MiB", log)
    figures["kv_llama"] = sum(float(x) for x in sizes) * MIB if sizes else float("nan")
    return figures


def table(rounds: list[dict[str, dict[str, Any]]]) -> str:
    names = list(rounds[0])
    base = names[0]

    def med(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in rounds)

    def ratio(name: str, key: str) -> float:
        return statistics.median(r[name][key] / r[base][key] for r in rounds)

    rows = [f"{'KV CACHE':<16}{'KV llama.cpp':>13}{'estimate':>10}{'RSS loaded':>12}"
            f"{'RSS done':>10}{'vs f16':>8}{'prompt t/s':>12}{'ratio':>7}{'gen t/s':>9}"
            f"{'ratio':>7}"]
    for name in names:
        kv, estimate = med(name, "kv_llama") / MIB, med(name, "kv_estimate") / MIB
        loaded, done = med(name, "rss_loaded") / MIB, med(name, "rss_done") / MIB
        rows.append(
            f"{name:<16}{kv:>9.1f} MiB{estimate:>6.1f} MiB{loaded:>8.0f} MiB{done:>6.0f} MiB"
            f"{ratio(name, 'rss_done'):>8.3f}{med(name, 'prompt_tok_s'):>12.1f}"
            f"{ratio(name, 'prompt_tok_s'):>7.3f}{med(name, 'tok_s'):>9.1f}"
            f"{ratio(name, 'tok_s'):>7.3f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=32768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--flash", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.flash, args)
        return

    from locallama.runtime.local import LocalRuntime
    from locallama.settings import Settings

    setup = LocalRuntime(Settings.from_env())
    try:
        if not setup.store.exists(MODEL):
            setup.pull(MODEL)
    finally:
        setup.close()
    rounds = []
    for r in range(args.rounds):
        order = CACHES[r % len(CACHES):] + CACHES[:r % len(CACHES)]
        figures = {label(c): measure(*c, args) for c in order}
        rounds.append({label(c): figures[label(c)] for c in CACHES})
        print(f"round {r + 1}: " + ", ".join(
            f"{n} {f['tok_s']:.1f} t/s" for n, f in rounds[-1].items()), flush=True)
    print(f"\n{MODEL}, num_ctx {args.ctx}, 1 sequence, {args.threads} threads, a prompt of "
          f"{rounds[0][label(CACHES[0])]['prompt_tokens']} tokens, {args.tokens} generated; "
          f"medians of {args.rounds} rounds, ratios to {label(CACHES[0])}")
    print(table(rounds))
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
