"""How far a download is: bytes, speed, time left, the file in flight, and its state.

The downloader calls `update` as bytes arrive; the admin API, the dashboard and
the CLI read `snapshot()`. Speed is measured over the last few seconds, so a
resumed download does not count the bytes it already had as fast ones.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Literal

State = Literal["queued", "downloading", "verifying", "done", "failed", "cancelled", "paused"]
_WINDOW = 5.0  # seconds of history behind the speed
# A pause or cancel is set from the request's thread while the download thread may still be
# between two chunks; its next `update` must not turn the row back to "downloading".
_FINAL: frozenset[State] = frozenset({"done", "failed", "cancelled", "paused"})


class DownloadProgress:
    """Thread-safe progress of one model's download. Subclasses may draw it (the CLI's bar)."""

    def __init__(self, total: int | None = None) -> None:
        self.state: State = "queued"
        self.bytes_done = 0
        self.bytes_total = total
        self.current_file: str | None = None
        self.error: str | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def update(self, done: int, total: int | None = None, file: str | None = None, state: State = "downloading") -> None:
        now = time.monotonic()
        with self._lock:
            if done < self.bytes_done or file != self.current_file:
                self._samples.clear()  # a file restarted from zero, or the next file began
            self.bytes_done = done
            if self.state not in _FINAL:
                self.state = state
            self.bytes_total = total if total is not None else self.bytes_total
            self.current_file = file if file is not None else self.current_file
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[0][0] > _WINDOW:
                self._samples.popleft()
        self.changed()

    def finish(self, state: State, error: str | None = None) -> None:
        with self._lock:
            self.state, self.error = state, error
            self._samples.clear()
        self.changed()

    def changed(self) -> None:
        """Called after every change; the CLI's bar redraws here."""

    @property
    def speed_bps(self) -> float | None:
        with self._lock:
            if self.state != "downloading" or len(self._samples) < 2:
                return None
            (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None

    @property
    def eta_sec(self) -> float | None:
        speed = self.speed_bps
        if not speed or self.bytes_total is None:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / speed)

    def snapshot(self) -> dict[str, Any]:
        speed, eta = self.speed_bps, self.eta_sec
        return {
            "state": self.state,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "speed_bps": round(speed) if speed is not None else None,
            "eta_sec": round(eta, 1) if eta is not None else None,
            "current_file": self.current_file,
        }
