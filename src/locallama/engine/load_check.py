"""Check that llama.cpp can load a model file, in a throw-away child process.

A file can pass the GGUF header checks (``gguf_info`` + ``gguf_check``) and still be
one llama.cpp refuses (an unknown tokenizer, a tensor of the wrong shape) or aborts
on. ``create``, ``pull`` and ``import`` call :func:`check_loads` before a manifest is
written, so such a file is refused with the reason and the store stays as it was.
The load runs in a child (``python -m locallama.engine.load_check PATH``) because
llama.cpp may ``abort()``: only the child dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from locallama.errors import InvalidModelFile

#: What starts the child: (argv, env) -> the finished process's (returncode, stderr).
#: Tests replace it to count starts or to fake a slow child.
Launcher = Callable[[list[str], dict[str, str], float], tuple[int, str]]

# Verdicts by blob digest ("sha256:…"): only successes are kept, so a refused file
# can be retried once llama.cpp (or the file) changes. In-process is enough for now:
# the server and a CLI command each keep one process for their life, a blob's bytes
# never change under its digest, and a miss costs one load (about a second with mmap).
_passed: set[str] = set()
_lock = threading.Lock()


def _launch(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run the child to its end or to ``timeout`` seconds (then kill it: returncode
    ``None`` is reported as -SIGKILL with ``timed_out``); (returncode, stderr text)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err.decode("utf-8", errors="replace")


launcher: Launcher = _launch


def check_loads(path: Path, timeout: float, digest: str | None = None) -> None:
    """Load ``path`` once in a child process; return when llama.cpp loads it.

    ``timeout`` is in seconds (LOCALLAMA_LOAD_CHECK_TIMEOUT). With ``digest`` (the
    blob's ``sha256:…``), a file that passed before is not loaded again.
    Raises InvalidModelFile (400) naming the cause: llama.cpp's last log line when it
    refused the file, the signal when the child was killed (``abort()``: SIGABRT),
    or the time limit when the load ran past it.
    """
    if digest is not None:
        with _lock:
            if digest in _passed:
                return
    package = str(Path(__file__).resolve().parents[2])  # the locallama this process runs
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package, env.get("PYTHONPATH")) if p)
    env.setdefault("GGML_NO_BACKTRACE", "1")  # no debugger attached on abort(): its
    # backtrace would bury the assertion that says why
    argv = [sys.executable, "-m", "locallama.engine.load_check", str(path)]
    try:
        code, err = launcher(argv, env, timeout)
    except subprocess.TimeoutExpired:
        raise InvalidModelFile(
            f"llama.cpp cannot load this model file: loading ran past {timeout:g} s "
            "(LOCALLAMA_LOAD_CHECK_TIMEOUT)") from None
    if code == 0:
        if digest is not None:
            with _lock:
                _passed.add(digest)
        return
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        last = _last_line(err)
        raise InvalidModelFile(f"llama.cpp cannot load this model file: it stopped with "
                               f"{name}" + (f" ({last})" if last else ""))
    raise InvalidModelFile("llama.cpp cannot load this model file: "
                           + (_last_line(err) or f"the check exited with {code}"))


#: words that mark the line of a child's output that says why it stopped
_CAUSE_WORDS = ("error", "assert", "abort", "failed", "exception", "terminate", "fatal")


def _last_line(text: str) -> str:
    """The line of ``text`` that says why: the last that reads like an error (an
    assertion, an abort), else the last non-empty one; at most 300 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if any(word in line.lower() for word in _CAUSE_WORDS):
            return line[:300]
    return lines[-1][:300] if lines else ""


def _reason(errors: list[str]) -> str:
    """The line that says why: llama.cpp logs "error loading model: <why>" before
    the generic "failed to load model"."""
    for line in errors:
        if "error loading model:" in line:
            return line.split("error loading model:", 1)[1].strip()
    return errors[0] if errors else "the load returned nothing"


def _main(argv: list[str]) -> int:
    """The child: load ARGV[0] with mmap and no context; 0 when it loads, else 1 with
    llama.cpp's last error line on stderr."""
    import ctypes

    import llama_cpp

    errors: list[str] = []

    @llama_cpp.llama_log_callback
    def log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").strip()
        if line and level in (3, 4):  # GGML_LOG_LEVEL_WARN, _ERROR
            errors.append(line)

    llama_cpp.llama_log_set(log, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    params.use_mmap = True
    params.vocab_only = False
    try:
        model = llama_cpp.llama_model_load_from_file(argv[0].encode(), params)
    except Exception as exc:  # ctypes or llama-cpp-python refusing before llama.cpp
        sys.stderr.write(f"{exc}\n")
        return 1
    if not model:
        sys.stderr.write(_reason(errors) + "\n")
        return 1
    llama_cpp.llama_model_free(model)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
