"""Glue between a route and the manager: wait for the model's slot, run the job, follow the client.

- `acquire(request, model_id)` loads the model and waits in its queue for the
  slot (leaving the queue at once if the client goes away), recording model,
  slot wait and device for the access log.
- `run_job(request, lease, job)` runs to the end, cancelling the job if the client
  disconnects, and always releases the lease.
- `start_stream(request, lease, job)` runs a job until the engine accepted its
  input, so a refused input still gets its error envelope; it releases the lease
  on any failure before the answer starts.
- `LeasedStream` is a StreamingResponse that releases its lease however the
  response ends (finished, client gone, or never started).
- `sse(data)` formats one Server-Sent Event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from models.core.errors import Cancelled
from models.runtime.manager import Lease, Manager
from models.runtime.protocol import Accepted, JobEvent, JobSpec

T = TypeVar("T")


def manager_of(request: Request) -> Manager:
    manager: Manager = request.app.state.manager
    return manager


def obs_of(request: Request) -> dict[str, Any]:
    """The access-log record of this request (see server.middleware)."""
    obs: dict[str, Any] = request.scope.get("state", {}).setdefault("obs", {"extra": {}})
    obs.setdefault("extra", {})
    return obs


async def acquire(request: Request, model_id: str, *, keep_alive: float | None = None) -> Lease:
    """The model's slot, after any requests queued before this one. Call after the body was read."""
    obs = obs_of(request)
    obs["model"] = model_id
    started = time.perf_counter()
    lease = await until_disconnect(request, manager_of(request).acquire(model_id, keep_alive=keep_alive))
    obs["slot_wait_ms"] = round((time.perf_counter() - started) * 1000, 1)
    obs["extra"]["device"] = lease.device
    return lease


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and raising `Cancelled`, logged as 499) if the client goes away first."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        obs_of(request)["status_override"] = 499
        raise Cancelled("The client closed the connection.")
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client goes away. Only use after the body has been read."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_job(request: Request, lease: Lease, job: JobSpec) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run a job to the end; a client disconnect cancels it. Releases the lease."""
    try:
        return await until_disconnect(request, lease.run(job))
    finally:
        lease.release()


@dataclass
class StartedJob:
    """A job whose input the engine accepted: what it said on accepting, and the events after."""

    accepted: dict[str, Any]
    events: AsyncGenerator[JobEvent, None]  # partial results, then the final one

    async def aclose(self) -> None:
        """Stop the job if it is still running (the client left); safe to call twice."""
        await self.events.aclose()


async def start_stream(request: Request, lease: Lease, job: JobSpec) -> StartedJob:
    """Run the job until the engine accepts its input, before any byte of the answer is sent.

    A refused input (bad audio, too long a prompt, text the voice cannot say)
    still gets its 4xx envelope; only failures after this point become the
    stream's error event. A client that leaves meanwhile cancels the job. On any
    failure here the job is closed and the lease released; afterwards the
    caller's `LeasedStream` owns both.
    """
    events = cast(AsyncGenerator[JobEvent, None], lease.stream(job))
    try:
        first = await until_disconnect(request, anext(events))
    except BaseException:
        await events.aclose()
        lease.release()
        raise
    if isinstance(first, Accepted):
        return StartedJob(first.data, events)
    return StartedJob({}, _chain(first, events))  # an engine that sent its first result straight away


async def _chain(first: JobEvent, rest: AsyncGenerator[JobEvent, None]) -> AsyncGenerator[JobEvent, None]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()


def sse(data: dict[str, Any] | str) -> bytes:
    """One Server-Sent Event `data:` line (JSON unless given a ready string like `[DONE]`)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class LeasedStream(StreamingResponse):
    """A streaming response that releases its lease (and closes its iterator) however it ends."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        lease: Lease,
        *,
        media_type: str,
        headers: dict[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        super().__init__(self._until_end(content), media_type=media_type, headers=headers)
        self._iterator = content
        self._lease = lease
        self._on_close = on_close
        self._finished = False

    async def _until_end(self, content: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in content:
            yield chunk
        self._finished = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._finished:  # the client went away mid-stream: log it as the contract's 499
                obs = scope.get("state", {}).get("obs")
                if obs is not None:
                    obs["status_override"] = 499
                    obs.setdefault("extra", {})["client_disconnect"] = True
            aclose = getattr(self._iterator, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing must not mask the real end
                    pass
            self._lease.release()
            if self._on_close is not None:
                self._on_close()
