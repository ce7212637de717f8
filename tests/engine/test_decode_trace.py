"""engine/decode_trace.py: LOCALLAMA_DECODE_TRACE makes a runner record every
llama_decode (what bench/decode_profile.py reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from locallama.engine import decode_trace
from locallama.runtime.types import GenerateRequest
from runtimes import local_runtime


def test_a_runner_records_each_decode_with_its_batch_size(
        tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = tmp_path / "decode.trace"
    monkeypatch.setenv(decode_trace.ENV, str(trace))
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf))
    try:
        request = GenerateRequest("tiny", "hello there", raw=True,
                                  options={"num_predict": 5, "temperature": 0})
        final = list(runtime.generate(request))[-1]
    finally:
        runtime.close()
    records = decode_trace.read(trace)
    assert [n for _, _, n in records] == [final.prompt_eval_count] + [1] * 4
    assert all(start <= end for start, end, _ in records)
    assert all(a[1] <= b[0] for a, b in zip(records, records[1:], strict=False))

