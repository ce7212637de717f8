"""``locallama eval`` as a user types it, on a tiny model and the bundled samples."""

import json

import pytest

ALL = ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]


@pytest.fixture
def tiny(cli, tmp_path, make_gguf):
    """A tiny model with room for 25-shot prompts in its byte-heavy tokenization."""
    (tmp_path / "Modelfile").write_text(f"FROM {make_gguf(n_ctx_train=16384)}\n")
    assert cli("create", "tiny").returncode == 0
    return "tiny"


def test_eval_on_the_samples_prints_a_table_and_writes_the_results(cli, tmp_path, tiny):
    result = cli("eval", tiny, "--samples", "--limit", "1", "--output", "out.json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "SAMPLE ITEMS (bundled demo data, not the benchmark)"
    assert lines[1].split() == ["TASK", "SHOTS", "METRIC", "N", "VALUE", "STDERR"]
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("arc_challenge", "25", "acc"), ("arc_challenge", "25", "acc_norm"),
        ("hellaswag", "10", "acc"), ("hellaswag", "10", "acc_norm"), ("mmlu", "5", "acc"),
        ("truthfulqa_mc2", "0", "mc2"), ("winogrande", "5", "acc"),
        ("gsm8k", "5", "exact_match_strict"), ("gsm8k", "5", "exact_match_flexible")]
    assert "time left" in result.stderr and "out.json" in result.stderr

    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["schema"] == "locallama.eval/1" and doc["sample"] is True
    assert doc["model"] == "tiny:latest" and doc["digest"].startswith("sha256:")
    assert doc["quantization"] == "F32" and doc["size"] > 0
    assert doc["tasks"] == ALL and doc["limit"] == 1 and doc["seed"] == 1234
    assert doc["shots"] == dict(zip(ALL, [25, 10, 5, 0, 5, 5], strict=True))
    assert doc["options"]["num_ctx"] >= 4096 and doc["num_parallel"] >= 1
    assert set(doc["versions"]) >= {"locallama", "llama_cpp_python", "python"}
    assert doc["results"]["mmlu"]["n"] == 2  # --limit counts per subject
    for task, metrics in doc["results"].items():
        for metric in [m for m in metrics if m != "n" and not m.endswith("_stderr")]:
            assert 0.0 <= metrics[metric] <= 1.0 and f"{metric}_stderr" in metrics
        assert len(doc["records"][task]) == metrics["n"]
    arc = doc["records"]["arc_challenge"][0]
    assert len(arc["logliks"]) == 4 and arc["gold"] == 0 and len(arc["prompt_id"]) == 16
    assert arc["correct"] == (arc["prediction"] == arc["gold"])
    gsm = doc["records"]["gsm8k"][0]
    assert gsm["gold"] == "14" and isinstance(gsm["output"], str)
    assert doc["primary"]["arc_challenge"] == "acc_norm"


def test_eval_json_with_chosen_tasks_shots_and_limit(cli, tiny):
    result = cli("eval", tiny, "--samples", "--tasks", "winogrande,arc_challenge",
                 "--shots", "1", "--limit", "2", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["tasks"] == ["winogrande", "arc_challenge"]
    assert doc["shots"] == {"winogrande": 1, "arc_challenge": 1}
    assert doc["results"]["arc_challenge"]["n"] == 2
    assert doc["results"]["arc_challenge"]["acc_stderr"] is not None


@pytest.mark.parametrize(("args", "message"), [
    (("--tasks", "arc,mmlu"), "unknown task 'arc'"),
    (("--data", "nowhere"), "no data at nowhere"),
    (("--data", ".", "--samples"), "either --data PATH or --samples"),
    (("--samples", "--limit", "0"), "--limit must be at least 1"),
    (("--samples", "--tasks", "winogrande", "--shots", "9"), "9-shot needs 10 examples"),
    ((), "cannot be reached"),
])
def test_bad_input_is_one_line(cli, cli_env, tmp_path, tiny, args, message):
    cli_env.update(LOCALLAMA_HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "c"))
    result = cli("eval", tiny, *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and message in line
    if not args:
        assert "--data PATH" in line and "--samples" in line


def test_an_unknown_model_is_one_line(cli):
    result = cli("eval", "ghost", "--samples", "--tasks", "gsm8k")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: model 'ghost:latest' not found")
