"""``locallama quantize`` and ``create --quantize`` as a user runs them."""

import json

from tinymodel import write_tiny_gguf


def test_quantize_reports_sizes_and_bits_per_weight(cli, tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    r = cli("quantize", str(source), "tiny:q8_0", "--type", "q8_0", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["before"]["quantization"] == "F32" and report["type"] == "Q8_0"
    assert 0.2 < report["ratio"] < 0.34
    assert report["before"]["bpw"] > 32 > 8 < report["after"]["bpw"] < 12
    assert "quantizing F32 to Q8_0" in r.stderr
    # The quantized model answers (a bounded answer: a random model may never say EOS).
    (tmp_path / "Modelfile").write_text("FROM tiny:q8_0\nPARAMETER num_predict 8\n")
    assert cli("create", "short").returncode == 0
    r = cli("run", "short", "hello")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_create_quantize_requantizes_with_a_warning(cli, tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "Modelfile").write_text(f"FROM {source}\n")
    assert cli("create", "q8", "-q", "Q8_0").returncode == 0
    (tmp_path / "Modelfile").write_text("FROM q8\n")
    r = cli("create", "again", "--quantize", "q4_0")
    assert r.returncode == 0 and "warning: requantizing a Q8_0" in r.stderr
    details = json.loads(cli("show", "again", "--json").stdout)
    assert details["quantization"] == "Q4_0"


def test_a_bad_type_is_one_line_and_stores_nothing(cli, tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    r = cli("quantize", str(source), "x", "-q", "q3_x")
    assert r.returncode == 1 and r.stderr.startswith("Error: unknown quantization type")
    assert len(r.stderr.strip().splitlines()) == 1
    assert json.loads(cli("list", "--json").stdout) == []
    names = cli("quantize", "--list").stdout.split()
    assert {"Q4_K_M", "Q5_K_M", "Q8_0", "Q6_K", "IQ4_XS"} <= set(names)
