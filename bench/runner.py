"""Runners (issue 14) against in-process loading: decode speed, cold-load time to
first token, and the cost of checking a new model file before it is stored.

Two LocalRuntimes over one temporary store, Settings(runner="process") and
Settings(runner="inprocess"), both with num_parallel 8, run the same requests in
the same process; rounds alternate which goes first so that noise on a shared
machine hits both alike, and ratios (runner / in-process) are medians of per-round
ratios; each measurement waits (up to --quiet-wait seconds) for idle CPUs.
Per round and mode:

- decode: 1 stream, then 8 concurrent streams, each a raw prompt new to the model
  (no KV reuse), greedy, seeded, --tokens tokens; tok/s is all generated tokens over
  the wave's wall time as the caller sees it (request to last token).  "engine" is
  the scheduler's own count (eval_count / eval_duration, the longest stream for 8),
  so engine/client says what the trip from the scheduler to the caller costs.
  "CPU per token" is the CPU time of this process and the runner over the wave
  per generated token: on a machine shared with other work, wall-clock speed
  follows the others' load, while CPU time per token mostly does not;
- cold load: the model unloaded, then one generate of 1 token; time to its first
  token (for a runner: process start, imports, load, the first token).  Its
  load_duration row is not like for like: in-process it counts the weights only,
  through a runner the process start, the weights and the context;
- check: ``load_check.check_loads`` on the model's blob with no digest (so no cached
  verdict), a bare in-process ``llama_model_load_from_file`` of the same file for
  reference, and ``create`` FROM a copy of the file outside the store into a fresh
  store: with the check's verdict forgotten, then again with it cached.

    .venv/bin/python bench/runner.py [--rounds 5] [--threads 2] [--tokens 128]
                                     [--streams 8] [--quiet-wait 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_compare import wait_quiet
from locallama.engine import load_check
from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings
from locallama.store.modelfile import Modelfile

MODEL = "gemma3:270m"
MODES = ("process", "inprocess")
TOPICS = ["the printing press", "the steam engine", "the telescope", "the compass",
          "paper money", "the bicycle", "the telegraph", "vaccines"]


@dataclasses.dataclass
class Stream:
    """One streamed answer as its caller saw it (seconds) and as the engine counted."""

    tokens: int
    ttft: float
    wall: float
    eval_ns: int
    load_ns: int


def options(tokens: int, threads: int, ctx: int) -> dict[str, Any]:
    """The request options every measurement uses (the same, so nothing reloads)."""
    return {"temperature": 0, "seed": 1, "num_predict": tokens, "num_thread": threads,
            "num_ctx": ctx}


def stream(runtime: LocalRuntime, model: str, prompt: str, opts: dict[str, Any]) -> Stream:
    """Stream one raw completion to its end; its :class:`Stream` figures."""
    started = time.perf_counter()
    first, final = None, None
    for chunk in runtime.generate(GenerateRequest(model, prompt, raw=True, options=opts)):
        if first is None and (chunk.text or chunk.done):
            first = time.perf_counter()
        if chunk.done:
            final = chunk
    wall = time.perf_counter() - started
    assert final is not None and first is not None
    return Stream(final.eval_count, first - started, wall, final.eval_duration,
                  final.load_duration)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, s) used so far by this process and the processes
    ``pids`` (its runners), all threads."""
    import psutil

    total = time.process_time()
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def wave(runtime: LocalRuntime, model: str, streams: int, opts: dict[str, Any],
         round_: int) -> dict[str, float]:
    """``streams`` concurrent answers, each to its own prompt (new in each round);
    {"tok_s": all tokens / wall, "engine_tok_s", "ttft" (median s), "tokens",
    "cpu_ms_per_token": CPU time of this process and the model's runner over the
    wave, per generated token (the figure that other programs on the machine sway
    least)}."""
    pids = [info.pid for info in runtime.ps() if info.pid is not None]
    results: list[Stream | None] = [None] * streams
    errors: list[BaseException] = []
    barrier = threading.Barrier(streams + 1)

    def client(i: int) -> None:
        prompt = f"A short history of {TOPICS[i % len(TOPICS)]}, part {round_}:"
        barrier.wait()
        try:
            results[i] = stream(runtime, model, prompt, opts)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    cpu = cpu_seconds(pids)
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pids) - cpu
    if errors:
        raise errors[0]
    done = [r for r in results if r is not None]
    tokens = sum(r.tokens for r in done)
    longest = max(r.eval_ns for r in done) or 1
    return {"tok_s": tokens / elapsed, "engine_tok_s": tokens / (longest / 1e9),
            "ttft": statistics.median(r.ttft for r in done), "tokens": tokens,
            "cpu_ms_per_token": cpu * 1000 / max(1, tokens)}


