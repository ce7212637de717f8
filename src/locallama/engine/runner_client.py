"""The parent's side of a runner (``engine/runner.py``): start it, talk to it, watch it.

:class:`RunnerModel` stands where an in-process ``LoadedModel`` (or
``EmbeddingModel``) stands for the loader and the runtime: it tokenizes,
detokenizes and embeds by asking the runner, and its ``scheduler``
(:class:`RunnerScheduler`) submits jobs that run in the runner's scheduler and
streams their pieces back.  Nothing of llama.cpp is imported in this process.

When a runner dies (a signal such as SIGABRT, an out-of-memory kill), every
request it was serving ends at once with RunnerStopped naming the model, the cause
and the last lines llama.cpp printed, and the loader is told (``on_exit``) so that
the next request starts a fresh runner.  A runner that dies while loading is a
stored model file llama.cpp cannot use: BadModelFile (500, as any stored file gone
bad; a new file is refused at ``create`` with a 400 by ``load_check``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from locallama.cancel import CLIENT_GONE
from locallama.engine.fim import FimTokens
from locallama.engine.job import Job, Piece, PieceStream
from locallama.engine.params import ContextParams, PromptCounts
from locallama.errors import BadModelFile, Cancelled, LocallamaError, RunnerStopped
from locallama.gguf_info import GGUFInfo

log = logging.getLogger("locallama.runner")  # the server's log (``serve`` configures it)

_GONE_POLL_S = 0.05  # how often a waiting request looks whether its client left
_LOG_LINES = 40  # lines of the runner's log kept for a crash report
_CLOSE_WAIT_S = 5.0  # how long an unload waits for the runner to end before SIGKILL
_STATUS_WAIT_S = 1.0  # how long a /metrics scrape waits for a runner's queue length
#: words that mark the line of a runner's log that says why it stopped
_CAUSE_WORDS = ("error", "assert", "abort", "failed", "exception", "terminate", "fatal")


def _debug() -> bool:
    return bool(os.environ.get("LOCALLAMA_DEBUG"))


class Runner:
    """One runner process and the parent's end of its socket.

    ``name`` is the model's name for messages; ``on_exit`` is called (from the
    watcher thread) once when the process ends without being asked to.
    Thread-safe: any thread may call, submit or cancel.
    """

    def __init__(self, name: str, on_exit: Callable[[], None] | None = None) -> None:
        self.name = name
        self.on_exit = on_exit
        self.log: collections.deque[str] = collections.deque(maxlen=_LOG_LINES)
        self.stopped: LocallamaError | None = None  # set once the process has ended
        self._closing = False
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiters: dict[int, queue.SimpleQueue] = {}
        self._lock = threading.Lock()
        parent, child = socket.socketpair()
        package = str(Path(__file__).resolve().parents[2])  # the locallama this process runs
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package, env.get("PYTHONPATH")) if p)
        if not _debug():
            env.setdefault("GGML_NO_BACKTRACE", "1")  # no debugger attached on abort()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "locallama.engine.runner", str(child.fileno()),
                 str(os.getpid())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)  # a terminal's Ctrl-C is the parent's alone
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.pid = self.proc.pid
        self.conn = Connection(parent.detach())
        self._log_thread = threading.Thread(target=self._read_log, daemon=True,
                                            name=f"runner-log-{self.pid}")
        self._log_thread.start()
        threading.Thread(target=self._read, daemon=True, name=f"runner-{self.pid}").start()

    # -- sending and receiving -----------------------------------------------------

    def send(self, message: tuple) -> None:
        """Send one message; RunnerStopped when the runner has ended."""
        if self.stopped is not None:
            raise self.stopped
        try:
            with self._send_lock:
                self.conn.send(message)
        except (OSError, EOFError, ValueError):
            self._wait_stopped()
            raise (self.stopped or RunnerStopped(f"model runner for {self.name} stopped")
                   ) from None

    def open(self) -> tuple[int, queue.SimpleQueue]:
        """A new request id and the queue its answers arrive on."""
        rid = next(self._ids)
        waiter: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            if self.stopped is not None:
                raise self.stopped
            self._waiters[rid] = waiter
        return rid, waiter

    def forget(self, rid: int) -> None:
        with self._lock:
            self._waiters.pop(rid, None)

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Run ``method(*args)`` in the runner (``runner._call``) and return its value;
        its error is raised here as the runner raised it.  With ``timeout`` (seconds),
        LocallamaError when no answer came by then (a stopped or wedged runner)."""
        rid, waiter = self.open()
        try:
            self.send(("call", rid, method, args))
            try:
                kind, _, value = wait(waiter, timeout=timeout)
            except queue.Empty:
                raise LocallamaError(f"model runner for {self.name} did not answer "
                                     f"{method} within {timeout} s") from None
        finally:
            self.forget(rid)
        if kind == "error":
            raise value
        return value

    def _read(self) -> None:
        """The watcher: route each message to its request; at the end of the stream,
        tell every request still waiting that the runner stopped."""
        while True:
            try:
                batch = self.conn.recv()
            except (OSError, EOFError):
                break
            except Exception as exc:  # noqa: BLE001 - a message that does not unpickle
                self.log.append(f"locallama: unreadable runner message: {exc}")
                break
            with self._lock:  # once per frame (a busy runner sends a step's pieces in one)
                waiters = self._waiters
                routed = [(waiters.get(message[1] if message[0] not in ("ready", "load_error")
                                       else 0), message) for message in batch]
            for waiter, message in routed:
                if waiter is not None:
                    waiter.put(message)
        self._ended()

    def _ended(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        try:
            code = self.proc.wait(timeout=_CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:  # the socket broke but the process lives on
            self.proc.kill()
            code = self.proc.wait()
        self._log_thread.join(timeout=1.0)  # its last lines: the cause
        closing = self._closing
        if closing:
            error: LocallamaError = Cancelled("the model was unloaded")
        else:
            error = RunnerStopped(f"model runner for {self.name} stopped: {_cause(code)}"
                                  + _last_words(self.log))
            log.warning("model runner for %s (pid %d) stopped: %s; its last lines:\n%s",
                        self.name, self.pid, _cause(code),
                        "\n".join(f"  {line}" for line in self.log))
        with self._lock:
            self.stopped = error
            waiters = list(self._waiters.values())
            self._waiters.clear()
        for waiter in waiters:
            waiter.put(("stopped", 0, error))
        if not closing and self.on_exit is not None:
            self.on_exit()

    def _wait_stopped(self, timeout: float = _CLOSE_WAIT_S + 2) -> None:
        deadline = time.monotonic() + timeout
        while self.stopped is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _read_log(self) -> None:
        """Keep the runner's last lines; echo them to stderr with LOCALLAMA_DEBUG."""
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not line:
                continue
            self.log.append(line)
            if _debug():
                sys.stderr.write(f"[runner {self.pid}] {line}\n")
        self.proc.stdout.close()  # its pipe now, not whenever a garbage collection runs

    # -- ending --------------------------------------------------------------------

    def close(self) -> None:
        """End the runner (its memory returns to the system): ask, then close the
        socket, then SIGKILL after ``_CLOSE_WAIT_S``; requests still streaming end with
        Cancelled.  Waits until the process is gone."""
        self._closing = True
        with contextlib.suppress(LocallamaError):
            self.send(("close",))
        try:
            self.proc.wait(timeout=_CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._wait_stopped()

    def ended(self) -> bool:
        """Whether the process has ended (a zombie not yet reaped counts), so that a
        request arriving after a crash starts a fresh runner instead of failing."""
        if self.stopped is not None or self.proc.returncode is not None:
            return True
        import psutil

        try:  # a zombie whose threads still exit is not yet waitable, but it is dead
            return psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE
        except (psutil.Error, OSError):  # reaped meanwhile by the watcher
            return True

    def kill(self) -> None:
        """SIGKILL now (the watcher then reports it like any other end)."""
        with contextlib.suppress(OSError):
            self.proc.kill()

    def rss(self) -> int | None:
        """The runner's resident memory in bytes; None once it has ended."""
        import psutil

        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.Error, OSError):
            return None


def wait(waiter: queue.SimpleQueue, gone: threading.Event | None = None,
         timeout: float | None = None) -> tuple:
    """The next message for a request; Cancelled when ``gone`` is set meanwhile, the
    runner's RunnerStopped when it ended, queue.Empty after ``timeout`` seconds (only
    without ``gone``)."""
    while True:
        if gone is None:
            message = waiter.get(timeout=timeout)
        else:
            if gone.is_set():
                raise Cancelled("the client went away")
            try:
                message = waiter.get(timeout=_GONE_POLL_S)
            except queue.Empty:
                continue
        if message[0] == "stopped":
            raise message[2]
        return message


def _cause(code: int) -> str:
    """A process's end in words: "SIGABRT", "exit code 3"."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _last_words(log: collections.deque[str]) -> str:
    """" (why)" from a runner's last lines: the last one that reads like an error (an
    assertion, an abort), or "" when none does (a SIGKILL from outside says nothing)."""
    for line in reversed(log):
        if any(word in line.lower() for word in _CAUSE_WORDS):
            return f" ({line.strip()[:300]})"
    return ""


class RunnerModel:
    """A model loaded in a runner, with the surface of ``LoadedModel`` and
    ``EmbeddingModel`` that the loader and the runtime use.

    Starting it starts the runner and waits until the model is loaded. Raises what
    the load raised there (BadModelFile when llama.cpp refuses the file), or
    BadModelFile naming the signal when the runner died while loading (llama.cpp
    aborted on the file).
    """

    def __init__(self, path: Path, info: GGUFInfo, params: ContextParams, max_queue: int = 0,
                 name: str = "", on_exit: Callable[[], None] | None = None) -> None:
        self.path, self.info, self.params = path, info, params
        self.name = name or path.name
        started = time.perf_counter_ns()
        self.runner = Runner(self.name, on_exit)
        try:
            facts = self._start(max_queue)
        except BaseException:
            self.runner.on_exit = None
            self.runner.close()
            raise
        self.load_duration = time.perf_counter_ns() - started
        self.pid = self.runner.pid
        self.n_vocab = facts.get("n_vocab", 0)
        self.bos_text = facts.get("bos_text", "")
        self.eos_text = facts.get("eos_text", "")
        self.bos_id: int | None = facts.get("bos_id")
        self.fim: FimTokens = facts.get("fim") or FimTokens()
        self.scheduler = None if self.params.embedding else RunnerScheduler(
            self.runner, facts["slots"])

    def _start(self, max_queue: int) -> dict[str, Any]:
        runner = self.runner
        with runner._lock:
            waiter: queue.SimpleQueue = queue.SimpleQueue()
            runner._waiters[0] = waiter  # "ready" / "load_error" arrive as request 0
        try:
            runner.send(("load", self.path, self.info, self.params, max_queue, self.name))
            kind, *rest = wait(waiter)
        except RunnerStopped as exc:
            if runner.proc.returncode == -signal.SIGKILL:
                raise  # killed from outside (the OOM killer, a user), not llama.cpp's verdict
            why = str(exc).partition(": ")[2]
            raise BadModelFile(f"llama.cpp cannot load model '{self.name}': its runner "
                               f"stopped with {why}") from None
        finally:
            runner.forget(0)
        if kind == "load_error":
            raise rest[0]
        return rest[0]

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        return self.runner.call("tokenize", text, add_bos, special)

    def tokenize_images(self, text: str, images: list[bytes], add_bos: bool = True
                        ) -> tuple[list[int], list[tuple[int, int, str]]]:
        return self.runner.call("tokenize_images", text, images, add_bos)

    def detokenize(self, tokens: list[int]) -> str:
        return self.runner.call("detokenize", tokens)

    def pieces(self, tokens: list[int]) -> list[bytes]:
        return self.runner.call("pieces", tokens)

    def embed(self, texts: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        return self.runner.call("embed", texts, truncate)

    def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        return self.runner.call("rerank", query, documents)

    def rss(self) -> int | None:
        return self.runner.rss()

    def ended(self) -> bool:
        """Whether its runner has ended (see ``Runner.ended``)."""
        return self.runner.ended()

    def close(self) -> None:
        self.runner.close()


class RunnerScheduler:
    """The runner's scheduler as the runtime sees it: ``submit`` a Job, iterate its
    pieces; closing the iterator cancels the job in the runner."""

    def __init__(self, runner: Runner, slots: int) -> None:
        self.runner = runner
        self.slots = [None] * slots  # how many sequences run at once (scoring fans out)
        self.prompt_counts = PromptCounts()  # prompt tokens evaluated / reused, for ps

    def submit(self, job: Job) -> PieceStream:
        """Queue ``job`` in the runner and return its pieces (as ``Scheduler.submit``):
        refusals (a bad prompt, ServerBusy) are raised here; ``job.stats`` and
        ``job.prompt_scores`` are complete when the iterator ends."""
        rid, waiter = self.runner.open()
        fields = {"prompt": list(job.prompt), "options": job.options, "stops": job.stops,
                  "grammar": job.grammar, "top_logprobs": job.top_logprobs,
                  "score_top": job.score_top, "score_from": job.score_from,
                  "truncate": job.truncate, "shift": job.shift, "special": job.special,
                  "images": job.images}
        try:
            self.runner.send(("submit", rid, fields))
            kind, _, *rest = wait(waiter, CLIENT_GONE.get())
        except BaseException:
            self._cancel(rid)
            raise
        if kind == "error":
            self.runner.forget(rid)
            raise rest[0]
        return PieceStream(self._stream(job, rid, waiter), lambda: self._cancel(rid),
                           lambda: self._cancel(rid, forget=False))

    def _stream(self, job: Job, rid: int, waiter: queue.SimpleQueue) -> Iterator[Piece]:
        gone = CLIENT_GONE.get()
        finished = False
        try:
            while True:
                kind, _, *rest = wait(waiter, gone)
                if kind == "piece":
                    text, logprobs, scores = rest
                    if scores is not None:
                        job.prompt_scores = scores
                    yield Piece(text, logprobs)
                elif kind == "error":
                    finished = True
                    raise rest[0]
                elif kind == "done":
                    finished = True
                    stats, scores, job.started, job.prompt_started = rest
                    job.stats = stats
                    self.prompt_counts.add(stats)
                    if scores is not None:
                        job.prompt_scores = scores
                    return
        finally:
            if not finished:
                self._cancel(rid)
            self.runner.forget(rid)

    def _cancel(self, rid: int, forget: bool = True) -> None:
        """Ask the runner to cancel ``rid``; unless ``forget``, its reader gets the end."""
        if forget:
            self.runner.forget(rid)
        with contextlib.suppress(LocallamaError):
            self.runner.send(("cancel", rid))

    def active(self) -> int:
        return self._status()[0]

    def waiting(self) -> int:
        return self._status()[1]

    def _status(self) -> tuple[int, int]:
        try:
            # asked on the server's event loop (/metrics): a wedged runner must not stall it
            return self.runner.call("status", timeout=_STATUS_WAIT_S)
        except LocallamaError:
            return 0, 0
