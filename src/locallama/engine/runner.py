"""The runner: one loaded model in a process of its own.

Started as ``python -m locallama.engine.runner FD PARENT_PID`` by
``engine/runner_client.py``.
The parent's first message says what to load (a model with its scheduler, or an
embedding model); the runner loads it, answers ``ready`` and then serves the
parent's requests over the socket until the parent closes its end.  llama.cpp may
``abort()`` on a model file that no header check refuses, or on an internal
assertion: then only this process dies, and the parent tells the requests it was
serving why.

Messages are pickled tuples over ``multiprocessing.connection`` (length-prefixed
frames).  Both ends are this program, started by the parent with its own
interpreter, so unpickling the parent's messages trusts nothing the parent does not
already run.  From the parent::

    ("load", path, info, params, max_queue, name)      first, once
    ("call", rid, method, args)                         tokenize, tokenize_images,
                                                        detokenize, pieces, embed,
                                                        rerank, status
    ("submit", rid, fields)                             a scheduler Job's request fields
    ("cancel", rid)
    ("close",)

To the parent, in lists of one or more (a busy stream sends several at once)::

    ("ready", facts) | ("load_error", exc)
    ("result", rid, value) | ("error", rid, exc)
    ("accepted", rid)                                   the job is queued
    ("piece", rid, text, logprobs, prompt_scores)       prompt_scores with the first only
    ("done", rid, stats, prompt_scores, started, prompt_started)

llama.cpp's log (and anything else either C or Python writes to stdout or stderr)
goes to the one pipe the parent reads for a crash's last lines; nothing reaches the
terminal's stdout.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import queue
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from locallama.errors import LocallamaError

_CALL_WORKERS = 2  # tokenize and embed calls served at once (cancels never wait on them)


class _Events:
    """Stands in for a job's event queue: what the scheduler puts goes to the outbox as
    runner messages (the scheduler itself is unchanged)."""

    def __init__(self, rid: int, job: Any, outbox: queue.SimpleQueue, jobs: dict) -> None:
        self.rid, self.job, self.outbox, self.jobs = rid, job, outbox, jobs
        self.scores_sent = False

    def put(self, event: tuple[str, Any]) -> None:
        kind, value = event
        job = self.job
        if kind == "piece":
            scores = None if self.scores_sent else job.prompt_scores
            self.scores_sent = True
            self.outbox.put(("piece", self.rid, value.text, value.logprobs, scores))
            return
        self.jobs.pop(self.rid, None)
        if kind == "error":
            self.outbox.put(("error", self.rid, _portable(value)))
        else:
            scores = None if self.scores_sent else job.prompt_scores
            self.outbox.put(("done", self.rid, job.stats, scores, job.started,
                             job.prompt_started))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as the parent can unpickle it: a LocallamaError keeps its class and
    fields; anything else becomes a LocallamaError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to round-trip
        return LocallamaError(f"{type(exc).__name__}: {exc}")


def _writer(conn: Connection, outbox: queue.SimpleQueue) -> None:
    """Send the outbox's messages, several per frame when they pile up; the process
    ends when the parent is gone."""
    while True:
        batch = [outbox.get()]
        while len(batch) < 256:
            try:
                batch.append(outbox.get_nowait())
            except queue.Empty:
                break
        try:
            conn.send(batch)
        except (OSError, EOFError):
            os._exit(0)


def _watch_parent(parent: int, every: float = 0.5) -> None:
    """End the process when the parent is gone, even in the middle of a long load (the
    socket's end is noticed only between messages).  A process whose parent died is
    re-parented, so its parent pid changes."""
    import time

    while os.getppid() == parent:
        time.sleep(every)
    os._exit(0)


def _log_to_stderr() -> None:
    """llama.cpp's whole log to stderr (the parent's pipe), not only with LOCALLAMA_DEBUG."""
    import llama_cpp

    import locallama.engine.model  # noqa: F401  (its own quiet callback, replaced here)

    @llama_cpp.llama_log_callback
    def log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        sys.stderr.write(text.decode("utf-8", errors="replace"))

    _log_to_stderr.callback = log  # keep the C callback alive
    llama_cpp.llama_log_set(log, ctypes.c_void_p(0))


def _load(message: tuple) -> tuple[Any, dict[str, Any]]:
    """Build the model the parent asked for; (model, the facts the parent needs)."""
    _, path, info, params, max_queue, name = message
    if params.embedding:
        from locallama.engine.embedding import EmbeddingModel

        model = EmbeddingModel(path, info, params)
        return model, {"load_duration": model.load_duration, "slots": 1}
    from locallama.engine.draft import open_draft
    from locallama.engine.model import LoadedModel
    from locallama.engine.scheduler import Scheduler

    model = LoadedModel(path, info, params)
    model.scheduler = Scheduler(model, max_queue, name, draft=open_draft(model))
    return model, {"load_duration": model.load_duration, "slots": len(model.scheduler.slots),
                   "n_vocab": model.n_vocab, "bos_text": model.bos_text,
                   "eos_text": model.eos_text, "bos_id": model.bos_id, "fim": model.fim}


def _call(model: Any, method: str, args: tuple) -> Any:
    if method == "tokenize":
        return model.tokenize(*args)
    if method == "tokenize_images":
        return model.tokenize_images(*args)
    if method == "detokenize":
        return model.detokenize(*args)
    if method == "pieces":
        return model.pieces(*args)
    if method == "embed":
        return model.embed(*args)
    if method == "rerank":
        return model.rerank(*args)
    if method == "status":
        scheduler = model.scheduler
        return (scheduler.active(), scheduler.waiting()) if scheduler else (0, 0)
    raise LocallamaError(f"the runner has no method {method!r}")


def serve(fd: int, parent: int | None = None) -> None:
    """The runner's life: load, answer ``ready``, serve until the parent's end closes
    (or it says ``close``), then exit at once: the system takes back all memory."""
    from locallama.engine.job import Job

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_watch_parent, args=(parent or os.getppid(),), name="runner-parent",
                     daemon=True).start()
    conn = Connection(fd)
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_writer, args=(conn, outbox), name="runner-writer",
                     daemon=True).start()
    try:
        message = conn.recv()
    except (OSError, EOFError):
        os._exit(0)
    _log_to_stderr()
    from locallama.engine import decode_trace

    decode_trace.install_from_env()  # LOCALLAMA_DECODE_TRACE: bench/decode_profile.py
    try:
        model, facts = _load(message)
    except Exception as exc:  # noqa: BLE001 - told to the parent, which raises it
        try:
            conn.send([("load_error", _portable(exc))])  # the writer has nothing queued
        finally:
            os._exit(1)
    outbox.put(("ready", facts))
    jobs: dict[int, Any] = {}
    pool = ThreadPoolExecutor(_CALL_WORKERS, thread_name_prefix="runner-call")

    def answer(rid: int, method: str, args: tuple) -> None:
        try:
            outbox.put(("result", rid, _call(model, method, args)))
        except Exception as exc:  # noqa: BLE001 - the caller hears of it
            outbox.put(("error", rid, _portable(exc)))

    while True:
        try:
            message = conn.recv()
        except (OSError, EOFError):
            break
        kind = message[0]
        if kind == "call":
            pool.submit(answer, *message[1:])
        elif kind == "submit":
            _, rid, fields = message
            job = Job(**fields)
            job.events = _Events(rid, job, outbox, jobs)
            jobs[rid] = job
            try:
                model.scheduler.submit(job)  # its iterator is not used: events go out
            except Exception as exc:  # noqa: BLE001 - refused before it was queued
                jobs.pop(rid, None)
                outbox.put(("error", rid, _portable(exc)))
                continue
            outbox.put(("accepted", rid))
        elif kind == "cancel":
            job = jobs.get(message[1])
            if job is not None:
                model.scheduler.cancel(job)
        elif kind == "close":
            break
    os._exit(0)  # no llama.cpp teardown to wait for: the process's end frees it all


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