def cold_start(runtime: LocalRuntime, model: str, opts: dict[str, Any], round_: int
               ) -> dict[str, float]:
    """Unload ``model``, then one generate of 1 token: {"ttft" s, "load" s (the
    runtime's load_duration)}."""
    runtime.unload(model)
    if runtime.ps():
        raise RuntimeError(f"{model} is still loaded after unload")
    result = stream(runtime, model, f"Cold start {round_}:", {**opts, "num_predict": 1})
    return {"ttft": result.ttft, "load": result.load_ns / 1e9}


def bare_load(path: Path) -> float:
    """Seconds to load ``path`` with llama.cpp in this process (mmap, no context): what
    the check does in its child, without starting one."""
    import llama_cpp

    import locallama.engine.model  # noqa: F401 - its quiet log callback, backend init

    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers, params.use_mmap = 0, True
    started = time.perf_counter()
    loaded = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    elapsed = time.perf_counter() - started
    if not loaded:
        raise RuntimeError(f"llama.cpp did not load {path}")
    llama_cpp.llama_model_free(loaded)
    return elapsed


def check_round(path: Path, work: Path, timeout: float) -> dict[str, float]:
    """The check-before-store figures for one round (seconds): check, bare load,
    create with the verdict forgotten, create with it cached."""
    figures = {}
    started = time.perf_counter()
    load_check.check_loads(path, timeout)  # no digest: no cached verdict
    figures["check"] = time.perf_counter() - started
    figures["bare_load"] = bare_load(path)
    for key in ("create", "create_cached"):
        store = work / f"store-{key}"
        shutil.rmtree(store, ignore_errors=True)
        runtime = LocalRuntime(Settings(models_dir=store, history_file=work / "history",
                                        load_check_timeout=timeout))
        try:
            if key == "create":
                load_check._passed.clear()  # forget earlier verdicts: the check runs
            started = time.perf_counter()
            runtime.create("copy:latest", Modelfile(from_=str(path)), path.parent)
            figures[key] = time.perf_counter() - started
        finally:
            runtime.close()
        shutil.rmtree(store, ignore_errors=True)
    return figures


