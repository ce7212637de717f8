"""Scoring on the tiny fixture model: the metrics follow log-likelihoods computed
here by other roads, a plain llama-cpp-python evaluation of the same tokens and the
server's /v1/completions with echo and logprobs."""

import math

import httpx
import llama_cpp
import numpy as np
import pytest

from liveserver import serve
from locallama.errors import InvalidRequest
from locallama.evals import harness, metrics
from locallama.evals.benchmarks import TASKS
from locallama.evals.fewshot import build_items
from runtimes import local_runtime

OPTIONS = {"num_ctx": 2048}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, tiny_gguf):
    rt = local_runtime(tmp_path_factory.mktemp("eval"), ("tiny", tiny_gguf))
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def llm(tiny_gguf):
    model = llama_cpp.Llama(str(tiny_gguf), n_ctx=2048, n_batch=2048, logits_all=True,
                            verbose=False)
    yield model
    model.close()


def split(llm: llama_cpp.Llama, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """The harness's split, done here: the context alone (with BOS), then what the
    whole text adds."""
    head = llm.tokenize(context.encode(), add_bos=True)
    whole = llm.tokenize((context + continuation).encode(), add_bos=True)
    return head, whole


def direct(llm: llama_cpp.Llama, context: str, continuation: str) -> float:
    """log P(continuation | context) from a plain evaluation of the token list."""
    head, whole = split(llm, context, continuation)
    llm.reset()
    llm.eval(whole)
    logits = np.asarray(llm.scores[: len(whole)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(sum(logprobs[i - 1, whole[i]] for i in range(len(head), len(whole))))


def run(runtime, name: str, docs: list[dict], shots: int = 0, pool=None):
    task = TASKS[name]
    items = build_items(task, docs, pool or [], shots)
    (result,) = harness.evaluate(runtime, "tiny", [harness.TaskRun(task, shots, items, "test")],
                                 OPTIONS)
    return result


WORDS = ["the cat", "a big blue house", "water", "the quick brown fox jumped over the dog",
         "red"]


def arc_doc(i: int, key: str = "A") -> dict:
    return {"id": f"t{i}", "question": f"What did the {WORDS[i % 5]} see?",
            "choices": {"text": WORDS[:4], "label": ["A", "B", "C", "D"]}, "answerKey": key}


def test_acc_and_acc_norm_follow_the_engines_log_likelihoods(runtime, llm):
    docs = [arc_doc(i) for i in range(4)]
    pool = [arc_doc(i + 10) for i in range(4)]
    first = run(runtime, "arc_challenge", docs, shots=2, pool=pool)
    # the right answers, by construction: whatever the model finds most likely
    for doc, lls in zip(docs, first.answers, strict=True):
        doc["answerKey"] = "ABCD"[metrics.argmax(lls)]
    result = run(runtime, "arc_challenge", docs, shots=2, pool=pool)
    assert result.values["acc"] == 1.0
    for item, lls, outcome in zip(result.run.items, result.answers, result.outcomes, strict=True):
        expected = [direct(llm, c, x) for c, x in item.prompt.pairs]
        assert lls == pytest.approx(expected, abs=1e-3)
        norm = metrics.argmax([ll / len(w) for ll, w in zip(expected, WORDS[:4], strict=True)])
        assert outcome.extra["prediction_norm"] == norm
        assert outcome.metrics["acc_norm"] == float(norm == outcome.gold)
    assert result.values["acc_norm"] == np.mean([o.metrics["acc_norm"] for o in result.outcomes])
    assert result.stderrs["acc"] == 0.0


def test_mc2_follows_the_engines_log_likelihoods(runtime, llm):
    docs = [{"question": "Is the sky blue?",
             "mc2_targets": {"choices": [" yes it is", "blue", "no", "the sun is red"],
                             "labels": [1, 1, 0, 0]}},
            {"question": "What is water?", "mc2_targets": {
                "choices": ["water", "a cat", "the house"], "labels": [1, 0, 0]}}]
    result = run(runtime, "truthfulqa_mc2", docs)
    values = []
    for item, doc in zip(result.run.items, docs, strict=True):
        probs = [math.exp(direct(llm, c, x)) for c, x in item.prompt.pairs]
        true = sum(p for p, label in zip(probs, doc["mc2_targets"]["labels"], strict=True)
                   if label)
        values.append(true / sum(probs))
    assert [o.metrics["mc2"] for o in result.outcomes] == pytest.approx(values, abs=1e-4)
    assert result.values["mc2"] == pytest.approx(sum(values) / 2, abs=1e-4)


def test_winogrande_compares_one_continuation_after_two_contexts(runtime, llm):
    docs = [{"sentence": "The cat saw the dog because the _ was big.", "option1": "cat",
             "option2": "dog", "answer": "1"},
            {"sentence": "The house is red and the _ is blue.", "option1": "sky",
             "option2": "water", "answer": "2"}]
    result = run(runtime, "winogrande", docs)
    for item, outcome, doc in zip(result.run.items, result.outcomes, docs, strict=True):
        (c1, x1), (c2, x2) = item.prompt.pairs
        assert x1 == x2 and c1 != c2
        lls = [direct(llm, c1, x1), direct(llm, c2, x2)]
        assert outcome.prediction == metrics.argmax(lls)
        assert outcome.metrics["acc"] == float(metrics.argmax(lls) == int(doc["answer"]) - 1)


def test_eval_log_likelihoods_equal_the_echoed_completion_logprobs(runtime, tmp_path):
    docs = [arc_doc(i) for i in range(2)]
    result = run(runtime, "arc_challenge", docs, shots=1, pool=[arc_doc(7)])
    with serve(runtime, tmp=tmp_path) as url:
        for item, lls in zip(result.run.items, result.answers, strict=True):
            for (context, continuation), ll in zip(item.prompt.pairs, lls, strict=True):
                head = runtime.tokenize("tiny", context)
                whole = runtime.tokenize("tiny", context + continuation)
                r = httpx.post(f"{url}/v1/completions", timeout=60, json={
                    "model": "tiny", "prompt": whole, "max_tokens": 0, "echo": True,
                    "logprobs": 0, "options": OPTIONS})
                r.raise_for_status()
                echoed = r.json()["choices"][0]["logprobs"]["token_logprobs"]
                assert len(echoed) == len(whole)
                assert sum(echoed[len(head):]) == pytest.approx(ll, abs=1e-3)


def test_a_prompt_longer_than_the_model_allows_is_refused_before_scoring(runtime):
    task = TASKS["arc_challenge"]
    long_doc = {**arc_doc(0), "question": "the cat sat on the mat " * 800}
    items = build_items(task, [long_doc], [], 0)
    with pytest.raises(InvalidRequest, match="more than tiny's context length"):
        harness.context_size(runtime, "tiny", [harness.TaskRun(task, 0, items, "test")])
