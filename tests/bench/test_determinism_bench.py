"""bench/determinism.py on the tiny model: every combination of flash attention and
repacking is loaded as asked, measured at 1 and 2 streams, scored for perplexity and
checked for batching; the table shows each one."""

from __future__ import annotations

import sys
from pathlib import Path

from runtimes import local_runtime

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import determinism  # noqa: E402


def test_one_round_on_the_tiny_model(tmp_path: Path, tiny_gguf: Path) -> None:
    local_runtime(tmp_path, ("tiny", tiny_gguf)).close()
    out = determinism.run(tmp_path / "models", "tiny", rounds=1, threads=1, tokens=4,
                          ctx=128, check_tokens=4, ppl_ctx=32, streams=2, quiet=0,
                          text="the cat sat on the mat and the dog sat on the log " * 20,
                          log=lambda *a, **k: None)

    names = [determinism.label(c) for c in determinism.CONFIGS]
    [figures] = out["rounds"]
    assert list(figures) == names and list(out["perplexity"]) == names
    for name in names:
        for streams in ("1", "2"):
            assert figures[name][streams]["tokens"] > 0 and figures[name][streams]["tok_s"] > 0
        assert out["perplexity"][name] > 1
        assert set(out["batching"][name]) == {"text", "logprobs", "same"}
    # F32 weights, flash attention off: batching does not change the text (the
    # default's promise; the last bits of a logprob may move with the batch's shape)
    assert out["batching"][names[0]]["text"] is True
    assert out["batching"][names[0]]["same"] == 2  # both answers
    table = determinism.table(out, streams=2)
    assert all(name in table for name in names)