def run(store: Path, model: str, rounds: int, threads: int, tokens: int, streams: int,
        ctx: int = 4096, work: Path | None = None, quiet_wait: float = 0.0,
        log=print) -> dict[str, Any]:
    """Every measurement, ``rounds`` times, over the store at ``store`` holding
    ``model``; ``work`` is scratch space for the create figures (default: beside the
    store); each measurement first waits up to ``quiet_wait`` s for idle CPUs.
    Returns {"rounds": [{mode: {...}, "check": {...}}, ...], "settings": {...}}; the
    settings name the pid each mode's model ran in (``ps``; None: this process)."""
    work = work or store.parent / "bench-work"
    work.mkdir(parents=True, exist_ok=True)
    source = work / "model.gguf"  # a file outside any store, as a user's download is
    lookup = LocalRuntime(Settings(models_dir=store))
    shutil.copyfile(lookup.store.get(model).model_path, source)
    lookup.close()
    runtimes = {mode: LocalRuntime(Settings(models_dir=store, history_file=work / "history",
                                            num_parallel=streams, keep_alive="1h",
                                            runner=mode)) for mode in MODES}
    opts = options(tokens, threads, ctx)
    out: dict[str, Any] = {"rounds": [], "settings": {
        "model": model, "threads": threads, "tokens": tokens, "streams": streams,
        "num_ctx": ctx, "num_parallel": streams}}
    try:
        for mode, runtime in runtimes.items():  # warm-up: imports, page cache, a load
            wave(runtime, model, 1, {**opts, "num_predict": 8}, -1)
            cold_start(runtime, model, opts, -1)
            out["settings"][f"{mode}_pid"] = runtime.ps()[0].pid  # None: this process
        check_round(source, work, 120.0)
        for round_ in range(rounds):
            order = MODES if round_ % 2 == 0 else MODES[::-1]
            figures: dict[str, Any] = {mode: {} for mode in MODES}
            for mode in order:
                wait_quiet(quiet_wait)
                figures[mode]["1"] = wave(runtimes[mode], model, 1, opts, round_)
            for mode in order:
                wait_quiet(quiet_wait)
                figures[mode][str(streams)] = wave(runtimes[mode], model, streams, opts,
                                                   round_)
            for mode in order:
                wait_quiet(quiet_wait)
                figures[mode]["cold"] = cold_start(runtimes[mode], model, opts, round_)
            wait_quiet(quiet_wait)
            figures["check"] = check_round(source, work, 120.0)
            out["rounds"].append(figures)
            log(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    finally:
        for runtime in runtimes.values():
            runtime.close()
    return out


def summary(out: dict[str, Any]) -> list[tuple[str, str, float, float, float | None]]:
    """Rows (what, unit, runner median, in-process median, median per-round ratio;
    the check rows have the one figure in the runner column and no ratio)."""
    rounds, streams = out["rounds"], out["settings"]["streams"]
    rows = []

    def add(label: str, unit: str, pick) -> None:
        a = [pick(r["process"]) for r in rounds]
        b = [pick(r["inprocess"]) for r in rounds]
        rows.append((label, unit, statistics.median(a), statistics.median(b),
                     statistics.median(x / y for x, y in zip(a, b, strict=True))))

    for n in ("1", str(streams)):
        add(f"decode, {n} stream{'s' if n != '1' else ''}", "tok/s", lambda m, n=n: m[n]["tok_s"])
        add(f"  engine's own count, {n}", "tok/s", lambda m, n=n: m[n]["engine_tok_s"])
        add(f"  TTFT p50, {n}", "ms", lambda m, n=n: m[n]["ttft"] * 1000)
        add(f"  CPU per token, {n}", "ms", lambda m, n=n: m[n]["cpu_ms_per_token"])
    add("cold load: TTFT of 1 token", "ms", lambda m: m["cold"]["ttft"] * 1000)
    add("  of which load_duration", "ms", lambda m: m["cold"]["load"] * 1000)
    for key, label in (("check", "check_loads (child, no cache)"),
                       ("bare_load", "  bare load in this process"),
                       ("create", "create FROM file, check runs"),
                       ("create_cached", "create FROM file, verdict cached")):
        values = [r["check"][key] * 1000 for r in rounds]
        rows.append((label, "ms", statistics.median(values), float("nan"), None))
    return rows


def table(out: dict[str, Any]) -> str:
    """The summary as the text table ``main`` prints."""
    s = out["settings"]
    lines = [f"{s['model']}, {s['threads']} threads, num_parallel {s['num_parallel']}, "
             f"{s['tokens']} tokens per stream, num_ctx {s['num_ctx']}, "
             f"{len(out['rounds'])} rounds (medians; ratio: median of per-round runner / "
             "in-process)", "",
             f"{'':<34}{'unit':>6}{'runner':>10}{'in-proc':>10}{'ratio':>8}"]
    for label, unit, a, b, ratio in summary(out):
        right = f"{b:>10.1f}{ratio:>8.3f}" if ratio is not None else f"{'':>10}{'':>8}"
        lines.append(f"{label:<34}{unit:>6}{a:>10.1f}{right}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--quiet-wait", type=float, default=5.0,
                        help="seconds to wait for idle CPUs before each measurement")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        store = Path(tmp) / "models"
        puller = LocalRuntime(Settings(models_dir=store))
        puller.pull(MODEL)  # from the bundled package, no network
        puller.close()
        out = run(store, MODEL, args.rounds, args.threads, args.tokens, args.streams,
                  args.ctx, quiet_wait=args.quiet_wait)
    print(table(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
