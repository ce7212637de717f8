"""Documents for ``ask``: finding them in a folder, reading their text, cutting passages.

A passage is an exact slice of a document's text (``text[start:end]``), and a PDF
keeps its pages apart, so a citation ``source#index`` names a span the user can
find: characters ``start`` to ``end`` of the file (of one page, for a PDF; of the
extracted readable text, for HTML).  Chunking counts characters, not tokens, so it
does not depend on the embedding model and needs no tokenizer round trips.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from locallama.everyday.inputs import html_to_text
from locallama.quiet import quiet_logger

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text", ".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
PDF_SUFFIXES = frozenset({".pdf"})
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES

CHUNK_CHARS = 1000  # about 250 tokens of English: k=4 passages fit a 2048-token context
OVERLAP_CHARS = 120  # a sentence cut at a boundary is still whole in one of the two

_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?。][\"')\]]*(?=\s)")
_SPACE = re.compile(r"\s")


class DocumentError(Exception):
    """A document that cannot be read (a broken PDF, a binary file named .txt).

    The message says why, not which file: the caller knows the path to show.

    Not a LocallamaError on purpose: one bad file is skipped with a warning, the
    rest of the folder is still indexed."""


@dataclass(frozen=True)
class Section:
    """Text that passages are cut from: a whole file, or one page of a PDF."""

    text: str
    page: int | None = None  # 1-based page number for a PDF


@dataclass(frozen=True)
class Passage:
    """A retrievable piece of a document; ``text == section.text[start:end]``."""

    index: int  # 1-based, in reading order across the file's sections
    text: str
    start: int  # character offsets into the section's text
    end: int
    page: int | None = None


def find_documents(folder: Path) -> list[Path]:
    """Readable documents under ``folder``, recursively, in a stable order.

    Hidden files and folders (a leading dot: .git, .venv, editor state) are
    skipped, and so is anything with a suffix we cannot read.  Symlinked folders
    are not followed, so a link loop cannot hang the scan."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            if (not name.startswith(".") and path.suffix.lower() in SUFFIXES
                    and path.is_file()):
                found.append(path)
    return found


def read_document(path: Path) -> list[Section]:
    """The text of one document, by its suffix; DocumentError when it cannot be read."""
    suffix = path.suffix.lower()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read it: {exc.strerror or exc}") from None
    if suffix in PDF_SUFFIXES:
        return _read_pdf(data)
    text = _decode(data)
    if suffix in HTML_SUFFIXES:
        return [Section(_html_text(text))]
    return [Section(text)]


def split_passages(sections: list[Section], max_chars: int = CHUNK_CHARS,
                   overlap: int = OVERLAP_CHARS) -> list[Passage]:
    """Passages of every section, numbered from 1 across the whole document."""
    passages: list[Passage] = []
    for section in sections:
        for start, end in chunk_spans(section.text, max_chars, overlap):
            passages.append(Passage(len(passages) + 1, section.text[start:end], start, end,
                                    section.page))
    return passages


def chunk_spans(text: str, max_chars: int = CHUNK_CHARS,
                overlap: int = OVERLAP_CHARS) -> list[tuple[int, int]]:
    """(start, end) spans of at most ``max_chars``, cut at the best boundary in reach.

    The preferred cut is a paragraph break, then a line break, a sentence end, any
    whitespace, and only then the middle of a word; a cut is never made in the
    first third of a span, so passages do not come out tiny.  Consecutive spans
    overlap by up to ``overlap`` characters, started at a word.  Spans carry no
    leading or trailing whitespace and never an empty one."""
    if max_chars < 1 or overlap < 0 or overlap * 2 > max_chars:
        raise ValueError("need max_chars >= 1 and 0 <= overlap <= max_chars / 2")
    spans: list[tuple[int, int]] = []
    start = _skip_space(text, 0)
    while start < len(text):
        limit = start + max_chars
        cut = len(text) if limit >= len(text) else _cut(text, start + max_chars // 3, limit)
        if cut <= start:  # nothing to cut at in reach: cut the word
            cut = limit
        end = cut
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
        if cut >= len(text):
            break
        start = _skip_space(text, _next_start(text, start, end, cut, overlap))
    return spans


def _cut(text: str, low: int, limit: int) -> int:
    """Where to end a span that may not reach past ``limit``."""
    window = text[low:limit + 1]  # +1: a break right at the limit still counts
    for pattern in (_PARAGRAPH, _LINE):
        if last := _last_match(pattern, window):
            return min(low + last.start(), limit)
    if last := _last_match(_SENTENCE, window):
        return min(low + last.end(), limit)
    for i in range(min(limit, len(text) - 1), low - 1, -1):
        if text[i].isspace():
            return i
    return limit


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def _next_start(text: str, start: int, end: int, cut: int, overlap: int) -> int:
    """Where the next span starts: ``overlap`` characters back from ``end``, at a word."""
    if overlap <= 0:
        return cut
    back = max(end - overlap, start + 1)
    match = _SPACE.search(text, back, end)
    return cut if match is None else match.end()


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _decode(data: bytes) -> str:
    """UTF-8 (with or without a BOM), else Latin-1 for old text files; not binaries."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        raise DocumentError("not text (binary data)")
    return data.decode("latin-1")


def _html_text(html: str) -> str:
    """The readable text of a page, extracted as ``summarize`` extracts a URL's.

    A page with no main content to find (a bare fragment, a list of links) falls
    back to trafilatura's plain conversion rather than to nothing."""
    import trafilatura

    with quiet_logger("trafilatura", logging.CRITICAL):
        text = html_to_text(html)
        if text is None:
            text = (trafilatura.html2txt(html)
                    or trafilatura.html2txt(f"<html><body>{html}</body></html>"))
    return text or ""


def _read_pdf(data: bytes) -> list[Section]:
    """One section per page, so passages never straddle pages and cite a page number."""
    from locallama.pdftext import PdfError, pdf_pages

    try:
        return [Section(text, number) for number, text in enumerate(pdf_pages(data), start=1)]
    except PdfError as exc:
        raise DocumentError(str(exc)) from None
