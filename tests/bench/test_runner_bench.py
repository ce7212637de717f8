"""bench/runner.py measures what it says, on the tiny model: the "process" mode's model
runs in a runner of its own and the "inprocess" one here, both modes stream the
same tokens, and a create whose check verdict is cached skips the check's child."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

from runtimes import local_runtime

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import runner as runner_bench  # noqa: E402


def test_one_round_on_the_tiny_model(tmp_path: Path, tiny_gguf: Path) -> None:
    local_runtime(tmp_path, ("tiny", tiny_gguf)).close()
    lines: list[str] = []
    out = runner_bench.run(tmp_path / "models", "tiny", rounds=1, threads=1, tokens=4,
                           streams=2, ctx=256, work=tmp_path / "work",
                           log=lambda *a, **k: lines.append(" ".join(map(str, a))))

    settings = out["settings"]
    assert settings["process_pid"] not in (None, os.getpid())  # a runner
    assert settings["inprocess_pid"] is None  # loaded in this process
    [figures] = out["rounds"]
    for mode in runner_bench.MODES:
        for streams in ("1", "2"):
            wave = figures[mode][streams]
            assert wave["tokens"] > 0 and wave["tok_s"] > 0 and wave["engine_tok_s"] > 0
            assert wave["cpu_ms_per_token"] > 0
        assert figures[mode]["cold"]["load"] > 0  # it really was loaded again
        assert figures[mode]["cold"]["ttft"] >= figures[mode]["cold"]["load"]
    for streams in ("1", "2"):  # seeded and greedy: the same work in both modes
        assert figures["process"][streams]["tokens"] == figures["inprocess"][streams]["tokens"]
    check = figures["check"]
    assert all(check[k] > 0 for k in ("check", "bare_load", "create", "create_cached"))
    # the cached verdict saves the check's child (a Python start and a load)
    assert check["create_cached"] < check["create"]
    assert lines == ["round 1/1 done"]

    table = runner_bench.table(out).splitlines()
    decode = next(line for line in table if line.startswith("decode, 2 streams"))
    assert decode.split()[-4] == "tok/s"
    assert math.isfinite(float(decode.split()[-1]))  # the ratio
    assert any(line.startswith("create FROM file, verdict cached") for line in table)


def test_cpu_time_counts_the_runner_processes() -> None:
    """A runner's CPU time is its own process's: cpu_seconds adds it to this one's."""
    burn = ("import sys, time\nend = time.process_time() + 0.3\n"
            "while time.process_time() < end: pass\nprint(flush=True)\nsys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()  # it has burnt its 0.3 s and waits
        mine = time.process_time()
        assert runner_bench.cpu_seconds([child.pid]) - mine >= 0.25
        assert runner_bench.cpu_seconds([]) - mine < 0.25
    finally:
        child.communicate("")
