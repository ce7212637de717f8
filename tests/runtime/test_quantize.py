"""Quantization through llama.cpp's quantizer, stored as a model (create --quantize)."""

import os

import numpy as np
import psutil
import pytest

from imatrix import importance, write_gguf_imatrix, write_legacy_imatrix
from locallama.errors import BadModelFile, InvalidRequest
from locallama.runtime.types import GenerateRequest
from runtimes import add_model, create


def generate(runtime, model):
    chunks = list(runtime.generate(GenerateRequest(
        model, "The cat sat on the", options={"num_predict": 8, "temperature": 0})))
    return "".join(c.text for c in chunks), chunks[-1]


def blobs(tmp_path):
    return sorted(p.name for p in (tmp_path / "models" / "blobs").iterdir())


@pytest.mark.parametrize("qtype", ["Q4_K_M", "Q8_0"])
def test_a_quantized_model_is_stored_smaller_and_generates(runtime, tmp_path, qtype):
    create(runtime, "small", "FROM tiny\nPARAMETER temperature 0.3\n", tmp_path,
           quantize=qtype.lower())
    small, tiny = runtime.show("small"), runtime.show("tiny")
    assert small.quantization == qtype and tiny.quantization == "F32"
    assert small.size < tiny.size / 3
    assert small.parameters == {"temperature": 0.3}  # the rest of the model comes along
    assert small.template == tiny.template
    text, final = generate(runtime, "small")
    assert text and final.eval_count == 8


def test_q8_0_stays_closer_to_the_original_than_q4_0(runtime, tmp_path):
    create(runtime, "q8", "FROM tiny\n", tmp_path, quantize="Q8_0")
    create(runtime, "q4", "FROM tiny\n", tmp_path, quantize="Q4_0")

    def logprobs(model):
        chunks = runtime.generate(GenerateRequest(
            model, "The cat sat on the", options={"num_predict": 6, "temperature": 0},
            logprobs=True, top_logprobs=0))
        return np.array([lp.logprob for c in chunks for lp in (c.logprobs or [])])

    base = logprobs("tiny")
    assert np.abs(logprobs("q8") - base).mean() < np.abs(logprobs("q4") - base).mean()


def test_quantizing_a_file_stores_only_the_result(runtime, tmp_path, make_gguf):
    source = make_gguf("f32.gguf", seed=5)
    events = []
    add_model(runtime, "fromfile", source, progress=events.append, quantize="q8_0")
    from locallama.store.blobs import digest_file

    assert f"sha256-{digest_file(source)[7:]}" not in blobs(tmp_path)
    bars = [e for e in events if e.status == "quantizing F32 to Q8_0"]
    assert bars and all(e.total for e in bars)
    assert bars[-1].completed == bars[-1].total
    assert [e.completed for e in bars] == sorted(e.completed for e in bars)
    report = next(e.status for e in events if e.status.startswith("quantized "))
    assert "F32" in report and "Q8_0" in report and "bpw" in report
    assert not [n for n in blobs(tmp_path) if "partial" in n]


def test_requantizing_warns_and_works(runtime, tmp_path):
    create(runtime, "q8", "FROM tiny\n", tmp_path, quantize="q8_0")
    events = []
    create(runtime, "q4", "FROM q8\n", tmp_path, events.append, quantize="q4_0")
    assert any(e.status.startswith("warning: requantizing a Q8_0 model") for e in events)
    assert runtime.show("q4").quantization == "Q4_0"
    assert generate(runtime, "q4")[0]


@pytest.mark.parametrize("qtype, imatrix, error, match", [
    ("q9_x", None, InvalidRequest, "unknown quantization type 'q9_x'"),
    ("IQ2_XXS", None, InvalidRequest, "needs an importance matrix"),
    ("q4_0", "garbage", BadModelFile, "not an importance matrix"),
])
def test_a_refused_quantization_leaves_the_store_as_it_was(runtime, tmp_path, qtype, imatrix,
                                                          error, match):
    path = None
    if imatrix:
        path = tmp_path / "bad.imatrix"
        path.write_bytes(b"\x07\x00\x00\x00 not really")
    before = blobs(tmp_path)
    with pytest.raises(error, match=match):
        create(runtime, "never", "FROM tiny\n", tmp_path, quantize=qtype, imatrix=path)
    assert blobs(tmp_path) == before and not runtime.store.exists("never")


def test_an_importance_matrix_steers_the_rounding(runtime, tmp_path):
    create(runtime, "plain", "FROM tiny\n", tmp_path, quantize="q4_0")
    weights = importance(1)
    create(runtime, "weighted", "FROM tiny\n", tmp_path, quantize="q4_0",
           imatrix=write_gguf_imatrix(tmp_path / "m.gguf", weights))
    create(runtime, "legacy", "FROM tiny\n", tmp_path, quantize="q4_0",
           imatrix=write_legacy_imatrix(tmp_path / "m.dat", weights))
    plain, weighted = runtime.show("plain").digest, runtime.show("weighted").digest
    assert weighted != plain  # the importance changed which values the blocks kept
    assert runtime.show("legacy").digest == weighted  # both formats mean the same
    assert generate(runtime, "weighted")[0]


def _fake_quantizer(tmp_path, monkeypatch, body: str) -> None:
    """The quantizer child replaced by a shell script (``body``), so its end can be
    chosen: the parent starts ``sys.executable -m locallama.engine.quantize …``."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr("locallama.engine.quantize.sys.executable", str(script))


def test_a_quantizer_that_aborts_takes_nothing_else_with_it(runtime, tmp_path, monkeypatch):
    """llama.cpp's quantizer runs in a child: when it aborts, create fails with the
    signal in one line, the store is unchanged, and this process goes on serving."""
    before = blobs(tmp_path)
    _fake_quantizer(tmp_path, monkeypatch, 'echo "GGML_ASSERT(n > 0) failed" >&2; kill -ABRT $$')
    with pytest.raises(BadModelFile) as caught:
        create(runtime, "small", "FROM tiny\n", tmp_path, quantize="q8_0")
    assert "SIGABRT" in str(caught.value) and "GGML_ASSERT(n > 0) failed" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert blobs(tmp_path) == before
    assert [e.name.display for e in runtime.list()] == ["tiny:latest"]
    monkeypatch.undo()
    assert generate(runtime, "tiny")[1].eval_count == 8


def test_a_client_gone_during_quantization_stops_the_quantizer(runtime, tmp_path,
                                                               monkeypatch):
    """When the progress callback raises (the client went away), the child is killed
    at once, not left quantizing for nobody."""
    import time

    from locallama.errors import Cancelled

    _fake_quantizer(tmp_path, monkeypatch, "sleep 60")
    seen: list[object] = []

    def progress(event) -> None:
        seen.append(event)
        if event.total and event.completed is not None and len(seen) > 2:
            raise Cancelled("the client went away")

    started = time.monotonic()
    with pytest.raises(Cancelled):
        create(runtime, "small", "FROM tiny\n", tmp_path, quantize="q8_0", progress=progress)
    assert time.monotonic() - started < 30  # not the child's 60 s (loaded machines are slow)

    def quantizer_alive() -> list:  # a killed child is a zombie until it is reaped
        return [p for p in psutil.process_iter(["cmdline", "status", "ppid"])
                if p.info["cmdline"] == ["sleep", "60"]
                and p.info["ppid"] in (1, os.getpid())
                and p.info["status"] != psutil.STATUS_ZOMBIE]

    deadline = time.monotonic() + 10
    while quantizer_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not quantizer_alive()
    assert [e.name.display for e in runtime.list()] == ["tiny:latest"]
