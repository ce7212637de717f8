"""Prompt construction: each task's text, exactly as lm-evaluation-harness builds it,
on the bundled sample items; and the harness's few-shot draw."""

import random

import pytest

from locallama.errors import InvalidRequest
from locallama.evals import data
from locallama.evals.benchmarks import TASKS, TRUTHFULQA_PRIMER, hellaswag_preprocess, parse_tasks
from locallama.evals.fewshot import build_items


def sample(name: str):
    task = TASKS[name]
    loaded = data.load(task, samples=True, shots=task.shots)
    return task, loaded.docs, loaded.fewshot


def test_arc_zero_shot_is_question_answer_and_each_choice_after_a_space():
    task, docs, pool = sample("arc_challenge")
    (item, *_) = build_items(task, docs, pool, shots=0, limit=1)
    context = ("Question: A student pushes a toy car harder than before. "
               "What will most likely happen?\nAnswer:")
    assert item.prompt.pairs == [
        (context, " The car will move faster."), (context, " The car will get lighter."),
        (context, " The car will change color."), (context, " The car will stop sooner.")]
    assert task.gold(item.doc) == 0


def test_arc_numeric_labels_index_the_answer_key():
    task, docs, _ = sample("arc_challenge")
    doc = docs[5]
    assert doc["choices"]["label"] == ["1", "2", "3", "4"] and doc["answerKey"] == "2"
    assert task.gold(doc) == 1


def test_arc_few_shot_examples_are_solved_questions_joined_by_blank_lines():
    task, docs, pool = sample("arc_challenge")
    items = build_items(task, docs, pool, shots=2, limit=2)
    rnd = random.Random(1234)  # the harness: one generator per task, drawn doc by doc
    for item in items:
        shots = rnd.sample(pool, 2)
        expected = "".join(
            f"Question: {s['question']}\nAnswer: "
            f"{s['choices']['text'][s['choices']['label'].index(s['answerKey'])]}\n\n"
            for s in shots)
        context = expected + f"Question: {item.doc['question']}\nAnswer:"
        assert [c for c, _ in item.prompt.pairs] == [context] * 4


def test_the_default_seed_is_1234_and_another_seed_draws_other_examples():
    task, docs, pool = sample("arc_challenge")
    def context(**seed):
        return build_items(task, docs, pool, shots=3, limit=1, **seed)[0].prompt.pairs[0][0]

    assert context() == context(seed=1234) != context(seed=7)


def test_hellaswag_query_capitalizes_ctx_b_and_cleans_wikihow_brackets():
    task, docs, _ = sample("hellaswag")
    (item,) = build_items(task, docs[2:3], [], shots=0)
    assert (docs[2]["ctx_a"], docs[2]["ctx_b"]) == (
        "[header] How to boil an egg [title] Place the egg in a small pot.",
        "[step] Cover the egg with cold water.")
    # capitalize() lowercases the rest; " [title]" becomes ". "; brackets go; "  " -> " "
    assert item.prompt.pairs[0][0] == (
        "Food and Entertaining: How to boil an egg. Place the egg in a small pot. "
        "cover the egg with cold water.")
    assert hellaswag_preprocess(" a [b] c [title] d ") == "a c. d"
    assert [c for _, c in item.prompt.pairs] == [
        " Put the lid in the freezer and wait a year.",
        " Bring the water to a boil over medium heat.",
        " Paint the egg before it touches the water.", " Throw the pot into the garden."]
    (first,) = build_items(task, docs[:1], [], shots=0)
    assert first.prompt.pairs[0][0] == (
        "Cleaning windows: A man sprays a glass window with cleaner. He takes a cloth and")
    assert task.gold(docs[2]) == 1


def test_hellaswag_draws_one_extra_example_as_the_harness_does():
    """Its config sets neither fewshot_split nor test_split, so the harness's check
    'fewshot_split == test_split' holds and it draws k + 1, then keeps the first k."""
    task, docs, pool = sample("hellaswag")
    items = build_items(task, docs, pool, shots=3, limit=2)
    rnd = random.Random(1234)
    for item in items:
        drawn = rnd.sample(pool, 4)[:3]
        assert item.prompt.pairs[0][0].startswith(task.example(drawn[0]) + "\n\n")
        assert item.prompt.pairs[0][0].count("\n\n") == 3


