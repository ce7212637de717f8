"""bench/batch_padding.py's bare table: one median step time for every k of the
sequences generating, and for a step with a gap as llama.cpp splits it and padded,
from a model loaded as `locallama serve` loads it."""

from __future__ import annotations

import sys
from pathlib import Path

from tinymodel import write_tiny_gguf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import batch_padding  # noqa: E402


def test_the_bare_table_has_a_step_time_for_every_k_and_the_gap(tmp_path: Path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    times = batch_padding.step_times(str(gguf), threads=2, parallel=6, rounds=1)
    assert set(times) == {1, 2, 3, 4, 5, 6, "gap", "filled"}
    assert all(0 < ms < 5000 for ms in times.values())
