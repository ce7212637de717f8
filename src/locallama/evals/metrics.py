"""Per-item metrics and their aggregation, with lm-evaluation-harness's formulas.

acc compares raw log-likelihoods; acc_norm divides each by its choice's length in
characters; mc2 is the normalised probability mass on the true answers; GSM8k is
exact match on an extracted number.  Standard errors are the harness's: the
sample standard deviation over sqrt(n) for a mean, and the pooled form for a
group (MMLU over its subjects).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# GSM8k: the harness's two filters (regex, then take the first response) ...
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
INVALID = "[invalid]"
# ... and what exact_match ignores in both the prediction and the reference.
IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first on a tie, as numpy's argmax."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def argmax_normalized(logliks: Sequence[float], choices: Sequence[str]) -> int:
    """acc_norm's choice: log-likelihood per character of the choice."""
    return argmax([ll / len(c) if c else ll for ll, c in zip(logliks, choices, strict=True)])


def mc2(logliks: Sequence[float], labels: Sequence[int]) -> float:
    """TruthfulQA mc2: the true answers' share of the probability of all answers.

    As the harness does, the answers before the first false (0) label are the
    true ones."""
    split = list(labels).index(0)
    peak = max(logliks)  # shifted first: long answers' exp() would underflow to 0
    probs = [math.exp(ll - peak) for ll in logliks]
    return sum(probs[:split]) / sum(probs)


def _extract(pattern: re.Pattern[str], text: str, which: int) -> str:
    found = pattern.findall(text)
    if not found:
        return INVALID
    match = found[which]
    if isinstance(match, tuple):
        match = next((m for m in match if m), "")
    return match.strip()


def gsm8k_strict(text: str) -> str:
    """The number after the first "#### " (the training data's answer format)."""
    return _extract(STRICT, text, 0)


def gsm8k_flexible(text: str) -> str:
    """The last number anywhere in the text."""
    return _extract(FLEXIBLE, text, -1)


def _normalize(text: str) -> str:
    for pattern in IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def gsm8k_gold(answer: str) -> str:
    """The reference answer as exact_match sees it (the number after "#### ")."""
    return _normalize(answer)


def exact_match(prediction: str, reference: str) -> bool:
    """The harness's exact_match with GSM8k's settings: ignore case and the IGNORE
    patterns, in both strings."""
    return _normalize(prediction) == _normalize(reference)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def mean_stderr(values: Sequence[float]) -> float | None:
    """Sample standard deviation / sqrt(n); None below two values (undefined)."""
    n = len(values)
    if n < 2:
        return None
    mu = mean(values)
    variance = sum((v - mu) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def pooled_stderr(stderrs: Sequence[float | None], sizes: Sequence[int]) -> float | None:
    """The harness's pooled standard error of a group's size-weighted mean."""
    total, groups = sum(sizes), len(sizes)
    if total - groups <= 0:
        return None
    variance = sum((n - 1) * (s or 0.0) ** 2 * n for s, n in zip(stderrs, sizes, strict=True))
    return math.sqrt(variance / (total - groups) / total)
