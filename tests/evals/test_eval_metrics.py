"""Per-item metrics and their standard errors, with the harness's formulas."""

import math

import pytest

from locallama.evals import metrics
from locallama.evals.benchmarks import TASKS, Prompt

GOLD = "She pays 3 * 4 = <<3*4=12>>12 dollars.\nThen 12 + 2 = <<12+2=14>>14.\n#### 14"


@pytest.mark.parametrize(("text", "strict", "flexible"), [
    (" 3 * 4 = 12 dollars, plus 2 is 14.\n#### 14", "14", "14"),
    (" So the answer is 14.", "[invalid]", "14."),  # no "####": strict finds nothing
    (" #### 1,000\n\n", "1,000", "1,000"),
    (" #### -7", "-7", "-7"),
    (" #### $14", "[invalid]", "$14"),  # strict takes digits, signs, dots and commas only
    (" It costs $12, then 2 more.", "[invalid]", "2"),  # flexible: the last number
    (" #### 14\nQuestion 15", "14", "15"),  # strict: the first "####", flexible: the last
    (" nothing here", "[invalid]", "[invalid]"),
    (" #### 5 and #### 6", "5", "6"),
])
def test_gsm8k_extraction(text, strict, flexible):
    assert metrics.gsm8k_strict(text) == strict
    assert metrics.gsm8k_flexible(text) == flexible


@pytest.mark.parametrize(("prediction", "correct"), [
    ("14", True), ("14.", True), ("$14", True), ("1,4", True),  # ",", "$", a final "." ignored
    ("14.0", False), ("15", False), ("[invalid]", False), ("014", False),
])
def test_exact_match_ignores_what_the_harness_ignores(prediction, correct):
    assert metrics.exact_match(prediction, GOLD) is correct
    assert metrics.gsm8k_gold(GOLD) == "14"


def test_gsm8k_scores_strict_and_flexible_separately():
    task = TASKS["gsm8k"]
    doc = {"question": "q", "answer": GOLD}
    strict = task.score(doc, Prompt(generate="p"), " 12 + 2 = 14\n#### 14\n\n")
    assert strict.metrics == {"exact_match_strict": 1.0, "exact_match_flexible": 1.0}
    loose = task.score(doc, Prompt(generate="p"), " The total is 14 dollars.")
    assert loose.metrics == {"exact_match_strict": 0.0, "exact_match_flexible": 1.0}
    assert (loose.prediction, loose.gold, loose.correct) == ("[invalid]", "14", False)
    assert loose.extra["prediction_flexible"] == "14"


def test_acc_takes_the_largest_loglik_and_acc_norm_divides_by_characters():
    task = TASKS["arc_challenge"]
    doc = {"question": "q", "choices": {"text": ["ab", "abcdefgh"], "label": ["A", "B"]},
           "answerKey": "B"}
    prompt = Prompt(choices=["ab", "abcdefgh"])
    outcome = task.score(doc, prompt, [-2.0, -4.0])  # per character: -1.0 and -0.5
    assert outcome.metrics == {"acc": 0.0, "acc_norm": 1.0}
    assert (outcome.prediction, outcome.extra["prediction_norm"], outcome.gold) == (0, 1, 1)


def test_ties_go_to_the_first_choice_as_numpy_argmax():
    assert metrics.argmax([-1.0, -1.0, -3.0]) == 0
    assert metrics.argmax([-3.0, -1.0, -1.0]) == 1


def test_mc2_is_the_true_answers_share_of_probability():
    logliks = [math.log(0.2), math.log(0.1), math.log(0.3), math.log(0.4)]
    assert metrics.mc2(logliks, [1, 1, 0, 0]) == pytest.approx(0.3)
    task = TASKS["truthfulqa_mc2"]
    doc = {"question": "q", "mc2_targets": {"choices": list("abcd"), "labels": [1, 1, 0, 0]}}
    outcome = task.score(doc, Prompt(choices=list("abcd")), logliks)
    assert outcome.metrics == {"mc2": pytest.approx(0.3)}
    assert outcome.prediction == 3 and not outcome.correct


def test_mean_stderr_is_the_sample_standard_deviation_over_root_n():
    values = [1.0, 0.0, 1.0, 1.0]
    sd = math.sqrt(sum((v - 0.75) ** 2 for v in values) / 3)
    assert metrics.mean_stderr(values) == pytest.approx(sd / 2)
    assert metrics.mean_stderr([1.0]) is None


def test_pooled_stderr_matches_the_stderr_of_all_items_together():
    """The harness's pooled formula equals the plain stderr over the concatenation
    when every group has the same mean (and is close otherwise)."""
    a, b = [1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    pooled = metrics.pooled_stderr([metrics.mean_stderr(a), metrics.mean_stderr(b)], [4, 6])
    variance = ((4 - 1) * metrics.mean_stderr(a) ** 2 * 4
                + (6 - 1) * metrics.mean_stderr(b) ** 2 * 6) / (10 - 2)
    assert pooled == pytest.approx(math.sqrt(variance / 10))
    assert pooled == pytest.approx(metrics.mean_stderr(a + b), rel=0.1)
    assert metrics.pooled_stderr([None, None], [1, 1]) is None
