"""Eight chats that arrive together and share a ~900-token system prompt: time to first
token and aggregate tokens/s, for locallama before and after prefix sharing (two
source trees, one run) and llama-server when a binary is given.

Each round sends --clients streaming completions at once (greedy, raw prompt: the
system prompt + the client's own ~100 tokens of text, --tokens generated).  The
system prompt opens with the round's number, so every round starts cold (nothing of
it cached anywhere): the case where, before sharing, every slot evaluated the whole
prompt.  Servers take turns within a round so that machine noise hits all alike;
ratios are medians of per-round ratios against the first server.

    .venv/bin/python bench/shared_prefix.py [--before /work/main/src] [--after src]
        [--rounds 3] [--clients 8] [--tokens 32] [--threads 2] [--llama-server PATH]

--before/--after are the `src` folders of the two locallama trees (default: /work/main
and this checkout); --llama-server adds llama-server from that binary (--cache-reuse 256).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

from concurrency import (
    MODEL,
    NUM_CTX,
    LlamaServer,
    Locallama,
    percentile,
)
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings

SYSTEM = ("You are the reference desk of a large public library. You answer questions "
          "about the catalogue, opening hours, loans, reservations, the reading rooms, "
          "the map collection and the local history archive. Always cite the shelf mark, "
          "say whether a book is on loan and until when, and keep answers short. ")
OWN = ("I am looking for books about {topic}: what do you have, which floor is it on, "
       "and can I borrow them for three weeks? I would also like to know about ")


class Tree(Locallama):
    """`locallama serve` from one source tree (PYTHONPATH), on a port of its own."""

    def __init__(self, name: str, src: str, threads: int, parallel: int) -> None:
        super().__init__(threads, parallel, src)
        self.name = name


def prompts(runtime: LocalRuntime, round_: int, clients: int) -> list[str]:
    """``clients`` prompts: one ~900-token system prompt for the round, ~100 of their own."""
    system = f"Session {round_}. "
    while len(runtime.tokenize(MODEL, system)) < 900:
        system += SYSTEM
    topics = ["bees", "old maps", "the railway", "knitting", "chess", "volcanoes",
              "the river", "bridges", "clocks", "ships"]
    out = []
    for i in range(clients):
        own = OWN.format(topic=topics[i % len(topics)])
        while len(runtime.tokenize(MODEL, own)) < 100:
            own += f"{topics[(i + len(own)) % len(topics)]}, "
        out.append(f"{system}\nQuestion {i}: {own}\nAnswer:")
    return out


def wave(server, texts: list[str], tokens: int) -> tuple[float, list[float]]:
    """All ``texts`` at once; aggregate generated tokens/s over the wave's wall time
    (prompts included), and each stream's time to first token."""
    results: list = [None] * len(texts)
    barrier = threading.Barrier(len(texts) + 1)

    def client(i: int) -> None:
        with httpx.Client(timeout=900) as http:
            barrier.wait()
            results[i] = server.complete(http, texts[i], tokens)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return sum(r.tokens for r in results) / elapsed, [r.ttft for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="/work/main/src")
    parser.add_argument("--after", default=str(Path(__file__).resolve().parents[1] / "src"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-server", help="a llama-server binary to compare with")
    args = parser.parse_args()

    runtime = LocalRuntime(Settings.from_env())
    if not runtime.store.exists(MODEL):
        runtime.pull(MODEL)
    model_path = str(runtime.store.get(MODEL).model_path)
    waves = [prompts(runtime, r, args.clients) for r in range(-1, args.rounds)]
    sizes = [len(runtime.tokenize(MODEL, t)) for t in waves[0]]
    runtime.close()

    servers: list = []
    try:  # a server that does not start (sys.exit) stops the ones already started
        servers.append(Tree("before", args.before, args.threads, args.clients))
        servers.append(Tree("after", args.after, args.threads, args.clients))
        if args.llama_server:
            servers.append(LlamaServer(args.threads, args.clients, model_path,
                                       args.llama_server, ("--cache-reuse", "256")))
    except BaseException:
        for server in servers:
            server.close()
        raise
    rows: dict[str, list[tuple[float, list[float]]]] = {s.name: [] for s in servers}
    try:
        for server in servers:  # warm up: load the model (round -1's prompts)
            wave(server, waves[0][:1], 4)
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for server in order:
                rows[server.name].append(wave(server, waves[round_ + 1], args.tokens))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for server in servers:
            server.close()

    print(f"\n{MODEL}, {args.threads} threads, {args.clients} clients at once, prompts of "
          f"{min(sizes)}-{max(sizes)} tokens (~900 shared), {args.tokens} tokens each, "
          f"num_ctx {NUM_CTX}, {args.rounds} rounds\n")
    print(f"{'server':<13} {'agg tok/s':>9} {'TTFT p50':>9} {'TTFT p95':>9}"
          f"  {'agg vs before':>13} {'p50 before/x':>13} {'prompt eval/wave':>16}")
    base = rows["before"]
    for server in servers:
        runs = rows[server.name]
        ttfts = [t for _, ts in runs for t in ts]
        counts = getattr(server, "evaluated", [])[1:]  # past the warm-up's
        evaluated = str(sum(counts) // args.rounds) if counts else "-"
        agg = statistics.median(a / b[0] for (a, _), b in zip(runs, base, strict=True))
        p50 = statistics.median(percentile(b[1], 0.5) / percentile(ts, 0.5)
                                for (_, ts), b in zip(runs, base, strict=True))
        print(f"{server.name:<13} {statistics.median(r[0] for r in runs):>9.1f} "
              f"{percentile(ttfts, 0.5) * 1000:>7.0f}ms {percentile(ttfts, 0.95) * 1000:>7.0f}ms"
              f"  {agg:>12.2f}x {p50:>12.2f}x {evaluated:>16}")


if __name__ == "__main__":
    main()
