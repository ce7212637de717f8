"""Download throughput of `pull` against a plain `curl` of the same blob, in one run.

The bundled gemma3:270m GGUF is published on the tests' local fake registry
(tests/fakeregistry.py, in a process of its own on 127.0.0.1); each round pulls
it into an empty store (manifest, resumable download, sha256 check, fsync,
rename) and curls the same blob URL into a file.  Prints MB/s for both and the
median ratio pull / curl.

    .venv/bin/python bench/pull_speed.py [--rounds 3]
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

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
SERVE = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from fakeregistry import fake_registry
with fake_registry() as registry:
    registry.add_model("library/bench:latest", Path(sys.argv[2]))
    print(registry.url, flush=True)
    threading.Event().wait()
"""

from fakeregistry import digest_of  # noqa: E402
from locallama.runtime.local import LocalRuntime  # noqa: E402
from locallama.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("curl is not installed")

    source = LocalRuntime(Settings.from_env())
    if not source.store.exists("gemma3:270m"):
        source.pull("gemma3:270m")
    gguf = source.store.get("gemma3:270m").model_path
    source.close()
    size = gguf.stat().st_size

    ours, theirs = [], []
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(TESTS), str(gguf)],
                              stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    blob_url = f"{url}/v2/library/bench/blobs/{digest_of(gguf.read_bytes())}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                store = Path(tmp) / f"store-{round_}"
                runtime = LocalRuntime(Settings(models_dir=store, history_file=Path(tmp) / "h",
                                                registry=url))
                started = time.perf_counter()
                runtime.pull("bench")
                ours.append(size / (time.perf_counter() - started) / 1e6)
                runtime.close()
                shutil.rmtree(store)
                started = time.perf_counter()
                subprocess.run(["curl", "-sS", "-o", str(Path(tmp) / "curl.gguf"), blob_url],
                               check=True)
                theirs.append(size / (time.perf_counter() - started) / 1e6)
    finally:
        server.terminate()
        server.wait()

    print(f"\npull of a {size / 1e6:.0f} MB blob from a registry on 127.0.0.1, "
          f"{args.rounds} rounds (medians)")
    print(f"{'path':<28} {'MB/s':>8}")
    print(f"{'locallama pull':<28} {statistics.median(ours):>8.1f}")
    print(f"{'curl -o FILE':<28} {statistics.median(theirs):>8.1f}")
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"ratio pull / curl: {statistics.median(ratios):.2f} (median of per-round ratios; "
          "pull also hashes the bytes, fsyncs and checks the GGUF)")


if __name__ == "__main__":
    main()
