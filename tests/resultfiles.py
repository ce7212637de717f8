"""Result files as ``eval``, ``perplexity`` and ``bench`` write them (their --output),
for the tests of what reads them: ``locallama/results.py``, /ui/api/results, the page."""

from __future__ import annotations

import json
from pathlib import Path

Q4, Q8 = "sha256:" + "4" * 64, "sha256:" + "8" * 64


def bench(digest: str, name: str, quant: str, size: int, pp: float, tg: float) -> dict:
    def test(label: str, rate: float) -> dict:
        return {"test": label, "n_prompt": 512 if label.startswith("pp") else 0,
                "n_gen": 128 if label.startswith("tg") else 0, "concurrency": 1,
                "repetitions": 5, "tokens_per_second": rate, "stddev": rate / 50,
                "samples": [rate] * 5, "stream_tokens_per_second": rate, "tokens": 512}

    return {"kind": "bench", "options": {}, "versions": {}, "results": [{
        "model": name, "digest": digest, "quantization": quant, "size": size,
        "parameters": 268_000_000, "memory": size + 600_000_000, "threads": 2,
        "concurrency": 1, "tests": [test("pp512", pp), test("tg128", tg)], "warnings": []}]}


def perplexity(digest: str, name: str, quant: str, size: int, value: float) -> dict:
    return {"kind": "perplexity", "model": name, "digest": digest, "quantization": quant,
            "size": size, "parameters": 268_098_176, "memory": size + 600_000_000,
            "file": "/data/wiki.test.raw", "ctx": 512, "perplexity": value,
            "perplexity_stderr": value / 40, "chunks": 8}


def evaluation(digest: str, name: str, quant: str, size: int, arc: float) -> dict:
    return {"schema": "locallama.eval/1", "sample": True, "model": name, "digest": digest,
            "quantization": quant, "size": size,
            "primary": {"arc_challenge": "acc_norm"},
            "results": {"arc_challenge": {"acc": arc - 0.05, "acc_stderr": 0.04,
                                          "acc_norm": arc, "acc_norm_stderr": 0.05, "n": 20}}}


def write_results(folder: Path, q8_name: str = "gemma3:270m-q8") -> list[Path]:
    """Two quantizations of one model, each measured three ways: five files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "bench.json": bench(Q4, "gemma3:270m", "Q4_K_M", 253_000_000, 400, 40),
        "bench-q8.json": bench(Q8, q8_name, "Q8_0", 292_000_000, 350, 30),
        "ppl-q4.json": perplexity(Q4, "gemma3:270m", "Q4_K_M", 253_000_000, 31.25),
        "ppl-q8.json": perplexity(Q8, q8_name, "Q8_0", 292_000_000, 29.5),
        "eval-q4.json": evaluation(Q4, "gemma3:270m", "Q4_K_M", 253_000_000, 0.30),
    }
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_text(json.dumps(data), encoding="utf-8")
        paths.append(path)
    return paths
