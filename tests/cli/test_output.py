"""cli/output.py: what reaches standard output is the CLI's own output, nothing else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tinymodel import write_tiny_gguf


def _run(code: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          timeout=60, check=False)


def test_native_writes_to_descriptor_1_go_to_stderr_and_the_answer_to_stdout():
    """As llama.cpp's or gdb's backtrace would write: straight to file descriptor 1."""
    done = _run("""
        import os, subprocess, sys
        from locallama.cli.output import isolate_stdout
        print("before", flush=True)
        isolate_stdout()
        os.write(1, b"native line\\n")
        subprocess.run(["sh", "-c", "echo child line"], check=True)
        print("the answer")
        sys.stdout.write("more answer\\n")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"before\nthe answer\nmore answer\n"
    assert b"native line\n" in done.stderr and b"child line\n" in done.stderr


def test_a_piped_answer_holds_only_the_answer_with_llama_cpp_logging_on(tmp_path, cli,
                                                                       cli_env):
    """`locallama run` end to end with LOCALLAMA_DEBUG (llama.cpp's log on): its log
    lines reach stderr, and stdout is the streamed answer alone."""
    write_tiny_gguf(tmp_path / "tiny.gguf")
    model = tmp_path / "tiny.gguf"  # a bounded answer: a random model may never say EOS
    (tmp_path / "Modelfile").write_text(f"FROM {model}\nPARAMETER num_predict 16\n")
    assert cli("create", "tiny").returncode == 0
    cli_env["LOCALLAMA_DEBUG"] = "1"
    done = cli("run", "tiny", "Once upon a time", input="")
    assert done.returncode == 0, done.stderr
    assert "llama_model_loader" in done.stderr or "load_tensors" in done.stderr
    assert "llama_" not in done.stdout and "load_tensors" not in done.stdout
    assert done.stdout.endswith("\n")
