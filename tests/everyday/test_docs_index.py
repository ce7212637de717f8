"""Documents, passages and the on-disk index behind ``ask --docs``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pypdf import PdfWriter

from docshelpers import WordsRuntime, make_pdf
from locallama.errors import InvalidRequest, LocallamaError
from locallama.everyday.docs import (
    DocumentError,
    chunk_spans,
    find_documents,
    read_document,
    split_passages,
)
from locallama.everyday.index import DocIndex, EmbedModel, embed_model, index_path

CATS = "Cats sleep most of the day and hunt mice at night."
DOGS = "Dogs bark at the postman and fetch sticks in the park."
BIRDS = "Birds migrate south in autumn, flying thousands of kilometres."


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- documents and passages ----------------------------------------------------------


def test_passages_are_exact_slices_cut_at_paragraphs(tmp_path):
    paragraphs = [f"Paragraph {i}: " + " ".join(f"word{i}x{j}" for j in range(30))
                  for i in range(8)]
    text = "# Title\n\n" + "\n\n".join(paragraphs) + "\n"
    path = write(tmp_path / "notes.md", text)
    sections = read_document(path)
    assert [s.page for s in sections] == [None] and sections[0].text == text
    passages = split_passages(sections, max_chars=500, overlap=60)
    assert len(passages) > 3
    assert [p.index for p in passages] == list(range(1, len(passages) + 1))
    for p in passages:
        assert text[p.start:p.end] == p.text and len(p.text) <= 500
        assert p.text == p.text.strip()
    # paragraphs are ~250 characters, so every cut falls at a paragraph's end
    assert all(text[p.end:p.end + 2] == "\n\n" or p.end == len(text.rstrip())
               for p in passages)
    # overlap: each passage starts before the previous one ends
    assert all(b.start < a.end for a, b in zip(passages, passages[1:], strict=False))
    # every word of the document is in some passage
    covered = " ".join(p.text for p in passages)
    assert all(w in covered for w in text.split())


def test_a_long_paragraph_is_cut_at_sentences_then_words():
    text = " ".join(f"Sentence number {i} is here." for i in range(100))
    spans = chunk_spans(text, max_chars=200, overlap=0)
    assert all(text[s:e].endswith(".") for s, e in spans[:-1])
    words = "x" * 50 + " " + "y" * 500
    spans = chunk_spans(words, max_chars=100, overlap=10)
    assert all(e - s <= 100 for s, e in spans) and spans[:2] == [(0, 50), (51, 151)]
    assert chunk_spans("") == [] and chunk_spans(" \n\n ") == []


def test_find_documents_skips_hidden_and_unknown_files(tmp_path):
    for name in ["a.md", "sub/b.txt", "sub/deeper/c.html", "d.PDF", "e.rst", ".hidden.md",
                 ".git/config.md", "sub/.cache/x.txt", "image.png", "data.json"]:
        write(tmp_path / name, "x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_documents(tmp_path)]
    assert found == ["a.md", "d.PDF", "e.rst", "sub/b.txt", "sub/deeper/c.html"]


def test_html_gives_its_readable_text(tmp_path):
    body = " ".join(["Cats sleep most of the day."] * 10)
    path = write(tmp_path / "page.html", f"""<html><head><title>Cats</title>
        <script>var tracking = "SECRET";</script><style>p {{color: red}}</style></head>
        <body><article><h1>About cats</h1><p>{body}</p><p>They hunt at night.</p></article>
        </body></html>""")
    [section] = read_document(path)
    assert "Cats sleep most of the day." in section.text and "hunt at night" in section.text
    assert "SECRET" not in section.text and "color" not in section.text
    fragment = write(tmp_path / "bare.htm", "<p>just a line</p>")
    assert read_document(fragment)[0].text.strip() == "just a line"


def test_pdf_pages_are_sections_and_passages_keep_their_page(tmp_path):
    path = make_pdf(tmp_path / "animals.pdf", [CATS, DOGS])
    sections = read_document(path)
    assert [(s.page, s.text.strip()) for s in sections] == [(1, CATS), (2, DOGS)]
    passages = split_passages(sections)
    assert [(p.index, p.page) for p in passages] == [(1, 1), (2, 2)]
    assert all(sections[p.page - 1].text[p.start:p.end] == p.text for p in passages)


def test_a_blank_pdf_has_no_passages_and_a_broken_one_is_an_error(tmp_path):
    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    with (tmp_path / "blank.pdf").open("wb") as f:
        writer.write(f)
    assert split_passages(read_document(tmp_path / "blank.pdf")) == []
    write(tmp_path / "broken.pdf", "%PDF-1.4 this is not really a PDF")
    with pytest.raises(DocumentError, match="PDF"):
        read_document(tmp_path / "broken.pdf")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02\xff")
    with pytest.raises(DocumentError, match="not text"):
        read_document(tmp_path / "binary.txt")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert read_document(tmp_path / "latin.txt")[0].text == "café"


# -- the index ---------------------------------------------------------------------


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    write(folder / "cats.md", CATS)
    write(folder / "dogs.md", DOGS)
    write(folder / "sub/birds.txt", BIRDS)
    return folder


def open_index(tmp_path: Path, folder: Path) -> DocIndex:
    return DocIndex(index_path(tmp_path / "home", folder), folder)


def passage_ids(index: DocIndex) -> dict[str, list[int]]:
    rows = index.db.execute("SELECT f.path, p.id FROM passages p JOIN files f "
                            "ON f.id = p.file_id ORDER BY p.id")
    ids: dict[str, list[int]] = {}
    for path, pid in rows:
        ids.setdefault(path, []).append(pid)
    return ids


def test_index_lives_under_home_one_file_per_folder(tmp_path, docs):
    path = index_path(tmp_path / "home", docs)
    assert path.parent == tmp_path / "home" / "index" and path.name.startswith("docs-")
    assert index_path(tmp_path / "home", tmp_path / "other" / "docs") != path
    assert index_path(tmp_path / "home", docs / ".") == path


def test_update_embeds_only_what_changed(tmp_path, docs):
    rt = WordsRuntime()
    model = embed_model(rt, "words")
    with open_index(tmp_path, docs) as index:
        report = index.update(rt, model)
        assert sorted(report.added) == ["cats.md", "dogs.md", "sub/birds.txt"]
        assert sorted(rt.embedded) == sorted([CATS, DOGS, BIRDS])
        before = passage_ids(index)

    # one modified, one added, one deleted, one touched without a change
    write(docs / "dogs.md", DOGS + " They also dig holes.")
    write(docs / "fish.md", "Fish swim in schools.")
    (docs / "sub/birds.txt").unlink()
    stat = (docs / "cats.md").stat()
    os.utime(docs / "cats.md", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    rt.embed_calls.clear()
    with open_index(tmp_path, docs) as index:
        report = index.update(rt, model)
        assert (report.added, report.changed, report.removed, report.unchanged) == (
            ["fish.md"], ["dogs.md"], ["sub/birds.txt"], ["cats.md"])
        assert sorted(rt.embedded) == sorted([DOGS + " They also dig holes.",
                                              "Fish swim in schools."])
        after = passage_ids(index)
        assert after["cats.md"] == before["cats.md"]  # untouched rows keep their ids
        assert "sub/birds.txt" not in after
        assert index.passage("dogs.md", 1).text.endswith("dig holes.")

        rt.embed_calls.clear()
        assert index.update(rt, model).unchanged == ["cats.md", "dogs.md", "fish.md"]
        assert rt.embed_calls == []  # nothing changed, nothing embedded


def test_another_embedding_model_or_reindex_re_embeds_everything(tmp_path, docs):
    rt = WordsRuntime()
    with open_index(tmp_path, docs) as index:
        index.update(rt, embed_model(rt, "words"))
        rt.embed_calls.clear()
        report = index.update(rt, embed_model(rt, "other-words"))
        assert sorted(report.changed) == ["cats.md", "dogs.md", "sub/birds.txt"]
        assert {m for m, _ in rt.embed_calls} == {"other-words"}
        assert len(rt.embedded) == 3

        rt.digests["other-words"] = "sha256:re-pulled"  # same name, new weights
        rt.embed_calls.clear()
        assert len(index.update(rt, embed_model(rt, "other-words")).changed) == 3
        assert len(rt.embedded) == 3

        rt.embed_calls.clear()
        report = index.update(rt, embed_model(rt, "other-words"), reindex=True)
        assert len(report.added) == 3 and len(rt.embedded) == 3


def test_retrieval_ranks_the_passage_sharing_the_question_words_first(tmp_path, docs):
    rt = WordsRuntime()
    model = embed_model(rt, "words")
    with open_index(tmp_path, docs) as index:
        index.update(rt, model)
        hits = index.search(rt, model, "When do birds migrate south?", k=2)
        assert [h.source for h in hits] == ["sub/birds.txt", hits[1].source]
        assert len(hits) == 2 and hits[0].score > hits[1].score
        assert hits[0].text == BIRDS and (hits[0].start, hits[0].end) == (0, len(BIRDS))
        assert index.search(rt, model, "who barks at the postman", k=1)[0].source == "dogs.md"
        assert len(index.search(rt, model, "cats", k=10)) == 3
        # passages embedded by another model are never compared with this one's
        assert index.search(rt, EmbedModel("words", "sha256:other"), "cats") == []


def test_unreadable_files_are_skipped_with_a_warning(tmp_path, docs):
    write(docs / "broken.pdf", "%PDF-1.4 garbage")
    make_pdf(docs / "good.pdf", [BIRDS])
    rt, warnings = WordsRuntime(), []
    with open_index(tmp_path, docs) as index:
        report = index.update(rt, embed_model(rt, "words"), warn=warnings.append)
        assert report.skipped == ["broken.pdf"] and "good.pdf" in report.added
        assert len(warnings) == 1 and warnings[0].startswith("skipping broken.pdf: ")
        assert index.passage("good.pdf", 1).page == 1


def test_a_folder_without_documents_is_an_error(tmp_path):
    write(tmp_path / "empty/picture.png", "x")
    write(tmp_path / "empty/.notes.md", "hidden")
    with open_index(tmp_path, tmp_path / "empty") as index, pytest.raises(
            InvalidRequest, match="no documents in"):
        index.update(WordsRuntime(), EmbedModel("words", "x"))


def test_progress_counts_passages_across_files(tmp_path, docs):
    rt, seen = WordsRuntime(), []
    with open_index(tmp_path, docs) as index:
        index.update(rt, embed_model(rt, "words"),
                     progress=lambda path, done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_the_tiny_model_embeds_through_the_real_runtime(tmp_path, docs, runtime):
    """The plumbing on a real engine (its vectors are random: no ranking asserted)."""
    model = embed_model(runtime, "tiny")
    assert model.digest.startswith("sha256:")
    with open_index(tmp_path, docs) as index:
        index.update(runtime, model)
        hits = index.search(runtime, model, "birds", k=2)
        row = index.db.execute("SELECT vector FROM passages LIMIT 1").fetchone()
    assert len(hits) == 2 and all(-1.01 <= h.score <= 1.01 for h in hits)
    assert len(row[0]) == 4 * runtime.show("tiny").embedding_length


def test_a_damaged_index_is_rebuilt(tmp_path, docs):
    path = index_path(tmp_path / "home", docs)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not an SQLite database, just garbage" * 100)
    rt = WordsRuntime()
    with DocIndex(path, docs) as index:
        assert len(index.update(rt, embed_model(rt, "words")).added) == 3


def test_an_index_that_cannot_be_created_is_a_one_line_error(tmp_path, docs):
    (tmp_path / "home").write_text("a file where the index folder should be")
    with pytest.raises(LocallamaError, match="cannot open the index"):
        DocIndex(index_path(tmp_path / "home", docs), docs)
