"""Code questions: the named files, or a folder's most relevant files, fitted into the context.

The ranking is deliberately simple (no index, no embeddings): a file scores for
each question word in its path and, less, in its content.  It is enough to put
``scheduler.py`` in front of ``README.md`` for "how does the scheduler batch?".
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locallama.errors import InvalidRequest
from locallama.everyday.budget import Budget, answer_size
from locallama.everyday.inputs import decode_text, read_text_file
from locallama.everyday.recipes import load_recipe
from locallama.everyday.run import answer
from locallama.runtime.base import Runtime
from locallama.settings import Settings

MAX_FILE_BYTES = 200_000  # larger files are data or generated, not code to read
MAX_FILES = 5000  # files looked at in one folder
MAX_CANDIDATES = 60  # best-ranked files whose tokens are counted
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "vendor", "third_party", "venv", ".venv",
             "__pycache__", "dist", "build", "target", ".tox", ".mypy_cache", ".pytest_cache",
             ".ruff_cache", "site-packages", ".idea", ".vscode", ".next", "coverage"}
SKIP_NAMES = {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "uv.lock",
              "Cargo.lock", "go.sum", "composer.lock", "Gemfile.lock"}
SKIP_SUFFIXES = (".min.js", ".min.css", ".map", ".lock", ".svg", ".pyc", ".gguf", ".bin")
_STOPWORDS = frozenset({
    "the", "and", "for", "with", "that", "this", "from", "what", "where", "when", "which",
    "who", "why", "how", "does", "do", "did", "are", "was", "were", "has", "have", "had",
    "can", "could", "should", "would", "will", "not", "but", "into", "about", "your", "you",
    "code", "file", "files", "function", "there", "their", "then", "than", "them", "they",
    "its", "use", "used", "using", "make",
})


@dataclass
class CodeFile:
    path: str  # as shown to the model (relative to the folder given, or as named)
    text: str
    score: float = 0.0
    cut: bool = False  # only the start of the file fitted


def question_words(question: str) -> set[str]:
    """Lowercase words of three letters or more, identifiers split at _ and camelCase."""
    words: set[str] = set()
    for token in re.findall(r"[A-Za-z0-9_]+", question):
        words.add(token.lower())
        for part in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", token):
            words.add(part.lower())
    return {w for w in words if len(w) >= 3 and w not in _STOPWORDS}


def score_file(path: str, text: str, words: set[str]) -> float:
    """4 per word in the path, plus 1 + log(count) per word found in the content."""
    path_words = set(re.findall(r"[a-z0-9]+", path.lower()))
    lowered = text.lower()
    score = 0.0
    for word in words:
        if word in path_words or any(word in p for p in path_words):
            score += 4.0
        count = lowered.count(word)
        if count:
            score += 1.0 + math.log(count)
    return score


def gather(paths: list[str], question: str) -> list[CodeFile]:
    """Named files first, in the order given; then a folder's files, best-ranked first."""
    if not paths:
        raise InvalidRequest("name at least one file or folder")
    words = question_words(question)
    named: list[CodeFile] = []
    ranked: list[CodeFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            ranked.extend(_folder_files(path, words))
        elif path.exists():
            named.append(CodeFile(raw, read_text_file(path)))
        else:
            raise InvalidRequest(f"cannot read {raw}: No such file or directory")
    if ranked and not named and not any(f.score > 0 for f in ranked):
        ranked.sort(key=lambda f: f.path)  # nothing matched: shallow paths first
        ranked.sort(key=lambda f: f.path.count("/"))
    else:
        ranked = sorted((f for f in ranked if f.score > 0), key=lambda f: (-f.score, f.path))
    if not named and not ranked:
        raise InvalidRequest(f"no readable source files in {', '.join(paths)}")
    return named + ranked


def fit_files(budget: Budget, files: list[CodeFile], room: int) -> list[CodeFile]:
    """Files in order while they fit; one too big is skipped, or cut when nothing fits yet."""
    chosen: list[CodeFile] = []
    left = room
    for file in files[:MAX_CANDIDATES]:
        size = budget.count(_shown(file)) + 8
        if size <= left:
            chosen.append(file)
            left -= size
        elif not chosen and left > 64:
            head = budget.split(file.text, left - budget.count(_shown(CodeFile(file.path, ""))))
            chosen.append(CodeFile(file.path, head[0], file.score, cut=True))
            left = 0
        if left < 64:
            break
    return chosen


def ask_code(runtime: Runtime, model: str, settings: Settings, question: str,
             files: list[CodeFile], *, num_ctx: int, max_tokens: int | None = None,
             on_text: Callable[[str], None] | None = None,
             on_files: Callable[[list[CodeFile]], None] | None = None,
             options: dict[str, Any] | None = None) -> str:
    """The code recipe over as many of ``files`` as fit, in their order."""
    recipe = load_recipe("code", settings)
    tokens = max_tokens or answer_size(recipe.answer_tokens, num_ctx)
    budget = Budget(runtime, model, num_ctx, tokens)
    base = {"question": question, "files": []}
    room = budget.require(recipe.render(**base), recipe.render_system(**base))
    chosen = fit_files(budget, files, room)
    if on_files:
        on_files(chosen)
    variables = {"question": question,
                 "files": [{"path": f.path, "text": f.text.rstrip("\n")} for f in chosen]}
    return answer(runtime, model, recipe, variables, on_text=on_text,
                  options={**(options or {}), "num_predict": tokens})


def _shown(file: CodeFile) -> str:
    return f"File: {file.path}\n```\n{file.text}\n```\n"


def _folder_files(folder: Path, words: set[str]) -> list[CodeFile]:
    files = []
    for relative in _list_folder(folder)[:MAX_FILES]:
        if _skipped(relative):
            continue
        path = folder / relative
        try:
            if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = decode_text(path.read_bytes())
        except OSError:
            continue
        if text is None or not text.strip():
            continue
        shown = relative if folder == Path(".") else str(folder / relative)
        files.append(CodeFile(shown, text, score_file(relative, text, words)))
    return files


def _list_folder(folder: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files in a git work tree, else a walk."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=False, timeout=30)
        if result.returncode == 0:
            names = [n for n in result.stdout.decode("utf-8", "replace").split("\0") if n]
            return sorted(dict.fromkeys(names))
    except (OSError, subprocess.TimeoutExpired):
        pass
    names = []
    for top, dirs, filenames in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        relative = Path(top).relative_to(folder)
        names.extend((relative / f).as_posix() for f in sorted(filenames))
        if len(names) >= MAX_FILES:
            break
    return names


def _skipped(relative: str) -> bool:
    parts = relative.split("/")
    name = parts[-1]
    return (any(p in SKIP_DIRS for p in parts[:-1]) or name in SKIP_NAMES
            or name.endswith(SKIP_SUFFIXES) or name.startswith("."))
