"""The on-disk index behind ``ask``: passages of a folder's documents and their vectors.

One SQLite file per documents folder, kept under ``LOCALLAMA_HOME/index/`` rather
than inside the folder: the user's folder may be read-only, a git checkout or a
synced drive, and an index written there would be committed, synced or refused.
The file name carries the folder's name and a hash of its absolute path, so two
folders never share an index and the user can see which file is which.

Updating touches only what changed: a file whose size and mtime match its row is
left alone; one whose stat changed is hashed, and only a different sha256 (or a
different embedding model) re-embeds it; a deleted file's rows go.  Each file's
passages are replaced in one transaction, so an interrupted update leaves every
file either fully old or fully new.  Vectors are float32 blobs; retrieval is a
cosine similarity over all of them with numpy (fine for thousands of passages).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locallama.errors import InvalidRequest, LocallamaError
from locallama.everyday.docs import (
    CHUNK_CHARS,
    OVERLAP_CHARS,
    DocumentError,
    Passage,
    find_documents,
    read_document,
    split_passages,
)
from locallama.runtime.base import Runtime

SCHEMA_VERSION = "1"
EMBED_BATCH = 16  # passages per Runtime.embed call: few round trips, bounded requests
CHUNKING = f"{CHUNK_CHARS}/{OVERLAP_CHARS}"  # another chunking makes other passages

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- relative to the folder, with / separators
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    embed_model TEXT NOT NULL,
    embed_digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,               -- 1-based, the number in a citation path#idx
    page INTEGER,                       -- PDF page (1-based), else NULL
    start INTEGER NOT NULL,             -- character offsets into the file's (page's) text
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,               -- float32
    UNIQUE (file_id, idx)
);
"""

Progress = Callable[[str, int, int], None]
"""(file being embedded, passages embedded so far, passages to embed in all)"""
Warn = Callable[[str], None]


@dataclass(frozen=True)
class EmbedModel:
    """Which model made a vector: its name and the digest of its weights."""

    name: str
    digest: str


@dataclass
class UpdateReport:
    """What an update did, file by file (paths relative to the folder)."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable, with a warning
    embedded: int = 0  # passages embedded

    @property
    def documents(self) -> int:
        return len(self.added) + len(self.changed) + len(self.unchanged)


@dataclass(frozen=True)
class Hit:
    """A retrieved passage, with where it came from and how close it is."""

    source: str
    index: int
    text: str
    score: float
    page: int | None
    start: int
    end: int


def embed_model(runtime: Runtime, name: str) -> EmbedModel:
    """The model's identity: a re-pulled or rebuilt model under one name re-embeds."""
    return EmbedModel(name, runtime.show(name).digest)


def index_path(home: Path, folder: Path) -> Path:
    """Where the index of ``folder`` lives: ``home/index/<name>-<hash of the path>.sqlite``."""
    resolved = folder.resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", resolved.name)[:40] or "root"
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:16]
    return home / "index" / f"{slug}-{digest}.sqlite"


