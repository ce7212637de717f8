"""Check that llama.cpp's mtmd loads a vision projector for a model, in a throw-away
child process (``python -m locallama.engine.vision_check MODEL PROJECTOR``), as
``engine/load_check.py`` checks a model file: mtmd may abort on a file no header check
refuses, and then only the child dies.  ``create`` runs it before the manifest is
written, so a projector that does not load (corrupt, or made for a model of another
embedding size) is refused with the reason and the store stays as it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from locallama.engine import load_check
from locallama.errors import InvalidModelFile


def check_projector(model: Path, projector: Path, timeout: float) -> None:
    """Return when mtmd loads ``projector`` beside ``model`` (its text model); else
    InvalidModelFile (400) naming the cause: mtmd's last error line, the signal that
    stopped the child, or ``timeout`` seconds (LOCALLAMA_LOAD_CHECK_TIMEOUT) passed."""
    package = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package, env.get("PYTHONPATH")) if p)
    env.setdefault("GGML_NO_BACKTRACE", "1")
    argv = [sys.executable, "-m", "locallama.engine.vision_check", str(model), str(projector)]
    try:
        code, err = load_check.launcher(argv, env, timeout)
    except subprocess.TimeoutExpired:
        raise InvalidModelFile(f"llama.cpp cannot load this vision projector: loading ran "
                               f"past {timeout:g} s (LOCALLAMA_LOAD_CHECK_TIMEOUT)") from None
    if code == 0:
        return
    last = load_check._last_line(err)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        raise InvalidModelFile(f"llama.cpp cannot load this vision projector: it stopped "
                               f"with {name}" + (f" ({last})" if last else ""))
    raise InvalidModelFile("llama.cpp cannot load this vision projector: "
                           + (last or f"the check exited with {code}"))


def _main(argv: list[str]) -> int:
    """The child: load the model (weights mmapped, no context) and the projector
    with it; 0 when both load, else 1 with the last error line on stderr."""
    import ctypes

    import llama_cpp
    from llama_cpp import mtmd_cpp as mtmd

    errors: list[str] = []

    @llama_cpp.llama_log_callback
    def log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").strip()
        if line and level in (3, 4):  # GGML_LOG_LEVEL_WARN, _ERROR
            errors.append(line)

    llama_cpp.llama_log_set(log, ctypes.c_void_p(0))
    mtmd.mtmd_log_set(log, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    params.use_mmap = True
    model = llama_cpp.llama_model_load_from_file(argv[0].encode(), params)
    if not model:
        sys.stderr.write("error: the model itself does not load\n")
        return 1
    ctx_params = mtmd.mtmd_context_params_default()
    ctx_params.use_gpu = False
    ctx_params.n_threads = 1
    ctx_params.warmup = False
    ctx = mtmd.mtmd_init_from_file(argv[1].encode(), model, ctx_params)
    if not ctx:
        sys.stderr.write((errors[-1] if errors else "error: mtmd refused the projector") + "\n")
        return 1
    if not mtmd.mtmd_support_vision(ctx):
        sys.stderr.write("error: the projector has no vision encoder\n")
        return 1
    mtmd.mtmd_free(ctx)
    llama_cpp.llama_model_free(model)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
