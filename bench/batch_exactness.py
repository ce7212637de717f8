"""Which weight types and attention kernels give the same answer however a request is
batched: the two kinds of batch independence locallama relies on, measured per
quantization of the bundled model, with flash attention off and on.

- **One sequence, several tokens in one batch** (what speculative decoding's
  verification does): the largest logit difference between 12 tokens of PROBE_TEXT
  evaluated in one batch and one at a time (``engine.speculative.
  fresh_step_difference``; 0 = bit-identical for these tokens, which other tokens
  need not be: so automatic speculation leaves greedy requests alone either way).
- **Several sequences in one batch** (concurrent requests): 8 raw prompts answered
  one at a time on a freshly loaded model, then together
  (``determinism.batching_check``), greedy and seeded (temperature 0.8), --tokens
  tokens each; "8/8" when every answer is the same text.

The types are the bundled gemma3:270m as shipped (Q4_K_M; gemma3's 640-wide rows
leave it a mix of Q4_K, Q6_K, Q5_0 and Q8_0) and requantized from it into a scratch
store (--types); requantizing loses quality but not what is measured here.  Weight
repacking stays off (LOCALLAMA_REPACK's default).  Correctness, not speed: the
machine's load does not change the table.

    .venv/bin/python bench/batch_exactness.py [--types q8_0,q5_0,q4_0,q6_k]
                                              [--tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from determinism import batching_check
from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.engine.speculative import fresh_step_difference
from locallama.gguf_info import read_gguf_info
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from locallama.store.modelfile import Modelfile

MODEL = "gemma3:270m"


def step_difference(path: Path, flash_attention: bool, threads: int) -> float:
    """``fresh_step_difference`` for the model at ``path`` (logits; 0.0: identical)."""
    model = LoadedModel(path, read_gguf_info(path), ContextParams(256, 32, 0, True,
                                                                  threads=threads))
    try:
        return fresh_step_difference(model, threads, flash_attention)
    finally:
        model.close()


def measure(store: Path, models: dict[str, str], tokens: int, threads: int,
            log=print) -> list[dict[str, Any]]:
    """One row per (model, flash attention): the step difference and, for greedy and
    seeded, how many of 8 batched answers equal their answer alone."""
    base = Settings.from_env()
    rows = []
    for fa in (False, True):
        runtime = LocalRuntime(dataclasses.replace(base, models_dir=store, num_parallel=8,
                                                   flash_attention=fa, repack=False))
        try:
            for label, name in models.items():
                path = runtime.store.get(name).model_path
                row: dict[str, Any] = {"weights": label, "flash_attention": fa,
                                       "step_difference": step_difference(path, fa, threads)}
                for kind, extra in (("greedy", {"temperature": 0}),
                                    ("seeded", {"temperature": 0.8, "seed": 7})):
                    opts = {"num_predict": tokens, "num_thread": threads, "num_ctx": 512,
                            **extra}
                    row[kind] = batching_check(runtime, name, 8, opts)["same"]
                    runtime.unload(name)
                log(row, flush=True)
                rows.append(row)
        finally:
            runtime.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="q8_0,q5_0,q4_0,q6_k",
                        help="quantizations to requantize the bundled model to")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="exactness-") as scratch:
        store = Path(scratch) / "models"
        runtime = LocalRuntime(dataclasses.replace(settings, models_dir=store))
        home = LocalRuntime(settings)
        try:
            if not home.store.exists(MODEL):
                home.pull(MODEL)
            bundled = home.store.get(MODEL).model_path
            models = {"Q4_K_M (as shipped)": "shipped"}
            runtime.create("shipped", Modelfile(from_=str(bundled)), Path(scratch))
            for qtype in filter(None, args.types.split(",")):
                print(f"requantizing to {qtype} ...", flush=True)
                runtime.create(qtype, Modelfile(from_=str(bundled)), Path(scratch),
                               quantize=qtype)
                models[qtype.upper()] = qtype
        finally:
            home.close()
            runtime.close()
        rows = measure(store, models, args.tokens, args.threads)

    print(f"\n{MODEL} requantized, {args.threads} threads, repack off; "
          f"8 prompts x {args.tokens} tokens")
    print(f"{'weights':<22}{'flash attn':>11}{'12 in a batch vs steps':>24}"
          f"{'8 together = alone: greedy':>28}{'seeded':>8}")
    for row in sorted(rows, key=lambda r: (r["weights"], r["flash_attention"])):
        diff = row["step_difference"]
        shown = "identical" if diff == 0 else f"differs by {diff:.3g}"
        print(f"{row['weights']:<22}{'on' if row['flash_attention'] else 'off':>11}"
              f"{shown:>24}{row['greedy']:>26}/8{row['seeded']:>6}/8")


if __name__ == "__main__":
    main()
