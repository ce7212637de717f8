"""What an image costs: Gemma 3 270M (the bundled model) with a random-weight Gemma 3
type projector of Gemma 3's own geometry (896 x 896 images, 14-pixel patches, 256
image tokens), so the language model evaluates exactly what a real Gemma 3 vision
model's image gives it; the vision encoder itself is a one-block toy (a real SigLIP
encoder costs far more: that part is not measured here).

Two tables from one run, ratios side by side:

1. prompt evaluation: the same chat message with and without an image (tokens, ms,
   and the image's share).
2. two greedy text streams decoding together: alone, while requests with a text
   prompt as long as the image's arrive back to back on the other slots, and while
   image requests do; the streams' tokens/s, and image / text: whether an image's
   chunk costs the running streams more than a text prompt of its size.

    nice -n 10 .venv/bin/python bench/vision.py [--threads 2] [--tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from locallama.runtime.local import LocalRuntime  # noqa: E402
from locallama.runtime.types import ChatRequest, Message  # noqa: E402
from locallama.settings import Settings  # noqa: E402
from locallama.store.modelfile import parse_modelfile  # noqa: E402
from tinyvision import png_bytes, write_tiny_projector  # noqa: E402

BASE = "gemma3:270m"
N_EMBD = 640  # Gemma 3 270M's embedding size


def final(runtime: LocalRuntime, request: ChatRequest):
    *_, last = runtime.chat(request)
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="vision-bench-"))
    runtime = LocalRuntime(Settings(models_dir=home / "models", history_file=home / "h",
                                    num_parallel=4))
    try:
        runtime.pull(BASE)
        projector = write_tiny_projector(home / "mmproj.gguf", projection_dim=N_EMBD,
                                         image_size=896, patch_size=14)
        runtime.create("seer", parse_modelfile(f"FROM {BASE}\nFROM {projector}\n"), home)
        options = {"temperature": 0, "num_thread": args.threads, "num_ctx": 1024}
        pictures = [base64.b64encode(png_bytes(seed, size=896)).decode() for seed in range(64)]
        counter = iter(range(10**6))

        def ask(images: bool, text: str = "Describe the picture in one line.",
                tokens: int = 1) -> object:
            image = [pictures[next(counter) % len(pictures)]] if images else []
            return final(runtime, ChatRequest("seer", [Message("user", text, image)],
                                              {**options, "num_predict": tokens}))

        ask(True)  # load, warm up
        plain, seen = [], []
        for _ in range(args.rounds):
            plain.append(ask(False, text=f"Describe the picture. {next(counter)}"))
            seen.append(ask(True))
        p_ms = statistics.median(c.prompt_eval_duration for c in plain) / 1e6
        i_ms = statistics.median(c.prompt_eval_duration for c in seen) / 1e6
        print("prompt evaluation (median of rounds)")
        print(f"{'prompt':<16}{'tokens':>8}{'ms':>10}")
        print(f"{'text':<16}{plain[0].prompt_eval_count:>8}{p_ms:>10.1f}")
        print(f"{'text + image':<16}{seen[0].prompt_eval_count:>8}{i_ms:>10.1f}")
        print(f"image / text time: {i_ms / p_ms:.2f}\n")

        long_text = " ".join(["picture"] * (seen[0].prompt_eval_count - 12))

        def streams(load: str) -> float:
            """Tokens/s of two text streams decoding together, with ``load`` ("none",
            "text" or "image") requests arriving back to back on two other slots."""
            stop = threading.Event()
            done: list = []

            def stream(i: int) -> None:
                done.append(ask(False, text=f"Tell a long story number {i} {next(counter)}.",
                                tokens=args.tokens))

            def others() -> None:
                while not stop.is_set():
                    if load == "image":
                        ask(True)
                    else:
                        ask(False, text=f"{next(counter)} {long_text}")

            extra = [threading.Thread(target=others) for _ in range(0 if load == "none" else 2)]
            for t in extra:
                t.start()
            time.sleep(0 if load == "none" else 0.2)  # the other requests are under way
            started = time.perf_counter()
            texts = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
            for t in texts:
                t.start()
            for t in texts:
                t.join()
            wall = time.perf_counter() - started
            stop.set()
            for t in extra:
                t.join()
            return sum(c.eval_count for c in done) / wall

        rates: dict[str, list[float]] = {"none": [], "text": [], "image": []}
        for _ in range(args.rounds):
            for load in rates:  # interleaved, so noise hits all three alike
                rates[load].append(streams(load))
        a, t, i = (statistics.median(rates[k]) for k in ("none", "text", "image"))
        print(f"two text streams (median of rounds, tokens/s over both); the other "
              f"requests' prompts: {seen[0].prompt_eval_count} positions")
        print(f"{'alone':>8}{'+ long text':>13}{'+ images':>10}{'image/text':>12}")
        print(f"{a:>8.1f}{t:>13.1f}{i:>10.1f}{i / t:>12.2f}")
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
