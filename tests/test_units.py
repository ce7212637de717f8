"""locallama.units: sizes and counts as Ollama and llama-bench print them, sizes as typed."""

from __future__ import annotations

import pytest

from locallama.units import (
    GIB,
    KIB,
    MIB,
    format_bench_parameter_count,
    format_binary_bytes,
    format_bytes,
    format_parameter_count,
    parse_bytes,
)

# -- bytes, Ollama's way (decimal) ----------------------------------------------------


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (512, "512 B"), (999, "999 B"), (1000, "1 KB"), (1500, "1.5 KB"),
    (999_999, "999 KB"), (10_500_000, "10.5 MB"), (291_000_000, "291 MB"),
    (253_113_024, "253 MB"), (1_000_000_000, "1 GB"), (1_234_567_890, "1.2 GB"),
    (1_500_000_000_000, "1.5 TB"),
])
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(("n", "text"), [
    (1, "1 B"), (KIB, "1.0 KB"), (MIB, "1.0 MB"), (GIB, "1.1 GB"),
    (MIB - 1, "1.0 MB"), (GIB - 1, "1.1 GB"), (16 * GIB, "17.2 GB"),
    (999_999_999, "999 MB"), (99_940_000, "99.9 MB"), (100_000_000, "100 MB"),
])
def test_binary_boundaries_print_as_decimal_units(n: int, text: str) -> None:
    """A GiB is 1.07 GB: Ollama's sizes are decimal, whatever the boundary."""
    assert format_bytes(n) == text


# -- parameter counts ------------------------------------------------------------------


@pytest.mark.parametrize(("n", "text"), [
    (268_098_176, "268.10M"), (6_738_415_616, "6.74B"), (7_000_000_000, "7B"),
    (125_000_000, "125M"), (500_550_000, "500.55M"), (188_352, "188K"), (999, "999"),
])
def test_format_parameter_count(n: int, text: str) -> None:
    assert format_parameter_count(n) == text


@pytest.mark.parametrize(("n", "text"), [
    (270_000_000, "270M"), (1_500_000_000, "1.50B"), (13_000_000_000, "13B"),
    (1_000_000, "1M"), (999_999, "1000K"), (1_000, "1K"), (0, "0"),
    (405_000_000_000, "405B"), (1_000_000_000_000, "1T"),
])
def test_parameter_counts_a_user_reads(n: int, text: str) -> None:
    assert format_parameter_count(n) == text


# -- llama-bench's way -----------------------------------------------------------------


@pytest.mark.parametrize(("n", "text"), [
    (0, "0.00 MiB"), (253_113_024, "241.39 MiB"), (GIB - 1, "1024.00 MiB"),
    (GIB, "1.00 GiB"), (4_920_000_000, "4.58 GiB"),
])
def test_format_binary_bytes(n: int, text: str) -> None:
    assert format_binary_bytes(n) == text


@pytest.mark.parametrize(("n", "text"), [
    (268_098_176, "268.10 M"), (1_500_000_000, "1.50 B"), (13_000_000_000, "13.00 B"),
    (999_999_999, "1000.00 M"),
])
def test_format_bench_parameter_count(n: int, text: str) -> None:
    assert format_bench_parameter_count(n) == text


# -- sizes as typed --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("8GB", 8 * 10**9), ("8 GiB", 8 * GIB), ("512MB", 512 * 10**6), ("512mib", 512 * MIB),
    ("1.5T", 1.5e12), ("16g", 16 * 10**9), ("100", 100), ("2048 KB", 2_048_000),
    ("0", 0), ("1KiB", KIB), ("1k", 1000), (" 4 gi ", 4 * GIB), ("7b", 7),
])
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("n", [0, 512, 1000, 1_500_000, 291_000_000, 4 * 10**9])
def test_what_format_bytes_prints_reads_back(n: int) -> None:
    """Exact where it prints whole units; within its one decimal otherwise."""
    assert parse_bytes(format_bytes(n).replace(" ", "")) == pytest.approx(n, rel=0.05)


@pytest.mark.parametrize("text", ["lots", "8 XB", "", "-1GB", "8GBs", "1.GB", "GB", "1e9"])
def test_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)
