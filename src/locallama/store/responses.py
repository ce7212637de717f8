"""Stored responses of the OpenAI Responses API, so that a conversation can go on by
``previous_response_id`` and ``GET`` / ``DELETE /v1/responses/{id}`` find them.

One SQLite file (``responses.sqlite`` beside the models' folder), one table keyed by the
response's id: the JSON of the items the response answered (the whole conversation
before it, previous responses included, so a continuation reads one row) and of the
response object, and when it was stored.  Every write is one transaction; one
connection behind a lock serves every server thread, and SQLite's own locking (a busy
timeout, WAL journal) keeps several processes on one file apart.  The table is bounded:
past ``max_kept`` rows (LOCALLAMA_RESPONSES_MAX) the oldest are deleted, in the same
transaction as the insert.  The file is opened on first use, so a server that never
sees a Responses request never creates it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locallama.errors import StorageError, StorageFull

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    items TEXT NOT NULL,
    response TEXT NOT NULL
)
"""


@dataclass
class StoredResponse:
    """A stored response: the input items it answered (JSON values as the API takes
    them) and the response object it gave."""

    items: list[dict[str, Any]]
    response: dict[str, Any]


class ResponseStore:
    """The store at ``path``, keeping at most ``max_kept`` responses (0: no bound).

    Errors: a file that cannot be opened or written is ``StorageError`` (``StorageFull``
    when the disk is full), naming the path."""

    def __init__(self, path: Path, max_kept: int = 1000) -> None:
        self.path = path
        self.max_kept = max_kept
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def put(self, response_id: str, items: list[dict[str, Any]],
            response: dict[str, Any]) -> None:
        """Store (or replace) a response with the items it answered, then delete the
        oldest rows past ``max_kept``: one transaction."""
        row = (response_id, time.time(), json.dumps(items), json.dumps(response))
        with self._locked() as db, db:
            db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
            db.execute("INSERT INTO responses (id, created_at, items, response) "
                       "VALUES (?, ?, ?, ?)", row)
            if self.max_kept > 0:
                db.execute("DELETE FROM responses WHERE seq NOT IN (SELECT seq FROM "
                           "responses ORDER BY seq DESC LIMIT ?)", (self.max_kept,))

    def get(self, response_id: str) -> StoredResponse | None:
        """The stored response, or None when there is none by that id."""
        with self._locked() as db:
            row = db.execute("SELECT items, response FROM responses WHERE id = ?",
                             (response_id,)).fetchone()
        if row is None:
            return None
        return StoredResponse(json.loads(row[0]), json.loads(row[1]))

    def delete(self, response_id: str) -> bool:
        """Delete a response; False when there was none by that id."""
        with self._locked() as db, db:
            return db.execute("DELETE FROM responses WHERE id = ?",
                              (response_id,)).rowcount > 0

    def count(self) -> int:
        """How many responses are stored."""
        with self._locked() as db:
            return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the connection (a later call opens it again)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _locked(self) -> _Locked:
        return _Locked(self)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                 isolation_level=None)
            try:
                _switch_to_wal(db, deadline=time.monotonic() + 30)
                db.execute(_SCHEMA)
            except BaseException:
                db.close()
                raise
            # `with db:` is a write transaction from here on, its lock taken at BEGIN
            # (under the busy timeout) rather than upgraded from a read midway
            db.isolation_level = "IMMEDIATE"
            self._db = db
        return self._db


def _switch_to_wal(db: sqlite3.Connection, deadline: float) -> None:
    """Put the file in WAL mode.  Switching needs the file to itself and SQLite answers
    "database is locked" at once, without its busy timeout, while another connection
    (another store on the file, another server) is using it, so the switch is tried
    again until ``deadline`` (time.monotonic(), seconds).  A file already in WAL mode
    is only read."""
    pause = 0.005
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class _Locked:
    """``with store._locked() as db``: the lock held, the connection open, SQLite's and
    the file system's errors typed (``StorageError`` / ``StorageFull``)."""

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            return self.store._connect()
        except (OSError, sqlite3.Error) as exc:
            self.store._lock.release()
            raise _typed(exc, self.store.path) from exc

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self.store._lock.release()
        if isinstance(exc, OSError | sqlite3.Error):
            raise _typed(exc, self.store.path) from exc


def _typed(exc: BaseException, path: Path) -> StorageError:
    text = str(exc)
    if "full" in text.lower() or getattr(exc, "errno", None) in (28, 122):
        return StorageFull(f"cannot write the responses store {path}: {text}")
    return StorageError(f"cannot use the responses store {path}: {text}")
