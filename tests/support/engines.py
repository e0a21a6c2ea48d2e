"""A small engine defined in the tests, to drive the runner's crash, cancel and timeout paths.

It runs inside a real runner process, like the real engines. A job says what
to do: `{"steps": 5, "delay": 0.1, "crash_at": 2, "crash": "segv", "ignore_cancel": false}`.
The crashes `garbage` and `alien` make the runner write bytes that are no
message, or a message that is not in the protocol, as a broken runner would.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from models.core.errors import Malformed
from models.engines.base import JobContext


class ScriptedEngine:
    def __init__(self, spec: dict[str, Any]):
        options = spec.get("options") or {}
        if options.get("load_delay"):
            time.sleep(float(options["load_delay"]))
        if options.get("fail_load"):
            raise RuntimeError("the weights are not a valid model file")
        if options.get("crash_load"):
            os._exit(7)
        self.model_id = spec["id"]

    def close(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {"device": "cpu", "pid": os.getpid()}

    def run(self, job: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        started_at = time.time()
        steps = int(job.get("steps", 1))
        for step in range(steps):
            if not job.get("ignore_cancel"):
                ctx.check()
            if job.get("crash_at") == step:
                self._crash(str(job.get("crash", "segv")))
            time.sleep(float(job.get("delay", 0)))
            ctx.emit({"step": step, "pid": os.getpid()})
        return {"model": self.model_id, "steps": steps, "pid": os.getpid(), "echo": job.get("echo"),
                "started_at": started_at, "finished_at": time.time()}

    @staticmethod
    def _crash(how: str) -> None:
        if how == "segv":
            ctypes.string_at(0)  # a real segfault, as a native engine would have
        elif how == "exit":
            os._exit(3)
        elif how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "garbage":
            _runner_pipe().send_bytes(b"these bytes are not a pickled message")
            time.sleep(30)  # a broken runner that also stops answering: the server must not wait for it
        elif how == "alien":
            _runner_pipe().send({"type": "done", "result": {}})  # a message from no protocol aistack speaks
            time.sleep(30)
        elif how == "malformed":
            raise Malformed("The input is not something this engine can read.", provider="scripted")
        else:
            raise RuntimeError("something broke inside the engine")


def _runner_pipe() -> Connection:
    """The runner process's pipe to the server (found, not handed in: engines never see it)."""
    return next(obj for obj in gc.get_objects() if isinstance(obj, Connection) and not obj.closed)
