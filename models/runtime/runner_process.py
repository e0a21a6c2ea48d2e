"""The child side of a runner: load one engine, then run jobs until told to stop.

This module is what a `spawn`ed runner process imports first, so it stays
light: the engine module (and its native libraries) is imported only inside
`main`. A reader thread takes messages off the pipe so a `Cancel` is seen while
the main thread is deep in a job. Every message in and out is a
`models.runtime.protocol` type.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from models.runtime.protocol import Accepted, Cancel, Error, Final, Job, Load, LoadFailed, Partial, Ready, Stop

log = logging.getLogger("aistack.runner")


def import_engine(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def describe_failure(exc: BaseException, provider: str, doing: str) -> dict[str, Any]:
    """An error dict for an exception the engine did not classify."""
    from models.core.errors import AistackError

    if isinstance(exc, AistackError):
        return exc.to_dict()
    if isinstance(exc, MemoryError):
        return {"kind": "network", "provider": provider, "message": f"Out of memory while {doing}. Free memory or use a smaller model."}
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return {"kind": "unknown", "provider": provider, "message": f"The {provider} engine failed while {doing}: {reason}"}


class _Inbox:
    """Reads the pipe on a thread: jobs go to a queue, cancels flip flags at once."""

    def __init__(self, conn: Connection, send: Any, provider: str):
        self.conn = conn
        self.send = send
        self.provider = provider
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.lock = threading.Lock()

    def read_forever(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the server went away: nobody is left to answer to
            except Exception as exc:  # noqa: BLE001 - a message that cannot be read fails its job, not the runner
                self.send(Error(None, describe_failure(exc, self.provider, "reading the request")))
                continue
            if isinstance(msg, Job):
                self.jobs.put(msg)
            elif isinstance(msg, Cancel):
                with self.lock:
                    self.cancelled.add(msg.id)
            elif isinstance(msg, Stop):
                self.jobs.put(None)
                return
            else:
                log.error("ignoring a message this runner does not understand: %s", type(msg).__name__)

    def is_cancelled(self, job_id: int) -> bool:
        with self.lock:
            return job_id in self.cancelled


def _output_to_log_file() -> None:
    """Send this process's stdout and stderr (fds 1 and 2 too) to the file the app names in AISTACK_RUNNER_LOG.

    A windowed build gives a runner no stdout or stderr at all, and llama.cpp and tqdm write to them
    anyway; the tray app (app.logs) names `logs/runners.log` so their output is kept, not lost or fatal.
    """
    path = os.environ.get("AISTACK_RUNNER_LOG")
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return
    for std in (1, 2):
        if fd != std:
            os.dup2(fd, std)
    if fd > 2:  # with 1 or 2 closed at start, the log file itself may have been given one of them
        os.close(fd)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)


def main(conn: Connection, load: Load) -> None:
    """Entry point of the runner process (target of `multiprocessing.Process`)."""
    # Ctrl+C in a terminal reaches the whole process group; the server shuts its runners down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _output_to_log_file()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner[%(process)d] %(levelname)s %(message)s")
    spec = load.spec
    provider = str(spec.get("engine", "engine"))
    send_lock = threading.Lock()

    def send(msg: object) -> None:
        with send_lock:
            conn.send(msg)

    try:
        from models.hardware.device_choice import device_info, prepare_runner

        spec = prepare_runner(spec)  # decides the device and picks the llama.cpp build before the engine imports it
        engine = import_engine(load.engine_path)(spec)
        send(Ready({**device_info(spec), **engine.info()}))
    except BaseException as exc:  # noqa: BLE001 - any load failure must reach the server
        log.error("loading %s failed:\n%s", spec.get("id"), traceback.format_exc())
        send(LoadFailed(describe_failure(exc, provider, f"loading model {spec.get('id')}")))
        return

    inbox = _Inbox(conn, send, provider)
    threading.Thread(target=inbox.read_forever, name="runner-inbox", daemon=True).start()
    if hasattr(engine, "submit"):
        _serve_batched(engine, inbox, send, provider)
    else:
        while (msg := inbox.jobs.get()) is not None:
            _run_one(engine, msg, inbox, send, provider)
            if _gpu_lost(engine):
                break
    if _gpu_lost(engine):  # a CUDA error mid-job: this process's GPU state is gone
        log.error("the GPU failed during a job; this runner exits and the next request starts a fresh one")
    try:
        engine.close()
    finally:
        conn.close()


def _gpu_lost(engine: Any) -> bool:
    return bool(getattr(engine, "gpu_lost", False))


def _context(job_id: int, inbox: _Inbox, send: Any) -> Any:
    from models.engines.base import JobContext

    return JobContext(
        lambda data: send(Partial(job_id, data)),
        lambda: inbox.is_cancelled(job_id),
        lambda info: send(Accepted(job_id, info)),
    )


def _run_one(engine: Any, msg: Job, inbox: _Inbox, send: Any, provider: str) -> None:
    """An engine that runs one job at a time: run it to the end here."""
    try:
        result = engine.run(msg.job, _context(msg.id, inbox, send))
    except BaseException as exc:  # noqa: BLE001 - report, keep serving
        _report(engine, msg.id, None, exc, inbox, send, provider)
    else:
        _report(engine, msg.id, result, None, inbox, send, provider)


def _serve_batched(engine: Any, inbox: _Inbox, send: Any, provider: str) -> None:
    """An engine that runs several jobs together (llama.cpp's slots): hand it every job as it
    arrives and let it step, blocking on the pipe only while it has nothing to do."""
    while True:
        for msg in _arrived(inbox, wait=not engine.busy):
            if msg is None:
                return
            engine.submit(
                msg.job,
                _context(msg.id, inbox, send),
                lambda result, error, job_id=msg.id: _report(engine, job_id, result, error, inbox, send, provider),
            )
        if engine.busy:
            engine.step()
        if _gpu_lost(engine):
            return


def _arrived(inbox: _Inbox, *, wait: bool) -> list[Job | None]:
    """Every message waiting in the inbox; with `wait`, at least one."""
    messages: list[Job | None] = [inbox.jobs.get()] if wait else []
    while True:
        try:
            messages.append(inbox.jobs.get_nowait())
        except queue.Empty:
            return messages


def _report(engine: Any, job_id: int, result: Any, exc: BaseException | None, inbox: _Inbox, send: Any,
            provider: str) -> None:
    """Send a job's `Final` or `Error`."""
    from models.core.errors import AistackError

    try:
        if exc is None:
            send(Final(job_id, dict(result or {})))
        elif isinstance(exc, AistackError):
            # Classified by the engine: a client that left, the request's own fault (bad audio, too long
            # a prompt...) or a failure it already explained. The message is the answer; no traceback.
            level = logging.ERROR if exc.status >= 500 else logging.INFO
            log.log(level, "job %s: %s %s", job_id, exc.kind, exc.message)
            send(Error(job_id, exc.to_dict(), retiring=_gpu_lost(engine)))
        else:
            log.error("job %s failed:\n%s", job_id, "".join(traceback.format_exception(exc)))
            send(Error(job_id, describe_failure(exc, provider, "running the request"), retiring=_gpu_lost(engine)))
    finally:
        with inbox.lock:
            inbox.cancelled.discard(job_id)
