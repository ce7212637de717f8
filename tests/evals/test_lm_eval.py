"""lm-evaluation-harness against ``locallama serve``, with no Hugging Face tokenizer:
``lm_eval --model local-completions`` finds the server's tokenizer through
``/tokenizer_info``, ``/tokenize`` and ``/detokenize`` (``tokenizer_backend=remote``)
and scores a local multiple-choice task (``lmeval/tiny_mc.yaml``) through
``/v1/completions`` with echo and logprobs.  Its per-item loglikelihoods and accuracy
must be ``Runtime.score``'s (what ``locallama eval`` uses) on the same pairs.

lm-eval's local-completions sends token ids without a BOS, so the model here adds
none (``tokenizer.ggml.add_bos_token`` false): both sides then score the same tokens.
lm-eval is a test-only dependency; without it the test is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liveserver import free_port, serve
from runtimes import add_model, local_runtime
from tinymodel import write_tiny_gguf

pytest.importorskip("lm_eval")

TASK_DIR = Path(__file__).parent / "lmeval"
TASK = "locallama_tiny_mc"


def test_lm_eval_local_completions_matches_runtime_score(tmp_path: Path):
    gguf = write_tiny_gguf(tmp_path / "nobos.gguf",
                           extra_metadata={"tokenizer.ggml.add_bos_token": False})
    runtime = local_runtime(tmp_path, ("tiny", gguf), host="127.0.0.1", port=free_port())
    # A second model stored: the tokenizer requests name no model, so the harness is
    # pointed at tiny's own base URL (server/model_path.py).
    add_model(runtime, "other", write_tiny_gguf(tmp_path / "other.gguf", seed=7))
    out = tmp_path / "out"
    try:
        with serve(runtime, runtime.settings) as url:
            env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                   "TOKENIZERS_PARALLELISM": "false"}
            run = subprocess.run(
                [sys.executable, "-m", "lm_eval", "--model", "local-completions",
                 "--model_args", f"model=tiny,base_url={url}/model/tiny/v1/completions,"
                 "tokenizer_backend=remote,num_concurrent=1,max_retries=1",
                 "--tasks", TASK, "--include_path", str(TASK_DIR), "--output_path", str(out),
                 "--log_samples", "--batch_size", "1"],
                cwd=TASK_DIR, env=env, capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, run.stderr[-4000:]
        docs = [json.loads(line) for line in (TASK_DIR / "tiny_mc.jsonl").read_text().splitlines()]
        samples_file = next(out.rglob(f"samples_{TASK}_*.jsonl"))
        samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()),
                         key=lambda s: s["doc_id"])
        results_file = next(out.rglob("results_*.json"))
        accuracy = json.loads(results_file.read_text())["results"][TASK]["acc,none"]

        correct = 0
        assert len(samples) == len(docs)
        for doc, sample in zip(docs, samples, strict=True):
            pairs = [(doc["question"], " " + choice) for choice in doc["choices"]]
            scores = runtime.score("tiny", pairs)
            theirs = [float(resp[0]) for resp in sample["filtered_resps"]]
            ours = [s.logprob for s in scores]
            assert theirs == pytest.approx(ours, abs=1e-4), doc["question"]
            correct += max(range(len(ours)), key=ours.__getitem__) == doc["answer"]
        assert accuracy == pytest.approx(correct / len(docs))
    finally:
        runtime.close()
