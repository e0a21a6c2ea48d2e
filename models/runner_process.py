"""The child side of a runner: load one engine, then run jobs until told to stop.

This module is what a `spawn`ed runner process imports first, so it stays
light: the engine module (and its native libraries) is imported only inside
`main`. A reader thread takes messages off the pipe so a `cancel` is seen while
the main thread is deep in a job.

Messages in:  {"op": "job", "id": n, "job": {...}}, {"op": "cancel", "id": n}, {"op": "stop"}
Messages out: {"type": "ready", "info": {...}}, {"type": "load_failed", "error": {...}},
              {"type": "data", "id": n, "data": {...}}, {"type": "done", "id": n, "result": {...}},
              {"type": "error", "id": n, "error": {...}}
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import signal
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("aistack.runner")


def import_engine(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def describe_failure(exc: BaseException, provider: str, doing: str) -> dict[str, Any]:
    """An error dict for an exception the engine did not classify."""
    from models.errors import AistackError

    if isinstance(exc, AistackError):
        return exc.to_dict()
    if isinstance(exc, MemoryError):
        return {"kind": "network", "provider": provider, "message": f"Out of memory while {doing}. Free memory or use a smaller model."}
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return {"kind": "unknown", "provider": provider, "message": f"The {provider} engine failed while {doing}: {reason}"}


class _Inbox:
    """Reads the pipe on a thread: jobs go to a queue, cancels flip flags at once."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.lock = threading.Lock()

    def read_forever(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                # The server went away: nobody is left to answer to.
                os._exit(0)
            op = msg.get("op")
            if op == "job":
                self.jobs.put(msg)
            elif op == "cancel":
                with self.lock:
                    self.cancelled.add(int(msg["id"]))
            elif op == "stop":
                self.jobs.put(None)
                return

    def is_cancelled(self, job_id: int) -> bool:
        with self.lock:
            return job_id in self.cancelled


def main(conn: Connection, engine_path: str, spec: dict[str, Any]) -> None:
    """Entry point of the runner process (target of `multiprocessing.Process`)."""
    from models.engines.base import JobContext
    from models.errors import AistackError

    # Ctrl+C in a terminal reaches the whole process group; the server shuts its runners down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner[%(process)d] %(levelname)s %(message)s")
    provider = str(spec.get("engine", "engine"))
    send_lock = threading.Lock()

    def send(msg: dict[str, Any]) -> None:
        with send_lock:
            conn.send(msg)

    try:
        engine = import_engine(engine_path)(spec)
        send({"type": "ready", "info": engine.info()})
    except BaseException as exc:  # noqa: BLE001 - any load failure must reach the server
        log.error("loading %s failed:\n%s", spec.get("id"), traceback.format_exc())
        send({"type": "load_failed", "error": describe_failure(exc, provider, f"loading model {spec.get('id')}")})
        return

    inbox = _Inbox(conn)
    threading.Thread(target=inbox.read_forever, name="runner-inbox", daemon=True).start()
    while (msg := inbox.jobs.get()) is not None:
        job_id = int(msg["id"])

        def emit(data: dict[str, Any], job_id: int = job_id) -> None:
            send({"type": "data", "id": job_id, "data": data})

        def is_cancelled(job_id: int = job_id) -> bool:
            return inbox.is_cancelled(job_id)

        ctx = JobContext(emit, is_cancelled)
        try:
            result = engine.run(msg["job"], ctx)
            send({"type": "done", "id": job_id, "result": result or {}})
        except AistackError as exc:
            # Classified by the engine: a client that left, the request's own fault (bad audio, too long
            # a prompt...) or a failure it already explained. The message is the answer; no traceback.
            level = logging.ERROR if exc.status >= 500 else logging.INFO
            log.log(level, "job %s: %s %s", job_id, exc.kind, exc.message)
            send({"type": "error", "id": job_id, "error": exc.to_dict()})
        except BaseException as exc:  # noqa: BLE001 - report, keep serving
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            send({"type": "error", "id": job_id, "error": describe_failure(exc, provider, "running the request")})
        finally:
            with inbox.lock:
                inbox.cancelled.discard(job_id)
    try:
        engine.close()
    finally:
        conn.close()
