"""The six leaderboard benchmarks, each a task as lm-evaluation-harness defines it.

A task turns a dataset row (a *doc*, with the dataset's own field names) into
requests, either (context, continuation) pairs whose log-likelihoods are compared
or a prompt to generate from, and turns the model's answers back into metrics.
Prompts and few-shot examples follow the harness's task YAML (the draw of the
examples is ``fewshot``), so the same model sees the same text here and there.
docs/evals.md lists where this departs from the harness, and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from locallama.errors import InvalidRequest
from locallama.evals import metrics

FEWSHOT_DELIMITER = "\n\n"  # between few-shot examples (the harness's default)
TARGET_DELIMITER = " "  # between a question and its answer
FEWSHOT_SEED = 1234  # the harness's default few-shot seed


@dataclass(frozen=True)
class HubData:
    """Where a task's data is published on the Hugging Face hub.

    ``files`` names a split's Parquet file on the main branch; every dataset the hub
    can show also has the hub's own conversion, tried second."""

    repo: str
    config: str
    files: str = "{config}/{split}-00000-of-00001.parquet"

    def candidates(self, split: str) -> list[tuple[str, str]]:
        """(revision, file) pairs to try, in order."""
        return [("main", self.files.format(config=self.config, split=split)),
                ("refs/convert/parquet", f"{self.config}/{split}/0000.parquet")]


@dataclass
class Prompt:
    """What one doc asks of the model."""

    pairs: list[tuple[str, str]] = field(default_factory=list)  # (context, continuation)
    generate: str | None = None  # a prompt to complete, for generation tasks
    choices: list[str] = field(default_factory=list)  # what acc_norm divides by (characters)


@dataclass
class Outcome:
    """One doc's metrics, and what the model answered."""

    metrics: dict[str, float]
    prediction: int | str
    gold: int | str
    correct: bool
    extra: dict[str, Any] = field(default_factory=dict)


class Task:
    """The harness's ConfigurableTask, reduced to what these six tasks use."""

    name = ""
    hub: HubData
    eval_split = "test"
    fewshot_split = "train"
    shots = 0
    first_n = False  # the "first_n" sampler (MMLU) rather than a seeded random draw
    # The harness draws one extra example when its config's fewshot_split equals its
    # test_split, both unset for tasks that evaluate on validation; the draw changes.
    extra_draw = False
    metrics: tuple[str, ...] = ("acc",)
    primary = "acc"
    generation = False
    fields: dict[str, type | tuple[type, ...]] = {}

    def check(self, doc: Any) -> str | None:
        """What is wrong with a row, in a few words, or None."""
        if not isinstance(doc, dict):
            return "a row must be an object"
        for name, kind in self.fields.items():
            if name not in doc:
                return f"missing field '{name}'"
            if not isinstance(doc[name], kind):
                return f"field '{name}' has the wrong type"
        return None

    def group(self, doc: dict) -> str:
        """Docs are evaluated (and few-shot examples drawn) per group: MMLU's subjects."""
        return ""

    def description(self, doc: dict) -> str:
        return ""

    def question(self, doc: dict) -> str:
        raise NotImplementedError

    def choices(self, doc: dict) -> list[str]:
        raise NotImplementedError

    def gold(self, doc: dict) -> int:
        raise NotImplementedError

    def example(self, doc: dict) -> str:
        """The doc as a solved few-shot example."""
        return self.question(doc) + TARGET_DELIMITER + self.choices(doc)[self.gold(doc)]

    def prompt(self, context: str, doc: dict) -> Prompt:
        choices = self.choices(doc)
        head = context + self.question(doc)
        return Prompt([(head, TARGET_DELIMITER + c) for c in choices], choices=choices)

    def score(self, doc: dict, prompt: Prompt, answer: list[float] | str) -> Outcome:
        assert isinstance(answer, list)
        gold = self.gold(doc)
        pred, pred_norm = metrics.argmax(answer), metrics.argmax_normalized(answer, prompt.choices)
        values = {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold)}
        return Outcome({m: values[m] for m in self.metrics}, pred, gold, pred == gold,
                       {"prediction_norm": pred_norm} if "acc_norm" in self.metrics else {})


