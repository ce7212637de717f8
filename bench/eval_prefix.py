"""Shared-prefix scoring against no reuse: a 25-shot ARC run on gemma3:270m.

``locallama eval`` scores each question's choices one after another on the slot
that holds their shared context, so a 25-shot prompt is evaluated once per
question and each further choice costs only its own few tokens.  Without that
reuse every (context, choice) pair evaluates the whole prompt.

Both runs here score the same pairs through the public ``Runtime.score`` on one
runtime with a single slot (``num_parallel=1``), in one process:

- shared: the pairs in question order, so a question's choices follow each other;
- no reuse: the same pairs interleaved by choice (question 1 choice A, question 2
  choice A, ..., question 1 choice B, ...), so every pair follows another
  question's pair.  The few-shot examples are drawn per question, so consecutive
  prompts share only their first few tokens and the slot's cache is evicted.

Rounds alternate the order of the two runs; the ratio is the median of the
per-round ratios.  The log-likelihoods of both runs are compared as a check.
A last row runs the shared order with 4 slots, as ``locallama eval`` does.

    .venv/bin/python bench/eval_prefix.py [--rounds 3] [--shots 25] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from locallama.evals import harness
from locallama.evals.benchmarks import TASKS
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings

MODEL = "gemma3:270m"


def timed(runtime: LocalRuntime, pairs: list[tuple[str, str]], options: dict) -> tuple[float,
                                                                                       list[float]]:
    started = time.perf_counter()
    scores = runtime.score(MODEL, pairs, options)
    return time.perf_counter() - started, [s.logprob for s in scores]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shots", type=int, default=25)
    parser.add_argument("--threads", type=int, default=0, help="num_thread (0: the default)")
    args = parser.parse_args()

    (run,) = harness.plan([TASKS["arc_challenge"]], samples=True, shots=args.shots)
    items = run.items
    shared = [pair for item in items for pair in item.prompt.pairs]
    width = max(len(i.prompt.pairs) for i in items)
    order = [(n, k) for k in range(width) for n, item in enumerate(items)
             if k < len(item.prompt.pairs)]
    interleaved = [items[n].prompt.pairs[k] for n, k in order]

    with tempfile.TemporaryDirectory() as home:
        store = Path(home) / "models"
        one = LocalRuntime(Settings(models_dir=store, num_parallel=1))
        one.pull(MODEL)
        options = {"num_ctx": harness.context_size(one, MODEL, [run])}
        if args.threads:
            options["num_thread"] = args.threads
        tokens = {text: len(one.tokenize(MODEL, text)) for pair in shared for text in pair}
        whole = [len(one.tokenize(MODEL, c + x)) for c, x in shared]
        timed(one, shared[:1], options)  # load the model

        times: dict[str, list[float]] = {"shared": [], "no reuse": []}
        ratios, worst = [], 0.0
        for r in range(args.rounds):
            runs = [("shared", shared), ("no reuse", interleaved)]
            found: dict[str, list[float]] = {}
            for name, pairs in runs if r % 2 == 0 else runs[::-1]:
                seconds, found[name] = timed(one, pairs, options)
                times[name].append(seconds)
            back = dict(zip(order, found["no reuse"], strict=True))  # to question order
            again = [back[(n, k)] for n, i in enumerate(items) for k in range(len(i.prompt.pairs))]
            worst = max(worst, *(abs(a - b) for a, b in zip(again, found["shared"], strict=True)))
            ratios.append(times["no reuse"][-1] / times["shared"][-1])
        one.close()

        four = LocalRuntime(Settings(models_dir=store, num_parallel=4))
        timed(four, shared[:1], options)
        parallel = [timed(four, shared, options)[0] for _ in range(args.rounds)]
        four.close()

    contexts = {c for c, _ in shared}
    evaluated_shared = sum(tokens[c] for c in contexts) + sum(
        w - tokens[c] for (c, _), w in zip(shared, whole, strict=True))
    print(f"{MODEL}, ARC-Challenge samples: {len(items)} questions, {len(shared)} pairs, "
          f"{args.shots}-shot, num_ctx {options['num_ctx']}, {args.rounds} rounds")
    print(f"tokens evaluated: shared {evaluated_shared}, no reuse {sum(whole)} "
          f"({sum(whole) / evaluated_shared:.1f}x)")
    rows = [("mode", "slots", "seconds (median)", "pairs/s", "vs shared")]
    base = statistics.median(times["shared"])
    for name, slots, values in (("shared prefix", 1, times["shared"]),
                                ("no reuse", 1, times["no reuse"]),
                                ("shared prefix", 4, parallel)):
        median = statistics.median(values)
        rows.append((name, str(slots), f"{median:.2f}", f"{len(shared) / median:.1f}",
                     f"{median / base:.2f}x"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"speed-up of shared-prefix scoring: {statistics.median(ratios):.2f}x "
          f"(median of per-round ratios {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"largest log-likelihood difference between the two orders: {worst:.2e}")


if __name__ == "__main__":
    main()
