"""Commit messages from ``git diff --staged``, in the style the repository already uses.

git runs as a subprocess (no git library): what it prints is what the user would
see.  A diff too large for the context is summarized file by file first
(commit_file_summary), and the message is written from those summaries.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locallama.errors import InvalidRequest
from locallama.everyday.budget import Budget, answer_size
from locallama.everyday.recipes import load_recipe
from locallama.everyday.run import answer
from locallama.runtime.base import Runtime
from locallama.settings import Settings

_CONVENTIONAL = re.compile(r"^[a-z]+(\([^)]*\))?!?: \S", re.IGNORECASE)
HOOK_NAME = "prepare-commit-msg"
HOOK_MARK = "# installed by locallama commit --hook"


@dataclass
class Staged:
    """What is about to be committed, and how this repository writes its subjects."""

    diff: str
    stat: str
    subjects: list[str]

    @property
    def style(self) -> str:
        return commit_style(self.subjects)


def git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              encoding="utf-8", errors="replace", check=False)
    except FileNotFoundError:
        raise InvalidRequest("git is not installed (or not on PATH)") from None


def repository_root(cwd: Path | None = None) -> Path:
    """The work tree's top folder; one line when ``cwd`` is not inside a git repository."""
    result = git(["rev-parse", "--show-toplevel"], cwd)
    if result.returncode != 0:
        raise InvalidRequest(f"not a git repository: {(cwd or Path.cwd()).resolve()}")
    return Path(result.stdout.strip())


def read_staged(cwd: Path | None = None) -> Staged:
    """The staged diff, its --stat, and the last 20 subjects; nothing staged is an error."""
    repository_root(cwd)
    diff = git(["diff", "--staged", "--no-color", "--no-ext-diff"], cwd)
    if diff.returncode != 0:
        raise InvalidRequest(f"git diff failed: {' '.join(diff.stderr.split())}")
    if not diff.stdout.strip():
        raise InvalidRequest("nothing staged to commit: 'git add' the changes first")
    stat = git(["diff", "--staged", "--no-color", "--stat"], cwd).stdout.rstrip()
    log = git(["log", "-n", "20", "--format=%s"], cwd)  # fails in a repo with no commits
    subjects = [s for s in log.stdout.splitlines() if s.strip()] if log.returncode == 0 else []
    return Staged(diff.stdout, stat, subjects)


def commit_style(subjects: list[str]) -> str:
    """"conventional" when most recent subjects read ``type(scope): ...``, else "imperative"."""
    conventional = sum(1 for s in subjects if _CONVENTIONAL.match(s))
    return "conventional" if subjects and conventional * 2 > len(subjects) else "imperative"


def split_by_file(diff: str) -> list[tuple[str, str]]:
    """(path, that file's diff) for each file in a ``git diff``, in order."""
    parts = re.split(r"(?m)^(?=diff --git )", diff)
    files = []
    for part in parts:
        if not part.strip():
            continue
        header = part.split("\n", 1)[0]
        match = re.match(r"diff --git a/(.*) b/(.*)$", header)
        files.append((match.group(2) if match else header, part))
    return files


def commit_message(runtime: Runtime, model: str, settings: Settings, staged: Staged, *,
                   num_ctx: int, max_tokens: int | None = None,
                   on_text: Callable[[str], None] | None = None,
                   on_progress: Callable[[str], None] | None = None,
                   options: dict[str, Any] | None = None) -> str:
    """A commit message for ``staged``: from the diff itself when it fits the context,
    else from one-line summaries of each file's changes."""
    recipe = load_recipe("commit", settings)
    tokens = max_tokens or answer_size(recipe.answer_tokens, num_ctx)
    budget = Budget(runtime, model, num_ctx, tokens)
    base = {"diff": "", "files": [], "stat": staged.stat, "style": staged.style,
            "examples": staged.subjects[:10]}
    room = budget.require(recipe.render(**base), recipe.render_system(**base))
    variables = dict(base)
    if budget.count(staged.diff) <= room:
        variables["diff"] = staged.diff
    else:
        files = summarize_files(runtime, model, settings, staged.diff, num_ctx=num_ctx,
                                max_tokens=max_tokens, on_progress=on_progress,
                                options=options)
        lines = budget.fit([f"- {f['path']}: {f['summary']}\n" for f in files], room)
        variables["files"] = files[: len(lines)]
    text = answer(runtime, model, recipe, variables, on_text=on_text,
                  options={**(options or {}), "num_predict": tokens})
    return clean_message(text)