class ArcChallenge(Task):
    name = "arc_challenge"
    hub = HubData("allenai/ai2_arc", "ARC-Challenge")
    shots = 25
    metrics = ("acc", "acc_norm")
    primary = "acc_norm"
    fields = {"question": str, "choices": dict, "answerKey": str}

    def check(self, doc: Any) -> str | None:
        problem = super().check(doc)
        if problem:
            return problem
        choices = doc["choices"]
        if not (_strings(choices.get("text")) and _strings(choices.get("label"))
                and len(choices["text"]) == len(choices["label"]) > 0):
            return "field 'choices' needs lists 'text' and 'label' of the same length"
        if doc["answerKey"] not in choices["label"]:
            return f"answerKey {doc['answerKey']!r} is not one of the labels"
        return None

    def question(self, doc: dict) -> str:
        return f"Question: {doc['question']}\nAnswer:"

    def choices(self, doc: dict) -> list[str]:
        return list(doc["choices"]["text"])

    def gold(self, doc: dict) -> int:
        return list(doc["choices"]["label"]).index(doc["answerKey"])


class HellaSwag(Task):
    name = "hellaswag"
    hub = HubData("Rowan/hellaswag", "default", "data/{split}-00000-of-00001.parquet")
    eval_split = "validation"
    shots = 10
    extra_draw = True
    metrics = ("acc", "acc_norm")
    primary = "acc_norm"
    fields = {"activity_label": str, "ctx_a": str, "ctx_b": str, "endings": list,
              "label": (str, int)}

    def check(self, doc: Any) -> str | None:
        problem = super().check(doc)
        if problem:
            return problem
        if not (_strings(doc["endings"]) and doc["endings"]):
            return "field 'endings' must be a list of strings"
        if str(doc["label"]) not in {str(i) for i in range(len(doc["endings"]))}:
            return f"label {doc['label']!r} does not index the endings"
        return None

    def question(self, doc: dict) -> str:
        context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return hellaswag_preprocess(doc["activity_label"] + ": " + context)

    def choices(self, doc: dict) -> list[str]:
        return [hellaswag_preprocess(ending) for ending in doc["endings"]]

    def gold(self, doc: dict) -> int:
        return int(doc["label"])


