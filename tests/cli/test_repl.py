"""The chat REPL as a user drives it: the real ``locallama run`` on a pseudo-terminal.

The tiny model's text is noise, so these tests check plumbing: prompts, streamed
answers, slash commands, Ctrl-C and Ctrl-D, exit statuses, what ``/save`` stores.
Most sessions run with TERM=dumb (prompt_toolkit then prints plain ``>>> `` and
echoes keys); one runs the full xterm renderer.  PROMPT_TOOLKIT_NO_CPR=1 keeps
prompt_toolkit from asking the terminal for its cursor position.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import gguf
import pexpect
import psutil
import pytest

from liveserver import free_port
from locallama.cli.common import server_answers
from runtimes import local_runtime
from thinkers import OPENED_TEMPLATE
from tinymodel import SPECIAL_TOKENS, write_tiny_gguf

LOCALLAMA = str(Path(sys.executable).with_name("locallama"))
PROMPT = ">>> "
MORE = "... "
PLACEHOLDER = "Send a message (/? for help)"
TIMEOUT = 15  # seconds for any one expect; answers take milliseconds
#: one thread: the tiny model needs no more, and spinning threads crawl on a busy machine
TINY = "PARAMETER num_predict 8\nPARAMETER num_thread 1\n"
EVAL_RATE = re.compile(r"^eval rate:", re.M)  # not "prompt eval rate:"

_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


def clean(text: str) -> str:
    """Terminal output without escape sequences or carriage returns."""
    return _ESCAPES.sub("", text).replace("\r", "")


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# -- fixtures -----------------------------------------------------------------------


def _chatty_gguf(path: Path) -> Path:
    """A tiny model that (almost) never ends its answer: for Ctrl-C tests.

    Every token embedding gets a large constant in dimension 0, so the final hidden
    state points the same way there whatever the text; the output rows of </s> and
    <|im_end|> get a large negative weight in that dimension, so their logits sit
    far below the rest.  A long training context lets num_ctx (and the answer) grow.
    """
    write_tiny_gguf(path, n_ctx_train=131072)
    reader = gguf.GGUFReader(path, "r+")
    tensors = {t.name: t.data for t in reader.tensors}
    tensors["token_embd.weight"][:, 0] += 20.0
    end_ids = [SPECIAL_TOKENS.index("</s>"), SPECIAL_TOKENS.index("<|im_end|>")]
    tensors["output.weight"][end_ids, 0] = -5.0
    reader.data.flush()
    del reader, tensors
    return path


@pytest.fixture
def store(tmp_path: Path, tiny_gguf: Path, cli_env: dict[str, str]) -> Path:
    """The store cli_env points at, holding ``tiny`` (short answers), ``other`` and
    ``opener`` (a thinking template that opens <think>: the tiny model's noise is all
    thinking)."""
    models = Path(cli_env["LOCALLAMA_MODELS"])
    local_runtime(tmp_path, ("tiny", tiny_gguf, TINY),
                  ("other", tiny_gguf, f'{TINY}SYSTEM "I am other."\n'),
                  ("opener", tiny_gguf, f'{TINY}TEMPLATE """{OPENED_TEMPLATE}"""\n'),
                  models_dir=models, history_file=tmp_path / "unused").close()
    return models


@pytest.fixture
def chatty(store: Path, tmp_path: Path) -> str:
    """A model in the store whose answers run on for tens of seconds unless stopped."""
    path = _chatty_gguf(tmp_path / "chatty.gguf")
    local_runtime(tmp_path, ("chatty", path, "PARAMETER num_predict 100000\n"
                             "PARAMETER num_ctx 32768\nPARAMETER temperature 1\n"
                             "PARAMETER num_thread 1\n"),
                  models_dir=store, history_file=tmp_path / "unused").close()
    return "chatty"


class Session:
    """One ``locallama run`` on a pty, with the whole transcript kept for checks."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str, term: str = "dumb",
                 preexec_fn=None) -> None:
        env = {**env, "TERM": term, "PROMPT_TOOLKIT_NO_CPR": "1", "COLUMNS": "200",
               "LINES": "40"}
        self.transcript = io.StringIO()
        self.child = pexpect.spawn(
            LOCALLAMA, ["run", *args], env=env, cwd=str(cwd), dimensions=(40, 200),
            encoding="utf-8", codec_errors="replace", timeout=TIMEOUT, preexec_fn=preexec_fn,
        )
        self.child.delaybeforesend = None  # wait_for_input() does the waiting
        self.child.logfile_read = self.transcript

    def wait_for_input(self, timeout: float = TIMEOUT) -> None:
        """Wait until prompt_toolkit reads keys (the pty leaves canonical mode).

        With TERM=dumb, ``>>> `` is printed before the terminal goes raw; a Ctrl-D
        sent in between is taken by the line discipline as end-of-file and lost.
        """
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.child.child_fd)[3] & termios.ICANON:
            assert time.monotonic() < deadline, "the REPL never started reading input"
            time.sleep(0.01)

    def wait_for_cooked(self, timeout: float = TIMEOUT) -> None:
        """Wait until prompt_toolkit has given the terminal back (canonical mode, where
        Ctrl-C is SIGINT): a Ctrl-C sent while it is still raw is a key press that the
        next prompt reads."""
        deadline = time.monotonic() + timeout
        while not termios.tcgetattr(self.child.child_fd)[3] & termios.ICANON:
            assert time.monotonic() < deadline, "the REPL kept the terminal raw"
            time.sleep(0.01)

    def send(self, line: str) -> None:
        self.wait_for_input()
        self.child.sendline(line)

    def key(self, char: str) -> None:
        """Press Ctrl+char at the prompt."""
        self.wait_for_input()
        self.child.sendcontrol(char)

    def prompt(self, timeout: float = TIMEOUT) -> str:
        """Wait for the next ``>>> `` prompt; return what came before it, cleaned."""
        self.child.expect_exact(PROMPT, timeout=timeout)
        return clean(self.child.before)

    def ask(self, line: str, timeout: float = TIMEOUT) -> str:
        """Send one line at the prompt; return its output without the echoed line."""
        self.send(line)
        out = self.prompt(timeout)
        lines = out.split("\n")
        assert lines[0].strip() == line.strip(), out  # the echo of what was typed
        return "\n".join(lines[1:]).strip("\n")

    def exit_status(self) -> int | None:
        self.child.expect(pexpect.EOF, timeout=TIMEOUT)
        self.child.close()
        no_traceback(self.text)
        return self.child.exitstatus

    @property
    def text(self) -> str:
        return clean(self.transcript.getvalue())

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def repl(store: Path, cli_env: dict[str, str], tmp_path: Path):
    """Start ``locallama run MODEL [ARGS]`` on a pty and wait for the first prompt."""
    sessions: list[Session] = []

    def start(*args: str, term: str = "dumb", model: str = "tiny") -> Session:
        session = Session(cli_env, tmp_path, model, *args, term=term)
        sessions.append(session)
        if term == "dumb":
            session.prompt()
        return session

    yield start
    for session in sessions:
        session.close()


