"""Glue between a route and the manager: take the model's slot, run the job, follow the client.

- `acquire(request, model_id)` loads the model and takes its slot (or raises `Busy`),
  recording model and slot wait for the access log.
- `run_job(request, lease, job)` runs to the end, cancelling the job if the client
  disconnects, and always releases the lease.
- `LeasedStream` is a StreamingResponse that releases its lease however the
  response ends (finished, client gone, or never started).
- `sse(data)` formats one Server-Sent Event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from models.errors import Busy, Cancelled
from models.manager import Lease, Manager


def manager_of(request: Request) -> Manager:
    manager: Manager = request.app.state.manager
    return manager


def obs_of(request: Request) -> dict[str, Any]:
    """The access-log record of this request (see server.middleware)."""
    obs: dict[str, Any] = request.scope.get("state", {}).setdefault("obs", {"extra": {}})
    obs.setdefault("extra", {})
    return obs


# A client that hangs up a stream and at once sends its next request on another
# (pooled) connection can reach us before the hang-up does; the slot frees a few
# milliseconds later. Only a slot still taken after this grace is "busy".
BUSY_GRACE_SEC = 0.5


async def acquire(request: Request, model_id: str, *, keep_alive: float | None = None) -> Lease:
    obs = obs_of(request)
    obs["model"] = model_id
    started = time.perf_counter()
    while True:
        try:
            lease = await manager_of(request).acquire(model_id, keep_alive=keep_alive)
            break
        except Busy:
            if time.perf_counter() - started >= BUSY_GRACE_SEC:
                raise
            await asyncio.sleep(0.02)
    obs["slot_wait_ms"] = round((time.perf_counter() - started) * 1000, 1)
    obs["extra"]["device"] = lease.device
    return lease


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client goes away. Only use after the body has been read."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_job(request: Request, lease: Lease, job: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run a job to the end; a client disconnect cancels it. Releases the lease."""
    work = asyncio.ensure_future(lease.run(job))
    watch = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        obs_of(request)["status_override"] = 499
        raise Cancelled("The client closed the connection.")
    finally:
        for task in (work, watch):
            if not task.done():
                task.cancel()
        lease.release()


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
