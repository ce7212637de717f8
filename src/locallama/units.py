"""Sizes and counts as people read and write them.

Bytes and parameter counts printed the way Ollama prints them (decimal: "1.2 GB",
"268.10M") or the way llama-bench does (binary: "241.39 MiB", "268.10 M"), and a
size typed by a person ("8GB", "16 GiB") read back into bytes.  The bottom layer:
nothing here imports from locallama, so any module may use it.
"""

from __future__ import annotations

import re

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


def format_bytes(n: int) -> str:
    """Decimal units the way Ollama prints them: "512 B", "1.2 GB", "291 MB"."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale:
            value = n / scale
            if value >= 100 or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{n} B"


def format_parameter_count(n: int) -> str:
    """Parameter counts the way Ollama prints them: "268.10M", "6.74B", "7B"."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.2f}{unit}"
    if n >= 10**3:
        return f"{n / 10**3:.0f}K"
    return str(n)


def format_binary_bytes(n: int) -> str:
    """Binary units the way llama-bench prints a model's size: "241.39 MiB", "4.58 GiB"."""
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.2f} MiB"


def format_bench_parameter_count(n: int) -> str:
    """Parameter counts the way llama-bench prints them: "268.10 M", "8.03 B"."""
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>(?:[kmgt]i?)?b?)", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_bytes(text: str) -> int:
    """Bytes from "8GB", "8 GiB", "512MB", "1.5T" or a plain number of bytes.

    Decimal units (GB = 10^9) as :func:`format_bytes` prints them, with or without
    the B; the "i" forms are binary (GiB = 2^30).  ValueError when ``text`` is not
    a size; the caller words the error and decides whether 0 is allowed.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    unit = match["unit"].lower().removesuffix("b")
    base = 1024 if unit.endswith("i") else 1000
    return int(float(match["number"]) * base ** _POWERS[unit.removesuffix("i")])