# -- the REPL -----------------------------------------------------------------------


def test_chat_streams_an_answer_and_bye_exits_zero(repl, cli_env):
    s = repl()
    answer = s.ask("Hello there")
    assert answer.strip(), "the model should have answered something"
    assert s.ask("And again").strip()
    s.send("/bye")
    assert s.exit_status() == 0
    history = Path(cli_env["LOCALLAMA_HOME"]) / "history"
    assert "Hello there" in history.read_text() and "/bye" in history.read_text()


def test_ctrl_d_at_an_empty_prompt_exits_zero(repl):
    s = repl()
    s.key("c")  # Ctrl-C at the prompt only says how to leave
    assert "Use Ctrl + d or /bye to exit." in s.prompt()
    s.key("d")
    assert s.exit_status() == 0


def test_slash_commands(repl):
    s = repl()
    help_text = s.ask("/?")
    assert "Available Commands:" in help_text and "/bye" in help_text and '"""' in help_text
    assert "/set parameter" in s.ask("/? set") and "/show info" in s.ask("/show")

    info = s.ask("/show info")
    assert re.search(r"architecture\s+llama", info), info
    assert re.search(r"num_predict\s+8", info), info

    assert s.ask("/set parameter temperature 0") == "Set parameter 'temperature' to '0'"
    params = s.ask("/show parameters")
    assert re.search(r"^temperature\s+0(\.0)?$", params, re.M), params
    assert re.search(r"^num_predict\s+8$", params, re.M), params

    assert s.ask("/show system") == "No system message was specified."
    assert s.ask("/set system You are terse.") == "Set system message."
    assert s.ask("/show system") == "You are terse."

    assert s.ask("/foo bar") == "Unknown command '/foo'. Type /? for help"

    error = s.ask("/set parameter num_ctx banana")
    assert len(error.splitlines()) == 1 and error.startswith("Error: "), error
    assert "num_ctx" in error and "banana" in error
    error = s.ask("/set parameter top_k -5")
    assert len(error.splitlines()) == 1 and error.startswith("Error: "), error
    error = s.ask("/set parameter no_such_option 1")
    assert len(error.splitlines()) == 1 and error.startswith("Error: "), error
    assert re.search(r"^temperature\s+0", s.ask("/show parameters"), re.M)  # still set

    assert s.ask("Still there?").strip()  # the session goes on after every error
    s.send("/bye")
    assert s.exit_status() == 0


