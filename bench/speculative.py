"""Speculative decoding on a code-editing workload: prompt lookup on vs off, and
llama-server's n-gram speculation on the same model.

The prompt holds a source file (the first ``--lines`` lines of one of this project's
modules) and asks for the same file with a function renamed; gemma3:270m is a base
model, so the prompt is written for it to copy.  Greedy, ``--tokens`` tokens per
answer, ``--threads`` threads.  Each configuration answers once to warm up (the
prompt is then cached: by the slot here, by ``cache_prompt`` there) and ``--rounds``
times measured; the rate is decode tokens/s (the final chunk's eval_count /
eval_duration here, ``timings.predicted_per_second`` there).  locallama's modes run
alternately, round by round, so a noisy machine hits them alike; llama-server's runs
follow, one server process per configuration.

    .venv/bin/python bench/speculative.py [--lines 300] [--tokens 256] [--rounds 3]
        [--threads 2] [--llama-server /work/llama-server-same/bin/llama-server]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings

SOURCE = Path(__file__).resolve().parent.parent / "src/locallama/engine/scheduler.py"
MODES = {"off (draft_max 0)": 0, "auto (draft_max -1)": -1, "on (draft_max 8)": 8,
         "on (draft_max 32)": 32, "on (draft_max 64)": 64}
SERVER_CONFIGS = {
    "llama-server, no speculation": [],
    "llama-server ngram-simple (defaults n=12 m=48)": ["--spec-type", "ngram-simple"],
    "llama-server ngram-simple n=3 m=8": ["--spec-type", "ngram-simple",
                                          "--spec-ngram-simple-size-n", "3",
                                          "--spec-ngram-simple-size-m", "8"],
}


def editing_prompt(lines: int) -> str:
    code = "\n".join(SOURCE.read_text().splitlines()[:lines])
    return (f"Here is the file:\n```python\n{code}\n```\n\nHere is the same file with the "
            "method _decode renamed to _evaluate:\n```python\n")


def ours(runtime: LocalRuntime, prompt: str, draft_max: int, args, texts: dict[int, str]
         ) -> tuple[float, int, int]:
    options = {"temperature": 0, "num_predict": args.tokens, "num_thread": args.threads,
               "num_ctx": args.ctx, "draft_max": draft_max}
    final, text = None, ""
    for chunk in runtime.generate(GenerateRequest("gemma3:270m", prompt, raw=True,
                                                  options=options)):
        final, text = chunk, text + chunk.text
    texts[draft_max] = text
    return final.eval_count / (final.eval_duration / 1e9), final.draft_n, final.draft_n_accepted


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def theirs(binary: str, model: Path, flags: list[str], prompt: str, args
           ) -> list[tuple[float, int, int]]:
    port = free_port()
    server = subprocess.Popen(
        [binary, "-m", str(model), "-t", str(args.threads), "-tb", str(args.threads),
         "-c", str(args.ctx), "-np", "1", "--port", str(port), *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"llama-server did not start ({flags})") from None
                time.sleep(0.5)
        body = json.dumps({"prompt": prompt, "n_predict": args.tokens, "temperature": 0,
                           "cache_prompt": True}).encode()
        results = []
        for _ in range(args.rounds + 1):
            request = urllib.request.Request(url + "/completion", body,
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=3600) as answer:
                timings = json.load(answer)["timings"]
            results.append((timings["predicted_per_second"], timings.get("draft_n", 0),
                            timings.get("draft_n_accepted", 0)))
        return results[1:]  # the first evaluated the prompt: a warm-up
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--llama-server", default="/work/llama-server-same/bin/llama-server")
    args = parser.parse_args()
    prompt = editing_prompt(args.lines)

    rows: dict[str, list[tuple[float, int, int]]] = {name: [] for name in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        runtime = LocalRuntime(Settings(models_dir=Path(tmp), num_parallel=1))
        runtime.pull("gemma3:270m")
        model = runtime.store.get("gemma3:270m").model_path
        texts: dict[int, str] = {}
        for draft_max in MODES.values():  # warm-up: the prompt, once per mode
            ours(runtime, prompt, draft_max, args, texts)
        for _ in range(args.rounds):
            for name, draft_max in MODES.items():
                rows[name].append(ours(runtime, prompt, draft_max, args, texts))
        runtime.close()
        if Path(args.llama_server).is_file():
            for name, flags in SERVER_CONFIGS.items():
                rows[name] = theirs(args.llama_server, model, flags, prompt, args)
        else:
            print(f"(no llama-server at {args.llama_server}: its rows are left out)")

    base = statistics.mean(r[0] for r in rows["off (draft_max 0)"])
    print(f"\ncode editing: {args.lines}-line file, {args.tokens} tokens, greedy, "
          f"{args.threads} threads, {args.rounds} rounds")
    print(f"{'configuration':<48}{'tokens/s':>10}{'x off':>8}{'drafted':>9}{'accepted':>9}"
          f"  same text as off")
    for name, results in rows.items():
        rate = statistics.mean(r[0] for r in results)
        drafted, accepted = results[-1][1], results[-1][2]
        same = texts[MODES[name]] == texts[0] if name in MODES else "-"
        print(f"{name:<48}{rate:>10.2f}{rate / base:>8.2f}{drafted:>9}{accepted:>9}  {same}")


if __name__ == "__main__":
    main()
