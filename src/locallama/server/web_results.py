"""``GET /ui/api/results``: the measurement results the chat page's Measurements view charts.

Read-only.  The files are the JSON that ``eval``, ``perplexity`` and ``bench`` write
with ``--output``, kept in one folder (``LOCALLAMA_RESULTS``, else
``LOCALLAMA_HOME/results``); they are read and grouped by model as ``locallama
report`` groups them (``locallama/results.py``).  A request never names a path: the
optional ``file`` query parameters pick among the folder's own listing by name, and a
name that is not in it is a 400.  Only regular ``*.json`` files directly in the folder
are read, each at most ``MAX_FILE_BYTES``; a file that is not a result is listed
under ``skipped`` with the reason, never fatal.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from locallama.errors import InvalidRequest, LocallamaError
from locallama.results import load_report
from locallama.settings import Settings

router = APIRouter()

MAX_FILE_BYTES = 8 * 1024 * 1024  # a bench or eval result is a few KB
MAX_FILES = 500  # the newest ones, past that


@router.get("/ui/api/results")
def web_results(request: Request,
                file: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
    """``{"dir", "files": [{name, size, modified}], "skipped": [{name, error}],
    "report": {"models", "tasks", "notes"} | null}``: not async, it reads files."""
    settings: Settings = request.app.state.settings
    folder = settings.results_dir
    found = _listing(folder)
    by_name = {path.name: path for path in found}
    if file:
        unknown = [name for name in file if name not in by_name]
        if unknown:
            raise InvalidRequest(f"no result file named {unknown[0]!r} in the results folder")
        chosen = [by_name[name] for name in dict.fromkeys(file)]
    else:
        chosen = found
    good, skipped = [], []
    for path in chosen:
        error = _check(path)
        if error is None:
            good.append(path)
        else:
            skipped.append({"name": path.name, "error": error})
    report = load_report(good).to_json() if good else None
    return {
        "dir": str(folder),
        "files": [{"name": p.name, "size": st.st_size, "modified": st.st_mtime}
                  for p in found if (st := _stat(p)) is not None],
        "skipped": skipped,
        "report": report,
    }


def _listing(folder: Path) -> list[Path]:
    """Regular ``*.json`` files directly in the folder, newest last (later files win
    in ``load_report``); an absent folder holds none."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LocallamaError(f"cannot read the results folder: {exc.strerror}") from None
    files = []
    for path in entries:
        if not path.name.endswith(".json") or path.name.startswith("."):
            continue
        st = _stat(path)
        if st is not None and stat.S_ISREG(st.st_mode):
            files.append((st.st_mtime, path.name, path))
    files.sort()
    return [path for _, _, path in files[-MAX_FILES:]]


def _stat(path: Path):
    try:
        return path.stat()
    except OSError:
        return None


def _check(path: Path) -> str | None:
    """Why a file cannot be read as a result (named by its file name only), or None."""
    st = _stat(path)
    if st is None:
        return "the file went away"
    if st.st_size > MAX_FILE_BYTES:
        return f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
    try:
        load_report([path])
    except InvalidRequest as exc:
        return str(exc).replace(str(path), path.name)
    except (ValueError, TypeError, KeyError) as exc:  # a field of the wrong type
        return f"{path.name}: not a result file ({type(exc).__name__}: {exc})"
    return None
