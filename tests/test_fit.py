"""fit: verdicts for fixture models against a stated memory size, specs, speed, machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from locallama import fit, machine
from locallama.errors import InvalidRequest
from locallama.gguf_info import estimate_memory, read_gguf_info


@pytest.fixture
def info(tiny_gguf: Path):
    return read_gguf_info(tiny_gguf)


# -- verdicts ---------------------------------------------------------------------


def test_fits_when_the_total_fits_exactly(info):
    need = estimate_memory(info, 2048).total
    result = fit.assess(info, 2048, budget=need)  # the loader's check: need <= have
    assert result.verdict == fit.FITS and result.max_num_ctx == 2048
    assert result.estimate == estimate_memory(info, 2048)
    assert result.describe() == "fits"


def test_fits_with_a_smaller_context(info):
    budget = estimate_memory(info, 1000).total  # between two steps of 256
    result = fit.assess(info, 2048, budget=budget)
    assert result.verdict == fit.SMALLER_CONTEXT
    best = result.max_num_ctx
    assert best is not None and best % fit.CTX_STEP == 0 and fit.MIN_CTX <= best < 2048
    assert estimate_memory(info, best).total <= budget  # the suggestion really fits
    assert estimate_memory(info, best + fit.CTX_STEP).total > budget  # the next step does not
    assert result.describe() == f"fits at num_ctx {best}"


def test_parallel_sequences_need_more(info):
    budget = estimate_memory(info, 2048).total
    assert fit.assess(info, 2048, budget, num_parallel=4).verdict == fit.SMALLER_CONTEXT


def test_does_not_fit(info):
    smallest = estimate_memory(info, fit.MIN_CTX).total
    result = fit.assess(info, 2048, budget=smallest - 1)
    assert result.verdict == fit.DOES_NOT_FIT and result.max_num_ctx is None
    assert result.describe() == "does not fit"
    row = fit.report("tiny", info, num_ctx=2048, budget=info.tensor_bytes // 2, bandwidth=1e9)
    assert row.fit.verdict == fit.DOES_NOT_FIT and row.tokens_per_second is None


def test_a_small_context_that_fits_is_not_rounded(info):
    assert fit.assess(info, 300, budget=estimate_memory(info, 300).total).verdict == fit.FITS
    assert fit.max_context(info, 300, estimate_memory(info, 299).total) is None


def test_context_defaults_and_caps(make_gguf):
    tiny = read_gguf_info(make_gguf())  # trained for 2048 tokens
    assert fit.context_for(tiny) == 2048  # Ollama's 4096, capped as the loader caps it
    assert fit.context_for(tiny, {"num_ctx": 1024}) == 1024  # the Modelfile's
    assert fit.context_for(tiny, {"num_ctx": 1024}, 512) == 512  # --ctx wins
    long = read_gguf_info(make_gguf(n_ctx_train=32768))
    assert fit.context_for(long) == 4096
    assert fit.context_for(long, {"num_ctx": "8192"}) == 8192


# -- specs ------------------------------------------------------------------------


def test_7b_q4_k_m_is_about_four_gigabytes():
    spec = fit.parse_spec("7b:q4_k_m")
    assert spec.quantization == "Q4_K_M" and spec.parameters == 7_000_000_000
    assert 3.5e9 <= spec.weights <= 4.5e9
    assert not spec.approximate
    # Mistral 7B's shape: 32 layers x 8 KV heads x 128 x (K + V) x f16, per token
    assert estimate_memory(spec.info(), 4096).kv_cache == 4096 * 32 * 8 * 256 * 2


def test_more_bits_and_more_parameters_need_more():
    weights = {s: fit.parse_spec(s).weights
               for s in ("7b:q4_k_m", "7b:q8_0", "7b:f16", "13b:q4_k_m", "70b:q4_k_m")}
    assert weights["7b:q4_k_m"] < weights["7b:q8_0"] < weights["7b:f16"]
    assert weights["7b:q4_k_m"] < weights["13b:q4_k_m"] < weights["70b:q4_k_m"]
    assert fit.parse_spec("0.5b:F16").weights == pytest.approx(1e9, rel=0.01)
    assert fit.parse_spec("500m:q8_0").shape == fit.parse_spec("0.5b:q8_0").shape


def test_every_quant_type_and_aliases():
    for name, bpw in fit.BITS_PER_WEIGHT.items():
        assert fit.parse_spec(f"7b:{name.lower()}").bits_per_weight == bpw
    assert fit.quantization("q4_k") == ("Q4_K_M", fit.BITS_PER_WEIGHT["Q4_K_M"])
    assert fit.quantization("iq2_xxs")[1] < fit.quantization("q2_k")[1]


@pytest.mark.parametrize("text", ["7b:q9_x", "7b:", "7x:q4_k_m", "b:q4_k_m", "7b",
                                  "0b:q4_k_m", "99999b:q4_k_m"])
def test_bad_specs_are_invalid_requests(text):
    with pytest.raises(InvalidRequest) as err:
        fit.parse_spec(text)
    assert "\n" not in str(err.value)
    if text == "7b:q9_x":
        assert "unknown quantization 'q9_x'" in str(err.value) and "Q4_K_M" in str(err.value)


def test_sizes_between_the_table_are_approximate():
    spec = fit.parse_spec("20b:q4_k_m")
    assert spec.approximate and "between" in spec.shape.like
    lo, hi = fit.parse_spec("14b:q4_k_m").shape, fit.parse_spec("27b:q4_k_m").shape
    assert lo.layers <= spec.shape.layers <= hi.layers
    big = fit.parse_spec("1000b:q2_k")
    assert big.approximate and big.shape.layers > fit.parse_spec("405b:q2_k").shape.layers
    assert fit.looks_like_spec("270m:q4_k_m") and not fit.looks_like_spec("gemma3:270m")


def test_spec_report_uses_the_loaders_estimate():
    spec = fit.parse_spec("7b:q4_k_m")
    row = fit.report_spec(spec, num_ctx=4096, budget=8 * 10**9, bandwidth=50e9)
    e = estimate_memory(spec.info(), 4096)
    assert row.fit.estimate == e and row.fit.verdict == fit.FITS
    assert row.kind == "estimate" and row.quantization == "Q4_K_M"
    data = row.to_dict()
    assert data["total"] == e.total and isinstance(data["weights"], int)
    assert data["shape_like"] == "Mistral 7B"


# -- speed ------------------------------------------------------------------------


def test_speed_is_bandwidth_over_bytes_per_token(info):
    e = estimate_memory(info, 2048)
    assert fit.tokens_per_second(e, 10e9) == pytest.approx(10e9 / (e.weights + e.kv_cache))
    # each of four sequences reads the weights and only its own quarter of the cache
    e4 = estimate_memory(info, 2048, 4)
    assert fit.tokens_per_second(e4, 10e9, 4) == pytest.approx(10e9 / (e.weights + e.kv_cache))
    row = fit.report("tiny", info, num_ctx=2048, budget=e.total, bandwidth=10e9)
    assert row.tokens_per_second == pytest.approx(10e9 / (e.weights + e.kv_cache))


def test_speed_of_a_smaller_context_uses_that_context(info):
    budget = estimate_memory(info, 1000).total
    row = fit.report("tiny", info, num_ctx=2048, budget=budget, bandwidth=10e9)
    at = estimate_memory(info, row.fit.max_num_ctx)
    assert row.tokens_per_second == pytest.approx(10e9 / (at.weights + at.kv_cache))


# -- memory sizes -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("8GB", 8 * 10**9), ("8 GiB", 8 * 2**30), ("512MB", 512 * 10**6), ("512mib", 512 * 2**20),
    ("1.5T", 1.5e12), ("16g", 16 * 10**9), ("100", 100), ("2048 KB", 2_048_000),
])
def test_parse_size(text, expected):
    assert fit.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "8 XB", "0GB", "", "-1GB", "8GBs"])
def test_bad_sizes(text):
    with pytest.raises(InvalidRequest):
        fit.parse_size(text)


# -- the machine ------------------------------------------------------------------


def _fake_nvidia_smi(folder: Path, script: str, monkeypatch) -> None:
    folder.mkdir(exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


def test_gpus_from_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path / "bin", """\
case "$*" in *--query-gpu=name,memory.total,memory.free*) ;; *) exit 9 ;; esac
echo 'NVIDIA GeForce RTX 4090, 24564, 23000'
echo 'NVIDIA H100 80GB HBM3, 81559, 81000'
echo 'NVIDIA GB10, [N/A], [N/A]'
""", monkeypatch)
    gpus = machine.detect_gpus()
    assert gpus == (machine.GPU("NVIDIA GeForce RTX 4090", 24564 << 20, 23000 << 20),
                    machine.GPU("NVIDIA H100 80GB HBM3", 81559 << 20, 81000 << 20))
    m = machine.detect(bandwidth=20e9)
    assert m.gpus == gpus and m.gpu_memory_free == (23000 + 81000) << 20
    assert m.bandwidth == 20e9 and not m.bandwidth_measured


def test_no_gpu_when_nvidia_smi_is_absent_or_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert machine.detect_gpus() == ()
    _fake_nvidia_smi(tmp_path / "bin", "echo 'NVIDIA-SMI has failed' >&2\nexit 9\n", monkeypatch)
    assert machine.detect_gpus() == ()
    _fake_nvidia_smi(tmp_path / "bin", "echo garbage\n", monkeypatch)
    assert machine.detect_gpus() == ()
    _fake_nvidia_smi(tmp_path / "bin", "exec sleep 5\n", monkeypatch)
    monkeypatch.setattr(machine, "NVIDIA_SMI_TIMEOUT", 0.2)
    assert machine.detect_gpus() == ()


def test_gpu_verdict_is_against_free_gpu_memory(info):
    e = estimate_memory(info, 2048)
    row = fit.report("tiny", info, num_ctx=2048, budget=e.total, bandwidth=1e9,
                     gpu_budget=e.total - 1)
    assert row.fit.verdict == fit.FITS and row.gpu is not None
    assert row.gpu.verdict == fit.SMALLER_CONTEXT
    assert row.to_dict()["gpu"]["verdict"] == fit.SMALLER_CONTEXT


def test_measured_bandwidth_is_plausible():
    bandwidth = machine.measure_bandwidth(8 << 20, threads=2, seconds=0.05)
    assert 1e8 < bandwidth < 1e13