class DocIndex:
    """The index of one folder; open it, ``update`` it, ``search`` it."""

    def __init__(self, path: Path, folder: Path) -> None:
        """Open (or create) the index; an unusable place is a one-line error.

        The index is a cache of the folder, so a damaged file (not a database any
        more) is deleted and built again rather than reported."""
        self.path = path
        self.folder = folder.resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._connect()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise  # locked, read-only, no space: not the file's fault
                self.db.close()
                path.unlink()
                self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise LocallamaError(f"cannot open the index {path}: {exc}") from None

    def _connect(self) -> None:
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA foreign_keys = ON")
        self._prepare()

    def __enter__(self) -> DocIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _prepare(self) -> None:
        """Create the tables; an index from another schema or chunking starts over."""
        with self.db:
            self.db.executescript(_SCHEMA)
            meta = dict(self.db.execute("SELECT key, value FROM meta"))
            if meta.get("schema") != SCHEMA_VERSION or meta.get("chunking") != CHUNKING:
                self.db.execute("DELETE FROM files")
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                ("schema", SCHEMA_VERSION), ("chunking", CHUNKING),
                ("folder", str(self.folder))])

    # -- updating ----------------------------------------------------------------

    def update(self, runtime: Runtime, model: EmbedModel, *, reindex: bool = False,
               progress: Progress | None = None, warn: Warn | None = None) -> UpdateReport:
        """Bring the index in line with the folder, embedding only what changed.

        InvalidRequest when the folder holds no document at all; unreadable
        documents are skipped with a ``warn`` (and leave the index)."""
        paths = find_documents(self.folder)
        if not paths:
            raise InvalidRequest(f"no documents in {self.folder}")
        report = UpdateReport()
        with self.db:
            if reindex:
                self.db.execute("DELETE FROM files")
            rows = {r[1]: r for r in self.db.execute(
                "SELECT id, path, size, mtime_ns, sha256, embed_model, embed_digest FROM files")}
            on_disk = {p.relative_to(self.folder).as_posix(): p for p in paths}
            for gone in sorted(rows.keys() - on_disk.keys()):
                self.db.execute("DELETE FROM files WHERE id = ?", (rows[gone][0],))
                report.removed.append(gone)

        todo: list[tuple[str, Path, tuple[int, int, str], list[Passage]]] = []
        for rel, path in on_disk.items():
            row = rows.get(rel)
            try:
                stat = path.stat()
                same_model = row is not None and (row[5], row[6]) == (model.name, model.digest)
                if same_model and (row[2], row[3]) == (stat.st_size, stat.st_mtime_ns):
                    report.unchanged.append(rel)
                    continue
                sha = _sha256(path)
                if same_model and row[4] == sha:  # touched, not changed: note the new stat
                    with self.db:
                        self.db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?",
                                        (stat.st_size, stat.st_mtime_ns, row[0]))
                    report.unchanged.append(rel)
                    continue
                passages = split_passages(read_document(path))
            except (DocumentError, OSError) as exc:
                if warn:
                    reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                    warn(f"skipping {rel}: {reason or exc}")
                if row is not None:  # its old passages no longer describe the file
                    with self.db:
                        self.db.execute("DELETE FROM files WHERE id = ?", (row[0],))
                report.skipped.append(rel)
                continue
            todo.append((rel, path, (stat.st_size, stat.st_mtime_ns, sha), passages))
            (report.added if row is None else report.changed).append(rel)

        total = sum(len(p) for *_, p in todo)
        for rel, _, (size, mtime_ns, sha), passages in todo:
            vectors = self._embed(runtime, model.name, rel, passages, report, total, progress)
            with self.db:  # an upsert: another `ask` may have indexed the file meanwhile
                self.db.execute(
                    "INSERT INTO files (path, size, mtime_ns, sha256, embed_model, embed_digest) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                    "size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, "
                    "embed_model = excluded.embed_model, embed_digest = excluded.embed_digest",
                    (rel, size, mtime_ns, sha, model.name, model.digest))
                file_id = self.db.execute("SELECT id FROM files WHERE path = ?",
                                          (rel,)).fetchone()[0]
                self.db.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
                self.db.executemany(
                    "INSERT INTO passages (file_id, idx, page, start, end, text, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(file_id, p.index, p.page, p.start, p.end, p.text, v.tobytes())
                     for p, v in zip(passages, vectors, strict=True)])
        return report

    def _embed(self, runtime: Runtime, name: str, rel: str, passages: list[Passage],
               report: UpdateReport, total: int, progress: Progress | None) -> list[np.ndarray]:
        vectors: list[np.ndarray] = []
        for at in range(0, len(passages), EMBED_BATCH):
            batch = [p.text for p in passages[at:at + EMBED_BATCH]]
            result = runtime.embed(name, batch)
            if len(result.embeddings) != len(batch):
                raise InvalidRequest(
                    f"{name} returned {len(result.embeddings)} embeddings for {len(batch)} inputs")
            vectors.extend(np.asarray(v, dtype=np.float32) for v in result.embeddings)
            report.embedded += len(batch)
            if progress:
                progress(rel, report.embedded, total)
        return vectors

    # -- reading -----------------------------------------------------------------

    def search(self, runtime: Runtime, model: EmbedModel, question: str, k: int = 4) -> list[Hit]:
        """The ``k`` passages most similar to the question (cosine), best first."""
        rows = self.db.execute(
            "SELECT f.path, p.idx, p.text, p.page, p.start, p.end, p.vector FROM passages p "
            "JOIN files f ON f.id = p.file_id WHERE f.embed_model = ? AND f.embed_digest = ? "
            "ORDER BY p.id", (model.name, model.digest)).fetchall()
        if not rows or k <= 0:
            return []
        query = np.asarray(runtime.embed(model.name, [question]).embeddings[0], dtype=np.float32)
        rows = [r for r in rows if len(r[6]) == 4 * query.size]  # one model, one width
        if not rows:
            return []
        matrix = np.frombuffer(b"".join(r[6] for r in rows), dtype=np.float32)
        matrix = matrix.reshape(len(rows), query.size)
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
        scores = (matrix @ query) / np.where(norms == 0, 1.0, norms)
        best = np.argsort(-scores, kind="stable")[:k]
        return [Hit(rows[i][0], rows[i][1], rows[i][2], float(scores[i]), rows[i][3],
                    rows[i][4], rows[i][5]) for i in best]

    def passage(self, source: str, index: int) -> Hit | None:
        """One stored passage by its citation (``source#index``), or None."""
        row = self.db.execute(
            "SELECT f.path, p.idx, p.text, p.page, p.start, p.end FROM passages p "
            "JOIN files f ON f.id = p.file_id WHERE f.path = ? AND p.idx = ?",
            (source, index)).fetchone()
        return None if row is None else Hit(row[0], row[1], row[2], 0.0, *row[3:])

    def passage_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM passages").fetchone()[0]


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
