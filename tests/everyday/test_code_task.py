"""code: named files first, a folder's files ranked by the question, fitted to the context."""

from pathlib import Path

import pytest

from locallama.errors import InvalidRequest
from locallama.everyday.budget import Budget
from locallama.everyday.code import CodeFile, ask_code, fit_files, gather, question_words
from locallama.settings import Settings
from wordruntime import WordRuntime


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "scheduler.py").write_text(
        "class Scheduler:\n    def batch(self, jobs):\n        return jobs  # batch the jobs\n")
    (root / "src" / "store.py").write_text("def save(blob):\n    pass\n")
    (root / "README.md").write_text("A project.\n")
    (root / "node_modules" / "lib").mkdir(parents=True)
    (root / "node_modules" / "lib" / "scheduler.js").write_text("scheduler batch")
    (root / "vendor").mkdir()
    (root / "vendor" / "scheduler.py").write_text("scheduler batch")
    (root / ".git").mkdir()
    (root / ".git" / "scheduler").write_text("scheduler batch")
    (root / "logo.bin").write_bytes(b"\x00scheduler batch")
    (root / "big.py").write_text("scheduler = 1\n" * 20000)
    return root


def test_question_words_split_identifiers():
    words = question_words("How does the Scheduler batch jobs in make_batch or getSlotCount?")
    assert {"scheduler", "batch", "jobs", "make_batch", "getslotcount", "slot", "count"} <= words
    assert "the" not in words and "how" not in words and "in" not in words


def test_a_folder_is_ranked_and_skips_vendor_binary_and_large_files(project: Path):
    files = gather([str(project)], "how does the scheduler batch jobs?")
    paths = [Path(f.path).relative_to(project).as_posix() for f in files]
    assert paths[0] == "src/scheduler.py"
    for skipped in ("node_modules/lib/scheduler.js", "vendor/scheduler.py", ".git/scheduler",
                    "logo.bin", "big.py"):
        assert skipped not in paths
    assert "src/store.py" not in paths  # nothing in it matches the question


def test_named_files_come_first_in_the_order_given(project: Path):
    files = gather([str(project / "src" / "store.py"), str(project)], "scheduler batch")
    assert files[0].path == str(project / "src" / "store.py")
    assert files[1].path.endswith("scheduler.py")


def test_nothing_matches_then_every_file_in_path_order(project: Path):
    files = gather([str(project)], "zebra")
    assert [Path(f.path).name for f in files] == ["README.md", "scheduler.py", "store.py"]


def test_problems_are_one_line(tmp_path: Path):
    with pytest.raises(InvalidRequest, match="No such file"):
        gather([str(tmp_path / "missing.py")], "q")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequest, match="no readable source files"):
        gather([str(tmp_path / "empty")], "q")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01")
    with pytest.raises(InvalidRequest, match="not a text file"):
        gather([str(tmp_path / "blob.bin")], "q")


def test_fit_files_skips_what_does_not_fit_and_cuts_a_first_file_too_big():
    budget = Budget(WordRuntime(), "m", 10_000, 10)
    small = CodeFile("a.py", "x = 1\n")
    huge = CodeFile("huge.py", "y = 2\n" * 500)
    other = CodeFile("b.py", "z = 3\n")
    assert [f.path for f in fit_files(budget, [small, huge, other], 200)] == ["a.py", "b.py"]
    chosen = fit_files(budget, [huge, small], 200)
    assert chosen[0].path == "huge.py" and chosen[0].cut
    assert budget.count(chosen[0].text) < 200


def test_ask_code_sends_the_question_and_files(tmp_path: Path):
    settings = Settings(models_dir=tmp_path / "m", recipes_dir=tmp_path / "r")
    runtime = WordRuntime(lambda prompt: "It batches.")
    shown: list[list[CodeFile]] = []
    files = [CodeFile("src/scheduler.py", "def batch(): ...\n", 5.0)]
    result = ask_code(runtime, "m", settings, "How are jobs batched?", files, num_ctx=4096,
                      on_files=shown.append)
    assert result.strip() == "It batches."
    prompt = runtime.prompts[0]
    assert "File: src/scheduler.py\n```\ndef batch(): ...\n```" in prompt
    assert prompt.rstrip().endswith("Question: How are jobs batched?\n\nAnswer:")
    assert [f.path for f in shown[0]] == ["src/scheduler.py"]
