"""Decode speed of locallama's engine path against llama-cpp-python's own Llama call.

Both run in this process on the same GGUF (the bundled gemma3:270m), prompt,
threads, context size and greedy sampling, alternating round by round so that
a noisy shared machine affects both alike.  Prints a table and the ratio
(locallama / llama-cpp-python); the foundation issue's target is >= 0.95.

    .venv/bin/python bench/decode_speed.py [--rounds 5] [--tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import llama_cpp

from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings

PROMPT = "The history of the printing press begins"


def locallama_round(runtime: LocalRuntime, tokens: int, threads: int, ctx: int) -> float:
    options = {"temperature": 0, "num_predict": tokens, "num_thread": threads,
               "num_ctx": ctx, "seed": 1}
    started = time.perf_counter_ns()
    final = None
    for chunk in runtime.generate(GenerateRequest("gemma3:270m", PROMPT, options=options)):
        final = chunk
    wall = time.perf_counter_ns() - started
    decode_ns = wall - final.prompt_eval_duration - final.load_duration
    return final.eval_count / (decode_ns / 1e9)


def llama_cpp_round(llm: llama_cpp.Llama, tokens: int) -> float:
    llm.reset()  # no prompt cache: same work as a fresh request
    llama_cpp.llama_perf_context_reset(llm.ctx)
    started = time.perf_counter_ns()
    out = llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, top_k=40,
                                top_p=0.9, repeat_penalty=1.1, seed=1)
    wall = time.perf_counter_ns() - started
    perf = llama_cpp.llama_perf_context(llm.ctx)
    decode_ns = wall - perf.t_p_eval_ms * 1e6
    return out["usage"]["completion_tokens"] / (decode_ns / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        runtime = LocalRuntime(Settings(models_dir=Path(tmp)))
        runtime.pull("gemma3:270m")
        path = runtime.store.get("gemma3:270m").model_path
        llm = llama_cpp.Llama(str(path), n_ctx=args.ctx, n_batch=512, n_ubatch=512,
                              n_threads=args.threads, n_threads_batch=args.threads,
                              verbose=False)
        # warm both paths once (page cache, first-call allocations)
        locallama_round(runtime, 8, args.threads, args.ctx)
        llama_cpp_round(llm, 8)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(locallama_round(runtime, args.tokens, args.threads, args.ctx))
            theirs.append(llama_cpp_round(llm, args.tokens))
        runtime.close()
        llm.close()

    def row(name: str, values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{name:<28}{statistics.mean(values):>10.2f} ± {sd:<8.2f}"

    print(f"decode tokens/s, gemma3:270m Q4_K_M, {args.tokens} tokens, "
          f"{args.threads} threads, {args.rounds} rounds")
    print(f"{'path':<28}{'tokens/s':>10}")
    print(row("locallama (Runtime)", ours))
    print(row("llama-cpp-python Llama", theirs))
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"ratio locallama / llama-cpp-python: {statistics.median(ratios):.3f} "
          f"(median of per-round ratios; target >= 0.95)")


if __name__ == "__main__":
    main()