def test_mmlu_prompt_has_the_subject_description_and_first_dev_examples():
    task, docs, pool = sample("mmlu")
    items = build_items(task, docs, pool, shots=1, limit=1)
    assert [i.group for i in items] == ["astronomy", "elementary_mathematics"]
    context = items[0].prompt.pairs[0][0]
    assert context == (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "Which planet in our solar system has the most moons that astronomers have confirmed "
        "so far?\nA. Mercury\nB. Venus\nC. Saturn\nD. Mars\nAnswer: C\n\n"
        "Why does the Moon show phases as seen from Earth?\n"
        "A. Earth's shadow covers different parts of it each night.\n"
        "B. We see different parts of its sunlit half as it orbits Earth.\n"
        "C. The Moon makes its own light in cycles.\n"
        "D. Clouds on the Moon block its surface.\nAnswer:")
    assert [c for _, c in items[0].prompt.pairs] == [" A", " B", " C", " D"]
    assert items[1].prompt.pairs[0][0].startswith(
        "The following are multiple choice questions (with answers) about elementary "
        "mathematics.\n\nWhat is 7 x 8?\n")


def test_mmlu_limit_counts_per_subject_and_five_shots_use_the_whole_dev_split():
    task, docs, pool = sample("mmlu")
    items = build_items(task, docs, pool, shots=5, limit=2)
    assert len(items) == 4
    assert all(i.prompt.pairs[0][0].count("\nAnswer: ") == 5 for i in items)


def test_truthfulqa_mc2_is_the_qa_primer_then_the_question():
    task, docs, pool = sample("truthfulqa_mc2")
    (item, *_) = build_items(task, docs, pool, shots=0)
    assert TRUTHFULQA_PRIMER.startswith("Q: What is human life expectancy in the United States?"
                                        "\nA: Human life expectancy in the United States is 78 "
                                        "years.\n\nQ: Who was president")
    assert TRUTHFULQA_PRIMER.endswith("A: The 1992 Olympics were held in Barcelona, Spain.")
    context = (TRUTHFULQA_PRIMER + "\n\nQ: Does a penny dropped from a tall building kill a "
               "person it lands on?\nA:")
    assert item.prompt.pairs[0] == (context, " No, a falling penny is too light and slow to "
                                    "kill someone.")
    assert len(item.prompt.pairs) == 4


def test_winogrande_scores_one_shared_continuation_after_two_partial_contexts():
    task, docs, pool = sample("winogrande")
    (item,) = build_items(task, docs[:1], pool, shots=0)
    assert item.prompt.pairs == [
        ("The dog chased the cat up the tree, and the dog", " barked at it from below."),
        ("The dog chased the cat up the tree, and the cat", " barked at it from below.")]
    (shot,) = build_items(task, docs[1:2], pool, shots=1)
    first = random.Random(1234).sample(pool, 2)[0]  # the extra draw applies here too
    blank = first["sentence"].index("_")
    option = first["option1"] if first["answer"] == "1" else first["option2"]
    example = first["sentence"][:blank] + option + " " + first["sentence"][blank + 1:].strip()
    assert shot.prompt.pairs[0][0] == example + "\n\nBen gave his old bike to Carl because Ben"


def test_gsm8k_prompt_ends_with_answer_and_examples_show_the_full_solution():
    task, docs, pool = sample("gsm8k")
    (item, *_) = build_items(task, docs, pool, shots=1, limit=1)
    shot = random.Random(1234).sample(pool, 1)[0]
    assert item.prompt.pairs == []
    assert item.prompt.generate == (
        f"Question: {shot['question']}\nAnswer: {shot['answer']}\n\n"
        "Question: Sam buys 3 notebooks for $4 each and a pen for $2. How much does he spend?"
        "\nAnswer:")
    assert task.stop == ("Question:", "</s>", "<|im_end|>")


def test_the_default_shots_are_the_leaderboard_counts():
    assert {t.name: t.shots for t in TASKS.values()} == {
        "arc_challenge": 25, "hellaswag": 10, "mmlu": 5, "truthfulqa_mc2": 0,
        "winogrande": 5, "gsm8k": 5}


def test_every_task_builds_default_shot_prompts_from_the_samples():
    for task in parse_tasks("all"):
        _, docs, pool = sample(task.name)
        items = build_items(task, docs, pool, shots=task.shots)
        assert items and all(i.prompt.pairs or i.prompt.generate for i in items)


def test_unknown_tasks_and_too_few_examples_are_one_line_errors():
    with pytest.raises(InvalidRequest, match="unknown task 'arc'; the tasks are arc_challenge"):
        parse_tasks("arc,gsm8k")
    assert [t.name for t in parse_tasks("gsm8k, mmlu,gsm8k")] == ["gsm8k", "mmlu"]
    task, docs, pool = sample("winogrande")
    with pytest.raises(InvalidRequest, match="6-shot needs 7 examples in the 'train' split, "
                                             "which has 6; use --shots 5 or fewer"):
        build_items(task, docs, pool, shots=6)
