"""A bounded queue and one thread that writes what is put on it.

A request only ever does a `put_nowait`. When the disk cannot keep up the
queue fills, and items are dropped and counted instead of piling up in memory
or making the request wait.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("aistack.server")
T = TypeVar("T")


class BackgroundWriter(Generic[T]):
    """Hands items to `write(batch)` on a thread of its own; never blocks the caller."""

    def __init__(self, name: str, write: Callable[[list[T]], None], max_queue: int = 10_000):
        self.name = name
        self.dropped = 0
        self._write = write
        self.max_queue = max_queue
        # SimpleQueue is C code with no condition variables: a put costs a fraction of a microsecond.
        # Only the event loop's thread puts, so checking the size first is exact enough.
        self._queue: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_forever, name=self.name, daemon=True)
            self._thread.start()

    def put(self, item: T) -> bool:
        """Queue one item; False (and counted in `dropped`) when the queue is full."""
        if self._queue.qsize() >= self.max_queue:
            self.dropped += 1
            return False
        self._queue.put(item)
        return True

    def close(self, timeout: float = 5) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                log.warning("%s: could not finish writing in %.0f s", self.name, timeout)
            self._thread = None

    def _write_forever(self) -> None:
        while (item := self._queue.get()) is not None:
            batch = [item]
            while len(batch) < 1000:  # drain what else is waiting: one open/write per burst
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._write_safely(batch)
                    return
                batch.append(more)
            self._write_safely(batch)

    def _write_safely(self, batch: list[T]) -> None:
        try:
            self._write(batch)
        except Exception:  # the writer thread must outlive one bad batch
            log.exception("%s: could not write %d records", self.name, len(batch))
