"""commit: inside temporary git repositories; the style, large diffs, the hook."""

import os
import subprocess
from pathlib import Path

import pytest

from locallama.errors import InvalidRequest
from locallama.everyday import commit as commit_module
from locallama.everyday.code import gather
from locallama.everyday.commit import (
    clean_message,
    commit_message,
    commit_style,
    install_hook,
    read_staged,
    split_by_file,
)
from locallama.settings import Settings
from wordruntime import WordRuntime

GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_EDITOR": "true"}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV, "HOME": str(repo.parent)}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.com")
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(models_dir=tmp_path / "models", recipes_dir=tmp_path / "recipes")


def commit_file(repo: Path, name: str, text: str, message: str) -> None:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)


def test_errors_not_a_repo_and_nothing_staged(tmp_path: Path, repo: Path):
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(InvalidRequest, match="not a git repository"):
        read_staged(outside)
    with pytest.raises(InvalidRequest, match="nothing staged"):
        read_staged(repo)  # a fresh repository, no commits
    commit_file(repo, "a.txt", "a\n", "Add a")
    (repo / "a.txt").write_text("changed but not staged\n")
    with pytest.raises(InvalidRequest, match="nothing staged"):
        read_staged(repo)


def test_read_staged_and_the_repositorys_style(repo: Path):
    for i, subject in enumerate(["feat(core): add engine", "fix: handle empty input",
                                 "docs(readme): usage", "Update notes"]):
        commit_file(repo, f"f{i}.txt", f"{i}\n", subject)
    (repo / "f0.txt").write_text("changed\n")
    git(repo, "add", "f0.txt")
    staged = read_staged(repo)
    assert "diff --git a/f0.txt b/f0.txt" in staged.diff and "+changed" in staged.diff
    assert "f0.txt" in staged.stat
    assert staged.subjects[0] == "Update notes" and len(staged.subjects) == 4
    assert staged.style == "conventional"  # three of four


def test_commit_style():
    assert commit_style(["feat: a", "fix(x)!: b", "Add c"]) == "conventional"
    assert commit_style(["Add a", "Fix b", "feat: c"]) == "imperative"
    assert commit_style([]) == "imperative"


def test_split_by_file():
    diff = ("diff --git a/x.py b/x.py\n+1\n"
            "diff --git a/docs/y.md b/docs/y.md\n-2\n")
    assert split_by_file(diff) == [("x.py", "diff --git a/x.py b/x.py\n+1\n"),
                                   ("docs/y.md", "diff --git a/docs/y.md b/docs/y.md\n-2\n")]


def test_a_message_from_a_small_diff(repo: Path, settings):
    commit_file(repo, "calc.py", "def add(a, b):\n    return a + b\n", "feat(calc): add")
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n"
                                  "    return a - b\n")
    git(repo, "add", "calc.py")
    runtime = WordRuntime(lambda prompt: "```\nfeat(calc): add subtraction\n```")
    message = commit_message(runtime, "m", settings, read_staged(repo), num_ctx=4096)
    assert message == "feat(calc): add subtraction"
    (prompt,) = runtime.prompts
    assert "+def sub(a, b):" in prompt and "Conventional Commits" in prompt
    assert "- feat(calc): add" in prompt


def test_a_huge_diff_is_summarized_per_file_first(repo: Path, settings):
    commit_file(repo, "seed.txt", "x\n", "Initial commit")
    for name in ("alpha.py", "beta.py", "gamma.py"):
        (repo / name).write_text("".join(f"value_{i} = {i}\n" for i in range(300)))
        git(repo, "add", name)

    def respond(prompt: str) -> str:
        if "One-line summary of the change to" in prompt:
            name = prompt.rsplit("change to ", 1)[1].split(":")[0]
            return f"adds the values of {name}\nsecond line dropped"
        return "Add three value tables"

    runtime = WordRuntime(respond)
    progress: list[str] = []
    message = commit_message(runtime, "m", settings, read_staged(repo), num_ctx=1200,
                             on_progress=progress.append)
    assert message == "Add three value tables"
    *file_prompts, final = runtime.prompts
    assert [p.rsplit("change to ", 1)[1].split(":")[0] for p in file_prompts] == [
        "alpha.py", "beta.py", "gamma.py"]
    assert all(len(p.split()) < 1200 for p in runtime.prompts)  # each fitted
    assert "- alpha.py: adds the values of alpha.py\n" in final
    assert "second line dropped" not in final
    assert "Diff:" not in final  # the raw diff did not fit, so it is not there
    assert progress == [f"summarizing {n}.py ({i} of 3)"
                        for i, n in enumerate(["alpha", "beta", "gamma"], 1)]


def test_clean_message():
    assert clean_message("\n```text\nfix: x\n\nbody  \n```\n") == "fix: x\n\nbody"
    assert clean_message("Commit message:\nAdd y") == "Add y"


# -- the hook -----------------------------------------------------------------------


@pytest.fixture
def fake_locallama(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in for `locallama commit` that the hook runs (no model needed)."""
    script = tmp_path / "fake-locallama"
    script.write_text("#!/bin/sh\necho 'feat: written by the model'\n")
    script.chmod(0o755)
    monkeypatch.setattr(commit_module, "_locallama_command", lambda: str(script))
    return script


def test_install_hook_refuses_to_overwrite_another_hook(repo: Path, fake_locallama):
    path, outcome = install_hook(repo)
    assert outcome == "installed" and path == repo / ".git" / "hooks" / "prepare-commit-msg"
    assert os.access(path, os.X_OK)
    assert install_hook(repo)[1] == "unchanged"
    path.write_text("#!/bin/sh\necho mine\n")
    with pytest.raises(InvalidRequest, match="already exists.*--force"):
        install_hook(repo)
    assert path.read_text() == "#!/bin/sh\necho mine\n"
    assert install_hook(repo, force=True)[1] == "replaced"
    assert "written by the model" not in path.read_text()  # it calls the command, not a text
    assert str(fake_locallama) in path.read_text()


def test_install_hook_outside_a_repo(tmp_path: Path):
    with pytest.raises(InvalidRequest, match="not a git repository"):
        install_hook(tmp_path)


def test_the_hook_fills_an_empty_message_only(repo: Path, fake_locallama):
    commit_file(repo, "a.txt", "a\n", "Initial commit")
    install_hook(repo, model="some-model")
    assert "commit --model some-model" in (repo / ".git/hooks/prepare-commit-msg").read_text()

    (repo / "a.txt").write_text("b\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q")  # GIT_EDITOR=true: the message is what the hook wrote
    assert git(repo, "log", "-1", "--format=%B").strip() == "feat: written by the model"

    (repo / "a.txt").write_text("c\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "my own words")  # -m: left alone
    assert git(repo, "log", "-1", "--format=%B").strip() == "my own words"

    git(repo, "commit", "-q", "--amend", "--no-edit")  # amend: left alone
    assert git(repo, "log", "-1", "--format=%B").strip() == "my own words"


def test_code_in_a_git_repository_respects_gitignore(repo: Path):
    (repo / ".gitignore").write_text("generated/\n")
    (repo / "generated").mkdir()
    (repo / "generated" / "scheduler.py").write_text("scheduler")
    (repo / "scheduler.py").write_text("scheduler")
    files = gather([str(repo)], "scheduler")
    assert [Path(f.path).name for f in files] == ["scheduler.py"]
    assert "generated" not in files[0].path