def summarize_files(runtime: Runtime, model: str, settings: Settings, diff: str, *,
                    num_ctx: int, max_tokens: int | None = None,
                    on_progress: Callable[[str], None] | None = None,
                    options: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """One line per changed file; a file's diff too big for the context is cut to fit."""
    recipe = load_recipe("commit_file_summary", settings)
    tokens = max_tokens or answer_size(recipe.answer_tokens, num_ctx)
    budget = Budget(runtime, model, num_ctx, tokens)
    files = split_by_file(diff)
    summaries = []
    for number, (path, part) in enumerate(files, 1):
        if on_progress:
            on_progress(f"summarizing {path} ({number} of {len(files)})")
        fixed = recipe.render(path=path, diff="")
        room = budget.require(fixed, recipe.render_system(path=path, diff=""))
        part = part if budget.count(part) <= room else budget.split(part, room)[0]
        text = answer(runtime, model, recipe, {"path": path, "diff": part},
                      options={**(options or {}), "num_predict": tokens})
        line = next((s.strip() for s in text.splitlines() if s.strip()), "changed")
        summaries.append({"path": path, "summary": line})
    return summaries


def clean_message(text: str) -> str:
    """The message without what models wrap around it: fences, a label, stray blank lines."""
    lines = text.strip().splitlines()
    while lines and (lines[0].strip().startswith("```") or not lines[0].strip()):
        lines.pop(0)
    if lines and lines[0].strip().lower().rstrip(":") == "commit message":
        lines.pop(0)
    while lines and (lines[-1].strip().startswith("```") or not lines[-1].strip()):
        lines.pop()
    return "\n".join(line.rstrip() for line in lines).strip()


# -- the prepare-commit-msg hook -------------------------------------------------


def hook_script(model: str | None = None) -> str:
    """A POSIX sh hook that fills an empty message, leaving merges, amends and -m alone."""
    command = [_locallama_command(), "commit"]
    if model:
        command += ["--model", model]
    return f"""#!/bin/sh
{HOOK_MARK}
# Fills an empty commit message with one written by a local model.
# $1: the message file; $2: where the message came from (empty for a plain commit).
case "$2" in
  message|template|merge|squash|commit) exit 0 ;;  # -m/-F, a template, merge, amend
esac
if grep -v '^#' "$1" | grep -q '[^[:space:]]'; then
  exit 0  # the message already has content
fi
message=$({shlex.join(command)} 2>/dev/null) || exit 0
[ -n "$message" ] || exit 0
{{ printf '%s\\n' "$message"; cat "$1"; }} > "$1.locallama" && mv "$1.locallama" "$1"
"""


def install_hook(cwd: Path | None = None, *, model: str | None = None,
                 force: bool = False) -> tuple[Path, str]:
    """Write the hook (executable); (path, "installed" / "replaced" / "unchanged").

    An existing hook with other content is kept unless ``force``: it may be the
    user's own, and overwriting it silently would lose it.
    """
    repository_root(cwd)
    result = git(["rev-parse", "--git-path", f"hooks/{HOOK_NAME}"], cwd)
    if result.returncode != 0:
        raise InvalidRequest(f"cannot find the hooks folder: {' '.join(result.stderr.split())}")
    path = Path(result.stdout.strip())
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    script = hook_script(model)
    outcome = "installed"
    if path.exists():
        if path.read_text(encoding="utf-8", errors="replace") == script:
            path.chmod(0o755)
            return path, "unchanged"
        if not force:
            raise InvalidRequest(f"{path} already exists with other content; "
                                 "use --force to replace it")
        outcome = "replaced"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{HOOK_NAME}.locallama-tmp")
    temporary.write_text(script, encoding="utf-8")
    temporary.chmod(0o755)
    os.replace(temporary, path)
    return path, outcome


def _locallama_command() -> str:
    """The locallama that is running now, so the hook works without it on git's PATH."""
    beside = Path(sys.executable).with_name("locallama")
    if beside.is_file():
        return str(beside)
    return shutil.which("locallama") or "locallama"