def test_multiline_input_is_one_message(repl, cli):
    s = repl("--verbose")
    s.send('"""')
    assert s.child.expect_exact([MORE, PROMPT]) == 0, "a continuation prompt, not a new one"
    s.send("line one")
    assert s.child.expect_exact([MORE, PROMPT]) == 0
    s.send('line two"""')
    out = s.prompt()
    assert len(EVAL_RATE.findall(out)) == 1, out  # answered once
    assert s.ask("/save multi") == "Created new model 'multi'"
    s.send("/bye")
    assert s.exit_status() == 0

    modelfile = cli("show", "multi", "--modelfile").stdout
    assert modelfile.count("MESSAGE user") == 1, modelfile
    # as in Ollama, the lines join with newlines (so a bare opening """ gives a leading one)
    assert re.search(r'^MESSAGE user """\n?line one\nline two"""$', modelfile, re.M), modelfile
    assert modelfile.count("MESSAGE assistant") == 1


@pytest.fixture
def served_store(store: Path, cli_env: dict[str, str], tmp_path: Path):
    """``locallama serve`` over the store, one sequence at a time; returns the env of a
    client whose own store is empty (what it answers comes from the server)."""
    port = free_port()
    server_env = {**cli_env, "LOCALLAMA_HOST": f"127.0.0.1:{port}",
                  "LOCALLAMA_NUM_PARALLEL": "1"}
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen([LOCALLAMA, "serve"], env=server_env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not server_answers("127.0.0.1", port, timeout=1):
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not answer in 30 s"
            time.sleep(0.05)
        yield {**cli_env, "LOCALLAMA_HOST": f"127.0.0.1:{port}",
               "LOCALLAMA_MODELS": str(tmp_path / "empty")}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _runners(pid: int) -> list[int]:
    """The pids of the model runners the process ``pid`` started."""
    return sorted(p.pid for p in psutil.Process(pid).children()
                  if "locallama.engine.runner" in " ".join(p.cmdline()))


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("engine", ["runner", "inprocess", "server", "sigint-ignored"])
def test_ctrl_c_stops_a_long_answer_and_the_session_goes_on(engine, request, store, chatty,
                                                            cli_env, tmp_path):
    """Ctrl-C during an answer stops it (the next answer, which needs the one sequence,
    comes at once) and the session goes on: with the engine in a runner process (the
    default), in the command, behind ``locallama serve``, and in a REPL started with
    SIGINT ignored (a background job of a script: Python then installs no handler)."""
    env, preexec = dict(cli_env), None
    if engine == "inprocess":
        env["LOCALLAMA_RUNNER"] = "inprocess"
    elif engine == "server":
        env = request.getfixturevalue("served_store")
    elif engine == "sigint-ignored":
        preexec = _ignore_sigint
    s = Session(env, tmp_path, chatty, preexec_fn=preexec)
    request.addfinalizer(s.close)
    s.prompt()
    s.send("Tell me a long story")
    s.child.expect_exact("Tell me a long story")
    s.child.expect(r"\S", timeout=TIMEOUT)  # the answer has begun streaming
    s.wait_for_cooked()  # the REPL reads no keys now: Ctrl-C is a signal, not a key
    assert s.child.isalive()
    runners = _runners(s.child.pid)
    assert len(runners) == (1 if engine in ("runner", "sigint-ignored") else 0), runners
    stopped_at = time.monotonic()
    s.child.sendcontrol("c")
    s.prompt(timeout=10)  # uninterrupted, this answer would run for tens of seconds
    assert time.monotonic() - stopped_at < 5
    assert "Use Ctrl + d" not in s.text  # the Ctrl-C went to the answer, not the prompt
    no_traceback(s.text)

    assert s.ask("/set parameter num_predict 4") == "Set parameter 'num_predict' to '4'"
    assert s.ask("Short one, please").strip()  # the stopped answer left the sequence free
    assert s.ask("And another").strip()
    # The terminal's Ctrl-C is not the runner's: the one that was stopped answered these
    # (a runner killed by it would have been replaced by a fresh one, another pid).
    assert _runners(s.child.pid) == runners
    s.send("/bye")
    assert s.exit_status() == 0


def test_clear_and_save_make_a_model(repl, cli):
    s = repl()
    assert s.ask("/set system You are terse.") == "Set system message."
    assert s.ask("Forget this question").strip()
    assert s.ask("/clear") == "Cleared session context"
    assert s.ask("Remember this question").strip()
    assert s.ask("/save mymodel") == "Created new model 'mymodel'"
    s.send("/bye")
    assert s.exit_status() == 0

    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
    assert "mymodel:latest" in names, listing.stdout
    modelfile = cli("show", "mymodel", "--modelfile")
    assert modelfile.returncode == 0, modelfile.stderr
    no_traceback(modelfile.stdout + modelfile.stderr)
    text = modelfile.stdout
    assert "SYSTEM You are terse." in text or 'SYSTEM "You are terse."' in text, text
    assert "MESSAGE user Remember this question" in text, text
    assert "MESSAGE assistant" in text
    assert "Forget this question" not in text  # /clear dropped it
    assert "PARAMETER num_predict 8" in text  # inherited from tiny


def test_load_switches_models_and_unknown_is_one_line(repl):
    s = repl()
    error = s.ask("/load nosuchmodel")
    assert len(error.splitlines()) == 1 and error.startswith("Error: "), error
    assert "nosuchmodel" in error
    assert s.ask("/show system") == "No system message was specified."  # still on tiny
    assert s.ask("Hello").strip()

    assert s.ask("/load other") == "Loading model 'other'"
    assert s.ask("/show system") == "I am other."
    assert s.ask("Hello").strip()
    assert s.ask("/load").startswith("Usage:")
    s.send("/bye")
    assert s.exit_status() == 0


def test_verbose_prints_timings(repl):
    s = repl("--verbose")
    out = s.ask("Hello")
    assert "prompt eval count:" in out and "eval rate:" in out, out
    assert re.search(r"eval count:\s+8 token\(s\)", out), out
    assert s.ask("/set quiet") == "Set 'quiet' mode."
    assert "eval rate:" not in s.ask("Hello")
    assert s.ask("/set verbose") == "Set 'verbose' mode."
    assert "eval rate:" in s.ask("Hello")
    s.send("/bye")
    assert s.exit_status() == 0


def test_xterm_renderer(repl):
    """The full prompt_toolkit renderer: placeholders, redraws, multi-line input."""
    s = repl(term="xterm-256color")
    s.child.expect_exact(PLACEHOLDER)
    s.send("Hello there")
    s.child.expect_exact(PLACEHOLDER)
    s.send('"""')
    s.child.expect_exact('Use """ to end multi-line input')
    s.send('more"""')
    s.child.expect_exact(PLACEHOLDER)
    s.send("/show info")
    s.child.expect(r"architecture\s+llama")
    s.child.expect_exact(PLACEHOLDER)
    s.key("d")
    assert s.exit_status() == 0


# -- one-shot modes (no terminal) ------------------------------------------------------


def test_run_with_a_prompt_answers_once(store, cli):
    result = cli("run", "tiny", "Hello")
    assert result.returncode == 0, result.stderr
    no_traceback(result.stdout + result.stderr)
    assert result.stdout.strip()
    assert ">>>" not in result.stdout


def test_run_with_piped_input_answers_once(store, cli):
    result = cli("run", "tiny", "--verbose", input="Hello")
    assert result.returncode == 0, result.stderr
    no_traceback(result.stdout + result.stderr)
    assert result.stdout.strip() and ">>>" not in result.stdout
    assert len(EVAL_RATE.findall(result.stderr)) == 1, result.stderr


def test_run_shows_thinking_apart_and_hides_it_when_asked(store, cli):
    shown = cli("run", "opener", "Hello")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Thinking...\n") and "...done thinking." in shown.stdout
    assert len(shown.stdout) > len("Thinking...\n\n...done thinking.\n\n")
    hidden = cli("run", "opener", "--hidethinking", "Hello")
    assert hidden.returncode == 0, hidden.stderr
    assert "Thinking..." not in hidden.stdout and hidden.stdout.strip() == ""


def test_run_think_on_a_model_that_does_not_think_is_one_line(store, cli):
    result = cli("run", "tiny", "--think", "Hello")
    assert result.returncode != 0
    no_traceback(result.stdout + result.stderr)
    assert "does not support thinking" in result.stderr
    assert cli("run", "tiny", "--nothink", "Hello").returncode == 0


def test_set_think_and_nothink_in_the_repl(repl):
    s = repl()
    assert "Set 'think' mode." in s.ask("/set think")
    assert "does not support thinking" in s.ask("Hello")
    assert "Invalid think level" in s.ask("/set think max")
    assert "Set 'nothink' mode." in s.ask("/set nothink")
    assert s.ask("Hello").strip()
    assert "/set nothink" in s.ask("/? set")


def test_the_repl_dims_thinking_on_a_terminal(repl):
    s = repl("--think", term="xterm-256color", model="opener")
    s.child.expect_exact(PLACEHOLDER)
    s.send("Hello")
    s.child.expect_exact("...done thinking.")
    s.child.expect_exact(PLACEHOLDER)
    assert "\x1b[2m" in s.transcript.getvalue()  # Rich's dim
    s.send("/set hidethinking")
    s.child.expect_exact(PLACEHOLDER)
    s.send("Hello again")
    s.child.expect_exact(PLACEHOLDER)
    s.key("d")
    assert s.exit_status() == 0
    assert s.text.count("Thinking...") == 1


def test_run_an_unknown_model_is_one_line(store, cli):
    result = cli("run", "nosuchmodel", "hi")
    assert result.returncode == 1
    no_traceback(result.stdout + result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "nosuchmodel" in lines[0]
    assert result.stdout == ""
