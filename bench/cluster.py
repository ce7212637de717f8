"""serve --ray on this machine: one replica against two, and prefix-aware routing
against least-busy routing, on the bundled gemma3:270m, in one run.

1. 16 concurrent chats (a different question each, greedy, --tokens tokens) through
   the ingress with 1 replica (16 sequences) and with 2 replicas (8 sequences each):
   aggregate generated tokens/s over the wave's wall time, and time to first token
   p50/p95.  Both replicas share this machine's cores, so the two-replica row shows
   Ray's and the second runner's overhead, not a speed-up.
2. 8 conversations with a ~400-token system prompt each: turn 1, then turn 2 timed
   (TTFT p50/p95, mean prompt tokens evaluated), on 2 replicas with prefix-aware
   routing (LOCALLAMA_CLUSTER_ROUTING=prefix) and without (least_busy).

Ray runs a local cluster with 4 logical CPUs; each configuration is a fresh Serve
deployment of the same store.

    PYTHONPATH=src .venv/bin/python bench/cluster.py [--tokens 64] [--chats 16]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

MODEL = "gemma3:270m"
NUM_CTX = 2048
TOPICS = ["the printing press", "the steam engine", "the telescope", "the compass",
          "paper money", "the bicycle", "the telegraph", "vaccines", "the radio",
          "the camera", "the airplane", "the microscope", "glass", "concrete", "the clock",
          "the loom"]
SYSTEM = ("You are a careful historian of technology. You answer in plain English, cite "
          "no sources, keep to the facts most historians agree on, and say when a date is "
          "uncertain. ") * 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_chat(url: str, messages: list[dict[str, str]], tokens: int) -> dict[str, float]:
    """One streamed chat: TTFT (s), tokens generated, prompt tokens evaluated, reply."""
    import json

    body = {"model": MODEL, "messages": messages, "stream": True,
            "options": {"num_predict": tokens, "temperature": 0, "num_ctx": NUM_CTX}}
    start = time.perf_counter()
    ttft = None
    reply = []
    with httpx.stream("POST", url + "/api/chat", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line:
                continue
            part = json.loads(line)
            if "error" in part:
                raise RuntimeError(part["error"])
            if ttft is None and part.get("message", {}).get("content"):
                ttft = time.perf_counter() - start
            reply.append(part.get("message", {}).get("content", ""))
            if part.get("done"):
                return {"ttft": ttft or time.perf_counter() - start,
                        "tokens": part["eval_count"], "prompt": part["prompt_eval_count"],
                        "reply": "".join(reply)}
    raise RuntimeError("the stream ended without its final line")


def wave(url: str, conversations: list[list[dict[str, str]]], tokens: int
         ) -> tuple[float, list[dict[str, float]]]:
    """All conversations at once; (wall seconds, results)."""
    results: list[dict[str, float]] = [{}] * len(conversations)
    barrier = threading.Barrier(len(conversations) + 1)

    def one(i: int) -> None:
        barrier.wait()
        results[i] = stream_chat(url, conversations[i], tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(conversations))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, results


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def run_config(home: Path, replicas: int, routing: str, work) -> object:
    from locallama.cluster.start import start, stop

    env = {"LOCALLAMA_HOME": str(home), "LOCALLAMA_HOST": f"127.0.0.1:{free_port()}",
           "LOCALLAMA_NUM_PARALLEL": str(16 // replicas),
           "LOCALLAMA_CLUSTER_MIN_REPLICAS": str(replicas),
           "LOCALLAMA_CLUSTER_MAX_REPLICAS": str(replicas),
           "LOCALLAMA_CLUSTER_MODELS": MODEL, "LOCALLAMA_CLUSTER_ROUTING": routing}
    cluster = start(None, env)
    try:
        for i in range(replicas * 2):  # load num_ctx on every replica (a reload once)
            stream_chat(cluster.url, [{"role": "user", "content": f"warm up {i}"}], 2)
        return work(cluster.url)
    finally:
        stop(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--chats", type=int, default=16)
    args = parser.parse_args()

    import ray

    from locallama.runtime.local import LocalRuntime
    from locallama.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    runtime = LocalRuntime(Settings.from_env({"LOCALLAMA_HOME": str(home)}))
    runtime.pull(MODEL)
    runtime.close()
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             namespace="locallama")

    chats = [[{"role": "user", "content": f"Tell me the history of {TOPICS[i % len(TOPICS)]}."}]
             for i in range(args.chats)]

    def concurrency(url: str) -> tuple[float, list[dict[str, float]]]:
        return wave(url, chats, args.tokens)

    def second_turns(url: str) -> list[dict[str, float]]:
        firsts = [[{"role": "system", "content": f"Conversation {i}. {SYSTEM}"},
                   {"role": "user", "content": f"When was {TOPICS[i]} invented?"}]
                  for i in range(8)]
        ones = [stream_chat(url, m, 16) for m in firsts]
        return [stream_chat(url, [*m, {"role": "assistant", "content": one["reply"]},
                                  {"role": "user", "content": "And who improved it?"}], 16)
                for m, one in zip(firsts, ones, strict=True)]

    load_before = os.getloadavg()[0]
    rows = []
    for replicas in (1, 2):
        wall, results = run_config(home, replicas, "prefix", concurrency)
        ttfts = [r["ttft"] for r in results]
        rows.append((replicas, sum(r["tokens"] for r in results) / wall,
                     pct(ttfts, 0.5), pct(ttfts, 0.95)))
    turns = {routing: run_config(home, 2, routing, second_turns)
             for routing in ("prefix", "least_busy")}
    ray.shutdown()

    print(f"\n{args.chats} concurrent chats, {args.tokens} tokens each, {MODEL}, "
          f"{os.cpu_count()} cores shared by every replica; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'replicas':>8} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p95':>9} {'tok/s ratio':>12}")
    for replicas, rate, p50, p95 in rows:
        print(f"{replicas:>8} {rate:>8.1f} {p50:>8.2f}s {p95:>8.2f}s {rate / rows[0][1]:>12.2f}")
    print("\nsecond turn of 8 conversations (~400-token system prompt), 2 replicas")
    print(f"{'routing':>10} {'TTFT p50':>9} {'TTFT p95':>9} {'prompt tokens':>14}")
    for routing, results in turns.items():
        ttfts = [r["ttft"] for r in results]
        print(f"{routing:>10} {pct(ttfts, 0.5):>8.3f}s {pct(ttfts, 0.95):>8.3f}s "
              f"{statistics.mean(r['prompt'] for r in results):>14.1f}")


if __name__ == "__main__":
    main()
