"""One model's job slot, with a fair queue in front of it.

A runner does one job at a time, so each model has one slot. A request that
finds it taken waits its turn, first come first served, up to a time limit and
behind at most a bounded number of others; only past those limits is it told
the model is busy (the contract's 503 with `Retry-After`). Waiting is an
`asyncio.Future` per request, resolved by the release that hands the slot
on, so no one polls. A waiter that is cancelled (its client left) leaves the
queue at once; if the slot had just been handed to it, it passes it on.
"""

from __future__ import annotations

import asyncio
from collections import deque

from models.core.errors import Busy


class ModelSlot:
    """The slot of one model. Use from the event loop only."""

    def __init__(self, model_id: str):
        self.model_id = model_id
        self.taken = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for the slot now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def take(self, *, max_wait: float, max_queued: int, retry_after: int) -> None:
        """Return once the slot is this caller's; raise `Busy` naming the limit that was hit."""
        if not self.taken and not self.queued:
            self.taken = True
            return
        if self.queued >= max_queued:
            raise Busy(
                f"Model {self.model_id} is busy and {self.queued} requests are already waiting for it, the most its "
                f"queue holds (AISTACK_QUEUE_MAX={max_queued}). Retry in a few seconds.",
                retry_after=retry_after,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(max_wait):
                await waiter
        except TimeoutError:
            if _granted(waiter):  # handed over in the same instant the wait ran out: keep it
                return
            self._forget(waiter)
            raise Busy(
                f"Model {self.model_id} stayed busy: this request waited {max_wait:g} s in its queue, the longest "
                f"allowed (AISTACK_QUEUE_WAIT_SEC={max_wait:g}). Retry in a few seconds.",
                retry_after=retry_after,
            ) from None
        except asyncio.CancelledError:
            if _granted(waiter):
                self.release()
            else:
                self._forget(waiter)
            raise

    def release(self) -> None:
        """Hand the slot to the longest waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on directly: it is never free in between
                return
        self.taken = False

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass


def _granted(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()
