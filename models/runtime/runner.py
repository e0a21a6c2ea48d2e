"""The server side of a runner process: spawn it, send jobs, stream events back, stop or kill it.

One runner holds one loaded model and runs as many jobs at once as the model
has slots (`capacity`: a chat model's parallel sequences, else 1). A reader
thread takes every message off the pipe and hands it to the event loop, so
streaming costs no polling. When the process dies (segfault, OOM kill,
`os._exit`), every job in flight gets an `EngineUnavailable` saying so and the
runner is marked dead; the manager starts a new one on the next request. A
runner that writes anything but a `models.runtime.protocol` message is broken
the same way: its jobs get a 503 saying so and the process is killed, never
left hanging.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import signal
import threading
from collections.abc import AsyncGenerator
from multiprocessing.reduction import ForkingPickler
from typing import Any

from models.core.errors import AistackError, EngineUnavailable, Malformed
from models.runtime.protocol import (
    Accepted,
    Error,
    Final,
    Job,
    JobEvent,
    JobSpec,
    Load,
    LoadFailed,
    Partial,
    Ready,
    Stop,
)
from models.runtime.protocol import Cancel as CancelMessage

log = logging.getLogger("aistack.runner")
_SPAWN = multiprocessing.get_context("spawn")
UNLOADED = "the model was unloaded"  # crash_reason set by the manager before it stops a runner
_JOB_MESSAGES = (Accepted, Partial, Final, Error)


class _JobChannel:
    def __init__(self, job_id: int):
        self.id = job_id
        self.queue: asyncio.Queue[Accepted | Partial | Final | Error] = asyncio.Queue()
        self.abandoned = False
        self.answered = False  # the runner has said something about it
        self.kill_timer: asyncio.TimerHandle | None = None


class Runner:
    """A child process running one engine for one model."""

    def __init__(self, engine_path: str, spec: dict[str, Any], *, load_timeout: float = 180, cancel_grace: float = 3):
        self.engine_path = engine_path
        self.spec = spec
        self.model_id = str(spec.get("id"))
        self.provider = str(spec.get("engine", "aistack"))
        self.load_timeout = load_timeout
        self.cancel_grace = cancel_grace
        self.info: dict[str, Any] = {}
        self.crash_reason: str | None = None
        self._process: Any = None
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: dict[int, _JobChannel] = {}
        self._ids = itertools.count(1)
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()

    # Lifecycle -----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive() and self.crash_reason is None

    @property
    def idle(self) -> bool:
        return not self._jobs

    @property
    def capacity(self) -> int:
        """Jobs the model runs at once (its slots)."""
        return max(1, int(self.info.get("slots") or 1))

    @property
    def jobs(self) -> int:
        """Jobs in flight, cancelled ones still stopping included."""
        return len(self._jobs)

    async def start(self) -> dict[str, Any]:
        """Spawn the process and wait until the model is loaded. Raises `AistackError` on failure."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._spawn_and_wait)
        threading.Thread(target=self._read_forever, name=f"runner-{self.model_id}", daemon=True).start()
        return self.info

    def _spawn_and_wait(self) -> None:
        from models.runtime import runner_process

        parent, child = _SPAWN.Pipe(duplex=True)
        self._process = _SPAWN.Process(
            target=runner_process.main,
            args=(child, Load(self.engine_path, self.spec)),
            name=f"aistack-runner-{self.model_id}",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = parent
        try:
            if not parent.poll(self.load_timeout):
                raise EngineUnavailable(
                    f"Model {self.model_id} did not finish loading within {self.load_timeout:.0f} s.",
                    provider=self.provider,
                )
            msg = parent.recv()
        except (EOFError, OSError, ConnectionError):
            self._process.join(timeout=2)
            raise EngineUnavailable(
                f"The {self.provider} engine crashed while loading model {self.model_id} "
                f"({self._exit_description()}). The model file may be damaged or unsupported on this machine.",
                provider=self.provider,
            ) from None
        except Exception as exc:  # noqa: BLE001 - bytes that are no message at all
            self.kill()
            raise self._malformed_error(f"{type(exc).__name__} while reading its first message") from None
        except BaseException:
            self.kill()
            raise
        if isinstance(msg, LoadFailed):
            self.kill()
            error = AistackError.from_dict(msg.error)
            if error.kind == "unknown":  # a load failure is "retry later / fix the model", not a bug
                error = EngineUnavailable(error.message, provider=error.provider)
            raise error
        if not isinstance(msg, Ready):
            self.kill()
            raise self._malformed_error(f"a {type(msg).__name__} instead of ready")
        self.info = dict(msg.info)

    def _malformed_error(self, what: str) -> EngineUnavailable:
        return EngineUnavailable(
            f"The {self.provider} runner for model {self.model_id} sent a message aistack cannot read ({what}). "
            "It was stopped; try again, and if this repeats, the engine or its model is broken.",
            provider=self.provider,
        )

    def _exit_description(self) -> str:
        code = self._process.exitcode if self._process is not None else None
        if code is None:
            return "no exit code"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"exit code {code}"

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the process to exit; kill it if it does not. Blocking: call via `asyncio.to_thread`."""
        if self._process is None:
            return
        try:
            if self._process.is_alive() and self._conn is not None:
                self._conn.send(Stop())
        except (OSError, ValueError, BrokenPipeError):
            pass
        self._process.join(timeout)
        if self._process.is_alive():
            self.kill()
        self._close_conn()

    def kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._close_conn()

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass

    # Reading -------------------------------------------------------------------------
    def _read_forever(self) -> None:
        conn, loop = self._conn, self._loop
        assert conn is not None and loop is not None
        while True:
            try:
                msg: object = conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # noqa: BLE001 - unreadable bytes: the runner is broken, say so
                msg = _Unreadable(f"{type(exc).__name__}: {str(exc)[:100]}")
            try:
                loop.call_soon_threadsafe(self._dispatch, msg)
            except RuntimeError:  # loop closed: the server is shutting down
                return
        if self._process is not None:
            self._process.join(timeout=5)
        try:
            loop.call_soon_threadsafe(self._on_exit)
        except RuntimeError:
            pass

    def _dispatch(self, msg: object) -> None:
        if not isinstance(msg, _JOB_MESSAGES):
            what = msg.reason if isinstance(msg, _Unreadable) else f"a {type(msg).__name__}"
            self._on_malformed(what)
            return
        job = self._jobs.get(msg.id) if msg.id is not None else self._unanswered()
        if job is None:
            return  # late news of a job that was cancelled and already finished
        job.answered = True
        if isinstance(msg, Error) and msg.retiring and self.crash_reason is None:
            # Before the route sees the error: the next request must find this runner gone, not reuse it.
            self.crash_reason = "it exited after the GPU failed"
            log.warning("runner for %s exits after a GPU failure", self.model_id)
        job.queue.put_nowait(msg)
        if isinstance(msg, Final | Error):
            self._finish_job(job)

    def _unanswered(self) -> _JobChannel | None:
        """The oldest job the runner has said nothing about: the one whose message it could not read."""
        return next((job for job in self._jobs.values() if not job.answered), None)

    def _on_malformed(self, what: str) -> None:
        """The runner wrote something that is not a protocol message: fail its job and kill it."""
        log.error("runner for %s sent a message aistack cannot read (%s); killing it", self.model_id, what)
        error = self._malformed_error(what)
        if self.crash_reason is None:
            self.crash_reason = f"it sent a message aistack cannot read ({what})"
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._fail_all(error)

    def _on_exit(self) -> None:
        if self.crash_reason is None:
            self.crash_reason = self._exit_description()
            log.warning("runner for %s exited (%s)", self.model_id, self.crash_reason)
        self._fail_all(self._gone_error())

    def _fail_all(self, error: AistackError) -> None:
        for job in list(self._jobs.values()):
            job.queue.put_nowait(Error(job.id, error.to_dict()))
            self._finish_job(job)

    def _gone_error(self) -> EngineUnavailable:
        """The error for a job whose runner is no longer there."""
        if self.crash_reason == UNLOADED:
            message = f"Model {self.model_id} was unloaded while this request was running. Try again."
        elif self.crash_reason:
            message = (
                f"The {self.provider} engine stopped unexpectedly ({self.crash_reason}) while running model "
                f"{self.model_id}. Try again: the next request starts it afresh."
            )
        else:
            message = f"Model {self.model_id} is not running. Try again."
        return EngineUnavailable(message, provider=self.provider)

    def _finish_job(self, job: _JobChannel) -> None:
        self._jobs.pop(job.id, None)
        if job.kill_timer is not None:
            job.kill_timer.cancel()
            job.kill_timer = None
        if len(self._jobs) < self.capacity:
            self._room.set()
        if not self._jobs:
            self._idle.set()

    # Jobs ----------------------------------------------------------------------------
    async def run(self, job: JobSpec) -> AsyncGenerator[JobEvent, None]:
        """Run a job; yield `Accepted`, partial results, then the `Final` one. Errors are raised.

        If the consumer stops early (client disconnect), the job is cancelled in
        the background: the runner is told to stop and killed if it does not
        within `cancel_grace` seconds. No await happens on that path, so it is
        safe inside a cancelled task.
        """
        if not self.alive:
            raise self._gone_error()
        channel = _JobChannel(next(self._ids))
        payload = self._packed(Job(channel.id, job))
        self._jobs[channel.id] = channel
        self._idle.clear()
        if len(self._jobs) >= self.capacity:
            self._room.clear()
        finished = False
        try:
            self._conn.send_bytes(payload)
            while True:
                msg = await channel.queue.get()
                if isinstance(msg, Error):
                    finished = True
                    raise AistackError.from_dict(msg.error)
                finished = isinstance(msg, Final)
                yield msg
                if finished:
                    return
        except (OSError, ValueError):
            finished = True
            self._finish_job(channel)
            raise self._gone_error() from None
        finally:
            if not finished:
                self.cancel(channel.id)

    def _packed(self, message: Job) -> bytes:
        """The job as bytes for the pipe. A job that cannot be pickled fails alone; the runner never sees it."""
        try:
            return bytes(ForkingPickler.dumps(message))
        except RecursionError:
            raise Malformed(
                "The request is nested too deeply to send to the engine. Flatten its JSON (schemas, tool "
                "parameters, message content) and try again.",
                provider=self.provider,
            ) from None
        except Exception as exc:  # noqa: BLE001 - pickling raises many types; all mean "this request"
            raise Malformed(
                f"The request holds a value that cannot be sent to the engine ({type(exc).__name__}).",
                provider=self.provider,
            ) from None

    def cancel(self, job_id: int) -> None:
        """Ask the runner to drop job `job_id`; kill the process if it has not stopped in time."""
        job = self._jobs.get(job_id)
        if job is None or job.abandoned:
            return
        job.abandoned = True
        try:
            self._conn.send(CancelMessage(job_id))
        except (OSError, ValueError):
            pass
        loop = self._loop or asyncio.get_event_loop()
        job.kill_timer = loop.call_later(self.cancel_grace, self._kill_if_stuck, job_id)

    def _kill_if_stuck(self, job_id: int) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            log.warning("runner for %s ignored cancel for %.1f s; killing it", self.model_id, self.cancel_grace)
            self.crash_reason = "killed after it did not stop a cancelled job"
            if self._process is not None and self._process.is_alive():
                self._process.kill()
            self._finish_job(job)
            self._fail_all(self._gone_error())  # the process is gone: so are the jobs beside it

    @property
    def cancelling(self) -> bool:
        return any(job.abandoned for job in self._jobs.values())

    async def wait_idle(self, timeout: float) -> bool:
        return await _wait(self._idle, timeout)

    async def wait_room(self, timeout: float) -> bool:
        """Wait until fewer jobs than slots are in flight (a cancelled one may still be stopping)."""
        return await _wait(self._room, timeout)


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """True once `event` is set; False if `timeout` seconds pass first."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


class _Unreadable:
    """What the reader thread hands on when the pipe held bytes that are no message."""

    def __init__(self, reason: str):
        self.reason = reason
