"""One model's job slots, with a fair queue in front of them.

A runner runs as many jobs at once as its model has slots: one for Whisper and
piper, N for a chat model that decodes N sequences together (llama.cpp's
parallel sequences). A request that finds every slot taken waits its turn,
first come first served, for as long as its client stays connected; only
when the queue is full (or past a wait limit the user set) is it told the
model is busy (the contract's 503 with `Retry-After`). Waiting is an
`asyncio.Future` per request, resolved by the release that hands a slot on,
so no one polls. A waiter that is cancelled (its client left) leaves the
queue at once; if a slot had just been handed to it, it passes it on.
"""

from __future__ import annotations

import asyncio
from collections import deque

from models.core.errors import Busy


class ModelSlots:
    """The slots of one model. Use from the event loop only."""

    def __init__(self, model_id: str, capacity: int = 1):
        self.model_id = model_id
        self.capacity = capacity
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def taken(self) -> bool:
        """Some request holds a slot."""
        return self.in_use > 0

    @property
    def queued(self) -> int:
        """Requests waiting for a slot now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def take(self, *, max_wait: float | None, max_queued: int, retry_after: int) -> None:
        """Return once a slot is this caller's; raise `Busy` naming the limit that was hit.

        `max_wait` None waits as long as the caller does (it is cancelled when its client leaves).
        """
        if self.in_use < self.capacity and not self.queued:
            self.in_use += 1
            return
        if self.queued >= max_queued:
            raise Busy(
                f"Model {self.model_id} is busy and {self.queued} requests are already waiting for it, the most its "
                f"queue holds (AISTACK_QUEUE_MAX={max_queued}). Retry in about {retry_after} s.",
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
                f"allowed (AISTACK_QUEUE_WAIT_SEC={max_wait:g}). Retry in about {retry_after} s.",
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
        if not self._hand_on():
            self.in_use = max(0, self.in_use - 1)

    def resize(self, capacity: int) -> None:
        """The model loaded with `capacity` slots: waiters take the new ones at once."""
        self.capacity = max(1, capacity)
        while self.in_use < self.capacity and self._hand_on():
            self.in_use += 1

    def _hand_on(self) -> bool:
        """Give a slot to the longest waiter (it passes on directly: never free in between)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass


def _granted(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()
