"""report: stored eval, perplexity and bench results side by side, table and PNG."""

import json
from pathlib import Path

import pytest

from locallama.errors import InvalidRequest
from locallama.evals.report import load_report, main_metric, render_chart, table

Q4, Q8 = "sha256:" + "4" * 64, "sha256:" + "8" * 64


def bench_file(digest: str, name: str, quant: str, pp: float, tg: float) -> dict:
    def test(label: str, rate: float) -> dict:
        return {"test": label, "n_prompt": 512 if label.startswith("pp") else 0,
                "n_gen": 128 if label.startswith("tg") else 0, "concurrency": 1,
                "repetitions": 5, "tokens_per_second": rate, "stddev": rate / 50,
                "samples": [rate] * 5, "stream_tokens_per_second": rate, "tokens": 512}

    return {"kind": "bench", "options": {}, "versions": {}, "results": [{
        "model": name, "digest": digest, "quantization": quant, "size": 250_000_000,
        "parameters": 268_000_000, "memory": 860_000_000, "threads": 2, "concurrency": 1,
        "tests": [test("pp512", pp), test("tg128", tg)], "warnings": []}]}


def write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    eval_q4 = {"schema": "locallama.eval/1", "sample": True, "model": "gemma3:270m",
               "digest": Q4, "quantization": "Q4_K_M", "size": 253_113_563,
               "primary": {"arc_challenge": "acc_norm", "gsm8k": "exact_match_strict"},
               "results": {
                   "arc_challenge": {"acc": 0.25, "acc_stderr": 0.04, "acc_norm": 0.3,
                                     "acc_norm_stderr": 0.05, "n": 20},
                   "gsm8k": {"exact_match_strict": 0.1, "exact_match_strict_stderr": 0.02,
                             "exact_match_flexible": 0.2,
                             "exact_match_flexible_stderr": 0.03, "n": 10}}}
    ppl_q4 = {"kind": "perplexity", "model": "gemma3:270m", "digest": Q4,
              "quantization": "Q4_K_M", "size": 253_113_563, "parameters": 268_098_176,
              "memory": 864_199_168, "file": "/data/wiki.test.raw", "ctx": 512,
              "perplexity": 31.25, "perplexity_stderr": 0.75, "chunks": 8}
    return [write(tmp_path, "eval-q4.json", eval_q4),
            write(tmp_path, "ppl-q4.json", ppl_q4),
            write(tmp_path, "bench.json", bench_file(Q4, "gemma3:270m", "Q4_K_M", 400, 40)),
            write(tmp_path, "bench-q8.json", bench_file(Q8, "gemma3:270m-q8", "Q8_0", 350, 30))]


def test_results_are_grouped_by_digest_and_set_side_by_side(files):
    # later files win where two say the same thing: the bench file's size and memory
    report = load_report(files, memory_for=lambda digest: None)
    assert [r.name for r in report.rows] == ["gemma3:270m", "gemma3:270m-q8"]
    q4, q8 = report.rows
    assert q4.sources == ["eval-q4.json", "ppl-q4.json", "bench.json"]
    assert q4.tasks["arc_challenge"].metric == "acc_norm"
    assert q4.tasks["gsm8k"].metric == "exact_match_strict"
    assert q4.perplexity.value == 31.25 and q4.perplexity.file == "wiki.test.raw"
    assert q8.perplexity is None and q8.tasks == {} and q8.tg.tokens_per_second == 30

    header, first, second = table(report)
    assert header == ("MODEL", "QUANT", "SIZE", "MEMORY", "pp512 t/s", "tg128 t/s",
                      "PERPLEXITY", "ARC_CHALLENGE", "GSM8K")
    assert first == ("gemma3:270m", "Q4_K_M", "250 MB", "860 MB", "400.00 ± 8.00",
                     "40.00 ± 0.80", "31.2500 ± 0.7500", "30.0 ± 5.0", "10.0 ± 2.0")
    assert second[:2] == ("gemma3:270m-q8", "Q8_0") and second[-3:] == ("-", "-", "-")
    notes = " ".join(report.notes)
    assert "wiki.test.raw at a context of 512" in notes and "sample sets" in notes
    assert "arc_challenge acc_norm" in notes


def test_the_chart_is_a_png(files, tmp_path):
    report = load_report(files)
    path = render_chart(report, tmp_path / "out" / "chart.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_a_model_with_only_bench_results(tmp_path):
    path = write(tmp_path, "b.json", bench_file(Q8, "solo", "Q8_0", 100, 10))
    report = load_report([path], memory_for=lambda digest: 123)
    (row,) = report.rows
    assert table(report)[1][-1] == "-" and row.memory == 860_000_000
    assert render_chart(report, tmp_path / "c.png").stat().st_size > 0


def test_memory_comes_from_the_lookup_when_results_lack_it(tmp_path):
    data = {"model": "m", "digest": Q4, "quantization": "Q8_0", "size": 10,
            "results": {"winogrande": {"acc": 0.5, "acc_stderr": None}}}
    report = load_report([write(tmp_path, "e.json", data)], memory_for=lambda d: 2_000_000)
    assert report.rows[0].memory == 2_000_000
    assert table(report)[1][-1] == "50.0"  # no standard error under two items


def test_two_digests_under_one_name_are_told_apart(tmp_path):
    a = write(tmp_path, "a.json", bench_file(Q4, "same", "Q4_K_M", 1, 1))
    b = write(tmp_path, "b.json", bench_file(Q8, "same", "Q8_0", 1, 1))
    names = [r.name for r in load_report([a, b]).rows]
    assert names == ["same (444444444444)", "same (888888888888)"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "no result file"), ("not json", "not a JSON result"),
    ("[1, 2]", "not a result"), ('{"hello": 1}', "not a result"),
])
def test_bad_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidRequest, match=message):
        load_report([path])


def test_main_metric_prefers_the_leaderboards():
    assert main_metric({"acc": 0.1, "acc_norm": 0.2, "acc_norm_stderr": 0.0}) == "acc_norm"
    assert main_metric({"mc2": 0.4, "n": 3}) == "mc2"
    assert main_metric({"exact_match_flexible": 0.1, "exact_match_strict": 0.1}) == \
        "exact_match_strict"
    assert main_metric({"n": 3}) is None