def hellaswag_preprocess(text: str) -> str:
    """The harness's clean-up of WikiHow artifacts ("[title]", "[step]")."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


class MMLU(Task):
    name = "mmlu"
    hub = HubData("cais/mmlu", "all")
    fewshot_split = "dev"
    shots = 5
    first_n = True
    fields = {"question": str, "subject": str, "choices": list, "answer": int}

    def check(self, doc: Any) -> str | None:
        problem = super().check(doc)
        if problem:
            return problem
        if not (_strings(doc["choices"]) and len(doc["choices"]) == 4):
            return "field 'choices' must be a list of 4 strings"
        if isinstance(doc["answer"], bool) or not 0 <= doc["answer"] < 4:
            return "field 'answer' must be 0, 1, 2 or 3"
        return None

    def group(self, doc: dict) -> str:
        return doc["subject"]

    def description(self, doc: dict) -> str:
        subject = doc["subject"].replace("_", " ")
        return f"The following are multiple choice questions (with answers) about {subject}.\n\n"

    def question(self, doc: dict) -> str:
        a, b, c, d = doc["choices"]
        return f"{doc['question'].strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"

    def choices(self, doc: dict) -> list[str]:
        return ["A", "B", "C", "D"]

    def gold(self, doc: dict) -> int:
        return doc["answer"]


TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


class TruthfulQAMC2(Task):
    name = "truthfulqa_mc2"
    hub = HubData("truthfulqa/truthful_qa", "multiple_choice")
    eval_split = "validation"
    fewshot_split = "validation"
    extra_draw = True
    metrics = ("mc2",)
    primary = "mc2"
    fields = {"question": str, "mc2_targets": dict}

    def check(self, doc: Any) -> str | None:
        problem = super().check(doc)
        if problem:
            return problem
        targets = doc["mc2_targets"]
        labels = targets.get("labels")
        if not (_strings(targets.get("choices")) and isinstance(labels, list)
                and len(labels) == len(targets["choices"]) and 0 in labels and 1 in labels):
            return "field 'mc2_targets' needs 'choices' and 'labels' with true (1) and false (0)"
        return None

    def question(self, doc: dict) -> str:
        return TRUTHFULQA_PRIMER + "\n\nQ: " + doc["question"] + "\nA:"

    def choices(self, doc: dict) -> list[str]:
        return list(doc["mc2_targets"]["choices"])

    def gold(self, doc: dict) -> int:
        return 0  # the harness's doc_to_target; mc2 reads the labels instead

    def score(self, doc: dict, prompt: Prompt, answer: list[float] | str) -> Outcome:
        assert isinstance(answer, list)
        labels = list(doc["mc2_targets"]["labels"])
        value = metrics.mc2(answer, labels)
        pred = metrics.argmax(answer)
        return Outcome({"mc2": value}, pred, 0, labels[pred] == 1)


class Winogrande(Task):
    """Partial scoring: two contexts (the sentence up to the blank, filled with each
    option) and one shared continuation (the rest of the sentence)."""

    name = "winogrande"
    hub = HubData("allenai/winogrande", "winogrande_xl")
    eval_split = "validation"
    shots = 5
    extra_draw = True
    fields = {"sentence": str, "option1": str, "option2": str, "answer": (str, int)}

    def check(self, doc: Any) -> str | None:
        problem = super().check(doc)
        if problem:
            return problem
        if "_" not in doc["sentence"]:
            return "field 'sentence' has no blank '_'"
        if str(doc["answer"]) not in ("1", "2"):
            return "field 'answer' must be \"1\" or \"2\""
        return None

    def choices(self, doc: dict) -> list[str]:
        blank = doc["sentence"].index("_")
        return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]

    def target(self, doc: dict) -> str:
        return doc["sentence"][doc["sentence"].index("_") + 1:].strip()

    def gold(self, doc: dict) -> int:
        return {"1": 0, "2": 1}[str(doc["answer"])]

    def example(self, doc: dict) -> str:
        return self.choices(doc)[self.gold(doc)] + TARGET_DELIMITER + self.target(doc)

    def prompt(self, context: str, doc: dict) -> Prompt:
        continuation = TARGET_DELIMITER + self.target(doc)
        choices = self.choices(doc)
        return Prompt([(context + c, continuation) for c in choices], choices=choices)


class GSM8K(Task):
    name = "gsm8k"
    hub = HubData("openai/gsm8k", "main")
    shots = 5
    metrics = ("exact_match_strict", "exact_match_flexible")
    primary = "exact_match_strict"
    generation = True
    fields = {"question": str, "answer": str}
    stop = ("Question:", "</s>", "<|im_end|>")
    max_tokens = 256  # the harness's max_gen_toks

    def question(self, doc: dict) -> str:
        return f"Question: {doc['question']}\nAnswer:"

    def example(self, doc: dict) -> str:
        return self.question(doc) + TARGET_DELIMITER + doc["answer"]

    def prompt(self, context: str, doc: dict) -> Prompt:
        return Prompt(generate=context + self.question(doc))

    def score(self, doc: dict, prompt: Prompt, answer: list[float] | str) -> Outcome:
        assert isinstance(answer, str)
        strict, flexible = metrics.gsm8k_strict(answer), metrics.gsm8k_flexible(answer)
        gold = doc["answer"]
        values = {"exact_match_strict": float(metrics.exact_match(strict, gold)),
                  "exact_match_flexible": float(metrics.exact_match(flexible, gold))}
        return Outcome(values, strict, metrics.gsm8k_gold(gold),
                       bool(values["exact_match_strict"]),
                       {"prediction_flexible": flexible, "output": answer,
                        "correct_flexible": bool(values["exact_match_flexible"])})


TASKS: dict[str, Task] = {t.name: t for t in (
    ArcChallenge(), HellaSwag(), MMLU(), TruthfulQAMC2(), Winogrande(), GSM8K())}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise InvalidRequest(
            f"unknown task {name!r}; the tasks are {', '.join(TASKS)}") from None


def parse_tasks(spec: str) -> list[Task]:
    """"arc_challenge,gsm8k" (or "all") -> tasks, in the order given, once each."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names or names == ["all"]:
        return list(TASKS.values())
    return [get_task(n) for n in dict.fromkeys(names)]


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
