"""``locallama fit`` as a user types it: stored models and SIZE:QUANT specs."""

import json

from locallama.gguf_info import estimate_memory, read_gguf_info


def one_line_error(result, message):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines


def test_fit_json_for_a_stored_model_and_specs(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\nPARAMETER num_ctx 1024\n")
    assert cli("create", "tiny:v1").returncode == 0
    e = estimate_memory(read_gguf_info(tiny_gguf), 1024)  # the Modelfile's num_ctx

    result = cli("fit", "--json", "--memory", "5GB", "--bandwidth", "10",
                 "tiny:v1", "7b:q4_k_m", "70b:q4_k_m")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["budget"] == 5 * 10**9 and data["budget_source"] == "--memory"
    assert data["machine"]["bandwidth"] == 10 * 10**9
    assert data["machine"]["bandwidth_measured"] is False
    assert data["machine"]["ram_total"] > 0 and data["machine"]["cpu_cores"] >= 1
    tiny, seven, seventy = data["models"]

    assert tiny["model"] == "tiny:v1" and tiny["kind"] == "model"
    assert tiny["quantization"] == "F32" and tiny["num_ctx"] == 1024
    assert (tiny["weights"], tiny["kv_cache"], tiny["total"]) == (e.weights, e.kv_cache, e.total)
    assert tiny["verdict"] == "fits" and tiny["max_num_ctx"] == 1024
    assert tiny["tokens_per_second"] == round(10e9 / (e.weights + e.kv_cache), 2)

    # 7B Q4_K_M at 4096 needs about 5.1 GB: in 5 GB only with a smaller context
    assert seven["kind"] == "estimate" and seven["num_ctx"] == 4096
    assert 3.5e9 < seven["weights"] < 4.5e9 and seven["total"] > 5 * 10**9
    assert seven["verdict"] == "fits with a smaller context"
    assert 512 <= seven["max_num_ctx"] < 4096 and seven["max_num_ctx"] % 256 == 0
    assert seventy["verdict"] == "does not fit" and seventy["tokens_per_second"] is None


def test_fit_table_every_stored_model(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\n")
    assert cli("create", "tiny").returncode == 0
    result = cli("fit", "--memory", "8 GiB", "--bandwidth", "25", "--ctx", "512")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("This machine: ") and "25.0 GB/s (given)" in lines[0]
    assert "8.6 GB (--memory)" in lines[1]
    header = next(line for line in lines if line.startswith("MODEL"))
    for column in ("QUANT", "CTX", "WEIGHTS", "KV CACHE", "TOTAL", "VERDICT", "EST. SPEED"):
        assert column in header
    row = next(line for line in lines if line.startswith("tiny:latest"))
    assert " F32 " in row and " 512 " in row and "fits" in row and "tok/s" in row


def test_fit_with_an_empty_store_says_what_to_do(cli):
    result = cli("fit", "--bandwidth", "10")
    assert result.returncode == 0, result.stderr
    assert "No models in the store" in result.stdout and "7b:q4_k_m" in result.stdout


def test_fit_errors_are_one_line(cli):
    one_line_error(cli("fit", "--bandwidth", "10", "7b:q9_x"), "unknown quantization 'q9_x'")
    one_line_error(cli("fit", "--bandwidth", "10", "ghost"), "model 'ghost:latest' not found")
    one_line_error(cli("fit", "--bandwidth", "10", "--memory", "lots", "7b:q4_k_m"),
                   "memory size")
    one_line_error(cli("fit", "--bandwidth", "0", "7b:q4_k_m"), "--bandwidth")


def test_a_stored_model_wins_over_a_spec_of_the_same_name(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\n")
    assert cli("create", "7b:q4_k_m").returncode == 0
    result = cli("fit", "--json", "--bandwidth", "10", "--parallel", "2", "7b:q4_k_m")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["models"]
    assert row["kind"] == "model" and row["quantization"] == "F32"
    assert row["num_parallel"] == 2 and row["num_ctx"] == 2048  # capped at training length


def test_fit_with_a_quantized_kv_cache(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\nPARAMETER kv_cache_type q8_0\n")
    assert cli("create", "tiny:q8").returncode == 0
    f16 = estimate_memory(read_gguf_info(tiny_gguf), 2048).kv_cache  # its training context

    result = cli("fit", "--json", "--bandwidth", "10", "tiny:q8", "1b:q4_0")
    assert result.returncode == 0, result.stderr
    stored, spec = json.loads(result.stdout)["models"]
    assert stored["kv_cache_type"] == "q8_0"  # the model's own
    assert stored["kv_cache"] == int(f16 * 34 / 64)
    assert spec["kv_cache_type"] == "f16"  # LOCALLAMA_KV_CACHE_TYPE's default

    result = cli("fit", "--json", "--bandwidth", "10", "--kv-cache-type", "q4_0", "tiny:q8")
    assert json.loads(result.stdout)["models"][0]["kv_cache"] == int(f16 * 18 / 64)
    text = cli("fit", "--bandwidth", "10", "--kv-cache-type", "q4_0", "tiny:q8").stdout
    assert "(q4_0)" in text
    one_line_error(cli("fit", "--kv-cache-type", "q5_1", "tiny:q8"), "f16, q8_0, q4_0")
