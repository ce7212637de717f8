"""perplexity, bench and report as a user types them: files in, a table and a chart out."""

import json
import random


def no_traceback(result):
    assert "Traceback" not in result.stdout + result.stderr


def test_perplexity_bench_report(cli, tmp_path, tiny_gguf):
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\n")
    assert cli("create", "tiny").returncode == 0
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "house", "near"]
    (tmp_path / "text.txt").write_text(" ".join(rng.choice(words) for _ in range(300)))
    (tmp_path / "short.txt").write_text("the cat sat on the mat")

    ppl = cli("perplexity", "tiny", "text.txt", "--ctx", "64", "-t", "1", "-o", "ppl.json")
    assert ppl.returncode == 0, ppl.stderr
    assert "tiny:latest: perplexity " in ppl.stdout and "chunks of 64 tokens" in ppl.stdout
    assert "[1]" in ppl.stderr  # the running value after each chunk, as llama.cpp prints
    saved = json.loads((tmp_path / "ppl.json").read_text())
    assert saved["kind"] == "perplexity" and saved["ctx"] == 64 and saved["perplexity"] > 1

    bench = cli("bench", "tiny", "-p", "16", "-n", "4", "-r", "2", "--concurrency", "2",
                "-o", "bench.json")
    assert bench.returncode == 0, bench.stderr
    header, *rows = bench.stdout.strip().splitlines()
    assert header.split() == ["MODEL", "SIZE", "PARAMS", "THREADS", "STREAMS", "TEST", "T/S"]
    assert [r.split()[0] for r in rows] == ["tiny:latest"] * 2 and "pp16" in rows[0]
    (result,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [t["test"] for t in result["tests"]] == ["pp16", "tg4"]
    assert result["concurrency"] == 2 and result["tests"][0]["tokens"] == 32

    shown = cli("report", "ppl.json", "bench.json", "-o", "chart.png")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:4] == ["MODEL", "QUANT", "SIZE", "MEMORY"]
    assert lines[1].startswith("tiny:latest") and "F32" in lines[1]
    assert f"{saved['perplexity']:.4f}" in lines[1]
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


    for args, message in [(("perplexity", "tiny", "short.txt"), "needs at least 1024"),
                          (("bench", "tiny", "-r", "0"), "-r must be at least 1")]:
        assert_one_line_error(cli(*args), message)


def test_errors_are_one_line(cli):
    assert_one_line_error(cli("perplexity", "tiny", "missing.txt"), "no file at missing.txt")
    assert_one_line_error(cli("report", "nothing.json"), "no result file at nothing.json")


def assert_one_line_error(result, message: str) -> None:
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert message in result.stderr, result.stderr
    no_traceback(result)
